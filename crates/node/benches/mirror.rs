//! How fast `qtrace-node mirror` catches up with a peer's log of a million
//! entries, next to machine limits measured in the same run.
//!
//! The requirement: "Catch-up rate when mirroring a 1,000,000-entry log
//! (entries/s), beside the in-run ed25519 batch-verify rate. Target:
//! ≥ 50,000 entries/s."
//!
//! `cargo bench -p qtrace-node --bench mirror` runs the full version (a log
//! of 1,000,000 entries, several minutes, most of them filling the log);
//! `QTRACE_BENCH_SCALE=small` (or the argument `small`) runs a smoke version
//! of 20,000 entries. `QTRACE_BENCH_ENTRIES` sets the log size at either
//! scale. The program prints one table and ends with a single line
//! `BENCH-SUMMARY {json}`. It never asserts a time.
//!
//! 1. Limits, measured before any node starts: ed25519 batch verification
//!    (64 per batch) on one core and on every core, batch verification the
//!    way the mirror batches (a chunk of 8,192 split across the cores, one
//!    `verify_batch` per core), turning a public key's bytes into a key (which
//!    `signing::verify_batch` does for every signature), and raw sled
//!    `apply_batch` + `flush` of 100-byte values.
//! 2. The source: the release `qtrace-node` binary cargo built for this
//!    benchmark (`CARGO_BIN_EXE_qtrace-node`) on 127.0.0.1 port 0 with a
//!    temporary data directory. A manufacturer and its key are registered
//!    with the development authority key, then the log is filled to N
//!    entries with `AppendBatch` requests of 1,000 production events
//!    (distinct lots) from 4 concurrent clients. Events are signed in rounds
//!    of up to 100,000 before the clock starts; the fill rate counts only the
//!    time spent sending.
//! 3. The measurement: `qtrace-node mirror --data FRESH --peer NAME=URL,VKEY`,
//!    timed from spawn to exit (status 0). It verifies every entry, rebuilds
//!    the tree against the peer's signed checkpoint, stores the entries,
//!    cosigns the checkpoint and hands the cosignature to the peer (which
//!    refuses it: the mirror is not one of its configured witnesses), then
//!    exits. Its CPU time is read from /proc/PID/stat once it is a zombie
//!    (all threads gone, not yet reaped). Before the fill the same command
//!    against the near-empty log gives the fixed cost of a run; after the
//!    catch-up it runs once more on the full mirror (nothing to copy).
//! 4. Where the time goes: the stages of catch-up done one at a time in this
//!    process on the same entries: the GetEntries stream alone, verification
//!    as `federation::chunk::verify_chunk` does it, and storing as
//!    `LogStore::append_mirrored` does it. Run one after another, the sum of
//!    their times per entry predicts the mirror's rate; fully overlapped,
//!    the slowest stage alone does. The CPU each stage takes per entry is
//!    set beside the mirror process's.
//! 5. The same catch-up inside a node: a second `qtrace-node --peer` mirrors
//!    in the background; its ListLogs is polled until it holds N entries.
//!
//! Both nodes are stopped with SIGTERM by process id and must exit 0.
//!
//! A process that passes a time limit (60 s + 1 ms per entry) or a memory
//! limit is killed by process id (SIGKILL to the benchmark's own child): the
//! table then says so, gives the rates for the entries it had stored (read
//! from its store), and the benchmark exits non-zero. The memory limit keeps
//! a runaway process from taking a shared machine's memory.
//!
//! Environment: `QTRACE_BENCH_SCALE` (`small` | `full`), `QTRACE_BENCH_ENTRIES`
//! (the source log's size), `QTRACE_BENCH_RSS_LIMIT_MB` (the memory limit;
//! default half the memory available at the start, at most 8,000 MB) and
//! `QTRACE_BENCH_MIRROR_CHUNK` (`--mirror-chunk` for the second node).

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey};
use prost::Message;
use qtrace_ledger::entry::Entry;
use qtrace_ledger::event;
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::merkle::CompactRange;
use qtrace_ledger::note::Verifier;
use qtrace_ledger::pb::{self, event::Body, subject::Kind};
use qtrace_ledger::signing::{self, BatchItem, SecretKey};
use qtrace_ledger::testkit;
use qtrace_rpc::rpc::ledger_client::LedgerClient;
use qtrace_store::{NewEntry, SledStore};
use serde_json::json;
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};

/// The node's allocator, so limits measured here (sled, ed25519) are
/// measured as the node runs them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::node::NodeProcess;
use common::procfs::{
    ThreadTimes, dir_bytes, io_field, memory_available, process_cpu, process_state, status_bytes, threads,
};
use common::workload::{FACTORY, production};
use common::{Ratio, Report, cores, machine_busy, now_millis, number, sign};
use qtrace_ledger::benchkit as common;

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy)]
struct Scale {
    name: &'static str,
    /// Entries in the source log.
    entries: u64,
    /// Signatures for the verify limits.
    signatures: usize,
    /// Length of each raw sled measurement.
    sled: Duration,
    /// Entries verified and stored one stage at a time.
    sample: usize,
}

const FULL: Scale =
    Scale { name: "full", entries: 1_000_000, signatures: 32_768, sled: Duration::from_millis(1_500), sample: 65_536 };
const SMALL: Scale =
    Scale { name: "small", entries: 20_000, signatures: 4_096, sled: Duration::from_millis(300), sample: 16_384 };

/// Events per AppendBatch request while filling.
const BATCH: usize = 1_000;
/// Concurrent AppendBatch clients while filling.
const FILL_CLIENTS: usize = 4;
/// Most events signed ahead of one round of the fill.
const FILL_ROUND: u64 = 100_000;
/// Signatures per batch verification (the limit the requirement names).
const VERIFY_BATCH: usize = 64;
/// Entries the mirror verifies and stores together
/// (`federation::DEFAULT_CHUNK`, which `qtrace-node mirror` uses).
const CHUNK: usize = 8_192;
/// Entries per sled batch when storing a chunk (`federation::chunk::STORE_PART`).
const STORE_PART: usize = 1_024;
/// Keys per raw sled batch: the store benchmark's size, and one near a
/// mirror chunk's.
const SLED_BATCHES: [usize; 2] = [1_024, 8_192];
const SLED_VALUE: usize = 100;
/// The requirement's target.
const TARGET_ENTRIES_PER_S: f64 = 50_000.0;
/// Bytes the mirror must have written before its first chunk counts as on
/// disk (creating a fresh log writes far less).
const FIRST_CHUNK_WRITTEN: u64 = 1 << 20;
/// The `--peer` NAME of the source.
const PEER_NAME: &str = "source";

fn main() -> Result<()> {
    let scale = scale_from_env_and_args()?;
    let entries = match std::env::var("QTRACE_BENCH_ENTRIES") {
        Ok(text) => text.replace(['_', ','], "").parse::<u64>().map_err(|e| format!("QTRACE_BENCH_ENTRIES: {e}"))?,
        Err(_) => scale.entries,
    };
    if entries < 100 {
        return Err("QTRACE_BENCH_ENTRIES: at least 100 entries".into());
    }
    let started = Instant::now();
    println!(
        "qtrace mirror benchmark, scale {} ({} cores, a source log of {} entries)",
        scale.name,
        cores(),
        number(entries as f64)
    );
    let mut report = Report::new("mirror", scale.name);
    report.summary.insert("entries".into(), json!(entries));

    // Limits that need no node: measured first, before any node starts.
    let verify = measure_verify(scale.signatures);
    let sled = measure_sled(scale.sled)?;
    report.section("machine limits (this run; ratio = this run ÷ shared/CRATES.md reference, or as named)");
    report.limit(
        "ed25519_batch64_sigs_per_s",
        "ed25519 verify_batch (64), 1 core",
        verify.batch64_one,
        "sig/s",
        vec![Ratio::reference(verify.batch64_one, 60_000.0)],
    );
    report.limit(
        "ed25519_batch64_all_cores_sigs_per_s",
        &format!("ed25519 verify_batch (64), {} cores", cores()),
        verify.batch64_all,
        "sig/s",
        vec![Ratio::new(verify.batch64_all / verify.batch64_one, "÷ 1 core")],
    );
    report.limit(
        "ed25519_mirror_batch_sigs_per_s",
        &format!("ed25519 verify_batch ({} per core), {} cores", CHUNK.div_ceil(cores()), cores()),
        verify.chunked_all,
        "sig/s",
        vec![Ratio::new(verify.chunked_all / verify.batch64_all, "÷ batches of 64, all cores (as verify_chunk)")],
    );
    report.limit(
        "ed25519_key_decompress_per_s",
        "ed25519 public key from bytes (decompress + weak check), 1 core",
        verify.key_from_bytes,
        "key/s",
        vec![Ratio::new(
            verify.key_from_bytes / (verify.chunked_all / cores() as f64),
            "÷ sig/s per core as the mirror batches",
        )],
    );
    for (keys, per_s) in &sled {
        report.limit(
            &format!("sled_batch{keys}_keys_per_s"),
            &format!("sled apply_batch ({keys} × {SLED_VALUE} B) + flush"),
            *per_s,
            "key/s",
            Vec::new(),
        );
    }

    let mut source = NodeProcess::start(Path::new(env!("CARGO_BIN_EXE_qtrace-node")), &[], Stdio::inherit())?;
    println!("source qtrace-node pid {} at {} (data {})", source.pid(), source.url, source.data.display());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cores()).enable_all().build()?;
    let outcome = run(&runtime, &source, &mut report, scale, entries);
    drop(runtime);
    let status = source.stop()?;
    if let Err(e) = &outcome {
        report.note(&format!("the benchmark stopped early: {e}"));
    }
    report.section("shutdown");
    report.info(
        "source_exit_code",
        "source node exit status after SIGTERM (must be 0)",
        f64::from(status.code().unwrap_or(-1)),
        "",
    );

    let seconds = started.elapsed().as_secs_f64();
    report.print();
    println!("total time: {seconds:.1} s");
    println!("BENCH-SUMMARY {}", report.summary(seconds, outcome.is_ok()));
    outcome?;
    if !status.success() {
        return Err(format!("the source qtrace-node exited with {status} after SIGTERM, not 0").into());
    }
    Ok(())
}

fn run(runtime: &Runtime, source: &NodeProcess, report: &mut Report, scale: Scale, n: u64) -> Result<()> {
    let root = SecretKey::from_file_text(&std::fs::read_to_string(source.data.join("authority.key"))?)?;
    let factory = SecretKey::from_seed(&[13; 32]);
    runtime.block_on(async {
        let mut client = connect(&source.url).await?;
        register(&mut client, &root, &factory).await
    })?;
    let vkey = std::fs::read_to_string(source.data.join("log.vkey"))?.trim().to_string();
    let log_id = LogId::of_key(&Verifier::parse(&vkey)?.public_key().to_bytes());
    let peer = format!("{PEER_NAME}={},{vkey}", source.url);
    let work = tempfile::tempdir()?;
    let limits = Watchdog { timeout: Duration::from_secs(60 + n / 1_000), memory: memory_limit()? };
    report.summary.insert("rss_limit_bytes".into(), json!(limits.memory));
    let mut failures: Vec<String> = Vec::new();

    // The fixed cost of a run: against the log as it is now, a few entries.
    let registered = runtime.block_on(log_size(&source.url))?;
    let fixed = mirror_process(&work.path().join("fixed"), &peer, source.pid(), limits)?;
    fixed.check(registered)?;

    // The source log.
    let fill = fill(runtime, source, &factory, n)?;
    let fill_rate = fill.events as f64 / fill.sending.as_secs_f64();
    let source_bytes = dir_bytes(&source.data.join("store")) + dir_bytes(&source.data.join("store.index"));
    let batch_one = report.limit_value("ed25519_batch64_sigs_per_s");
    let batch_all = report.limit_value("ed25519_batch64_all_cores_sigs_per_s");
    report.section(&format!(
        "source log: {} entries, filled by AppendBatch of {BATCH} from {FILL_CLIENTS} clients",
        number(n as f64)
    ));
    report.figure(
        "fill_events_per_s",
        "fill: durable events/s (signing excluded)",
        fill_rate,
        "event/s",
        vec![Ratio::new(fill_rate / batch_one, "÷ batch-verify(64) sig/s, 1 core (append target ≥ 0.6)")],
    );
    report.info("fill_seconds", "  time sending", fill.sending.as_secs_f64(), "s");
    report.info("fill_signing_seconds", "  time signing, every core (not counted)", fill.signing.as_secs_f64(), "s");
    report.figure(
        "fill_node_cpu_us_per_event",
        "  source node CPU per event",
        fill.node_cpu.as_secs_f64() * 1e6 / fill.events.max(1) as f64,
        "µs",
        vec![Ratio::new(fill.node_cpu.as_secs_f64() / fill.sending.as_secs_f64(), "node cores busy")],
    );
    report.info("source_disk_bytes_per_entry", "  source store on disk per entry", source_bytes as f64 / n as f64, "B");
    let source_rss = status_bytes(source.pid(), "VmHWM");
    report.info("source_peak_rss_mb", "  source node peak resident memory", source_rss as f64 / 1e6, "MB");

    // The measurement.
    let mirror_dir = work.path().join("mirror");
    let full = mirror_process(&mirror_dir, &peer, source.pid(), limits)?;
    let full_ok = full.check(n);
    // After a failure, what the mirror had stored, from its store.
    let mirrored = match &full_ok {
        Ok(()) => n,
        Err(e) => {
            failures.push(e.to_string());
            entries_in(&mirror_dir.join("store"), log_id)?
        }
    };
    let wall = full.wall.as_secs_f64();
    let rate = mirrored as f64 / wall;
    let sled_keys = report.limit_value(&format!("sled_batch{}_keys_per_s", SLED_BATCHES[1]));
    report.section(&format!(
        "qtrace-node mirror: a fresh data directory catches up with {} entries (spawn to exit, {})",
        number(n as f64),
        full.status
    ));
    if let Err(e) = &full_ok {
        report.note(&format!("FAILED: {e}. It had stored {mirrored} of {n} entries; the rates below are for those"));
    }
    report.figure(
        "catch_up_entries_per_s",
        "catch-up rate",
        rate,
        "entry/s",
        vec![
            Ratio::new(rate / TARGET_ENTRIES_PER_S, "÷ target 50,000/s"),
            Ratio::new(rate / batch_one, "÷ batch-verify(64) sig/s, 1 core"),
            Ratio::new(rate / batch_all, &format!("÷ batch-verify(64) sig/s, {} cores", cores())),
            Ratio::new(
                rate / report.limit_value("ed25519_mirror_batch_sigs_per_s"),
                "÷ batch-verify sig/s as the mirror batches",
            ),
            Ratio::new(rate / sled_keys, &format!("÷ sled keys/s (batches of {})", SLED_BATCHES[1])),
        ],
    );
    report.info("catch_up_seconds", "  wall time, spawn to exit", wall, "s");
    let fixed_wall = fixed.wall.as_secs_f64();
    report.figure(
        "fixed_cost_seconds",
        &format!("  fixed cost: the same command against {registered} entries"),
        fixed_wall,
        "s",
        vec![Ratio::new(fixed_wall / wall, "share of the catch-up's wall time")],
    );
    if let Some(first) = full.first_chunk {
        report.figure(
            "first_chunk_seconds",
            &format!("  time until it began writing its first chunk ({CHUNK})"),
            first.as_secs_f64(),
            "s",
            vec![Ratio::new(first.as_secs_f64() / wall, "share of the catch-up's wall time")],
        );
    }
    report.figure(
        "catch_up_peak_rss_mb",
        "  mirror process peak resident memory",
        full.peak_rss as f64 / 1e6,
        "MB",
        vec![Ratio::new(full.peak_rss as f64 / source_rss as f64, "÷ the source node's peak (after the fill)")],
    );
    report.figure(
        "catch_up_peak_rss_bytes_per_entry",
        "    per entry mirrored",
        full.peak_rss as f64 / mirrored.max(1) as f64,
        "B",
        vec![Ratio::new(
            full.peak_rss as f64 / mirrored.max(1) as f64 * n as f64 / 1e9,
            &format!("GB for {} entries at this rate", number(n as f64)),
        )],
    );
    full.usage_rows(report, "catch_up", mirrored.max(1));
    let mirror_bytes = dir_bytes(&mirror_dir.join("store")) + dir_bytes(&mirror_dir.join("store.index"));
    report.figure(
        "mirror_disk_bytes_per_entry",
        "  mirror store on disk per entry",
        mirror_bytes as f64 / mirrored.max(1) as f64,
        "B",
        vec![Ratio::new(
            mirror_bytes as f64 / mirrored.max(1) as f64 / (source_bytes as f64 / n as f64),
            "÷ the source's store per entry",
        )],
    );
    if !full.stderr.trim().is_empty() {
        let first = without_ansi(full.stderr.lines().next().unwrap_or_default());
        report.note(&format!(
            "the mirror wrote {} lines to stderr (RUST_LOG=warn); the first: {}",
            full.stderr.lines().count(),
            first.split_once(" WARN ").map_or(first.as_str(), |(_, rest)| rest).trim()
        ));
    }
    if full_ok.is_ok() {
        let again = mirror_process(&mirror_dir, &peer, source.pid(), limits)?;
        again.check(n)?;
        report.figure(
            "rerun_seconds",
            "  the same command again, nothing to copy",
            again.wall.as_secs_f64(),
            "s",
            vec![Ratio::new(again.wall.as_secs_f64() / fixed_wall, "÷ fixed cost on a near-empty log")],
        );
    }
    // The stages below need the disk space more than this copy does.
    let _ = std::fs::remove_dir_all(&mirror_dir);

    // Where the time goes.
    let sample = scale.sample.min(n as usize);
    let streamed = runtime.block_on(stream_entries(&source.url, source.pid(), log_id, n, sample))?;
    let (cpu, machine) = (process_cpu(std::process::id()), machine_busy());
    let verified = verify_like_mirror(log_id, streamed.sample)?;
    let verify_cpu = process_cpu(std::process::id()).saturating_sub(cpu);
    let (cpu, store_started) = (process_cpu(std::process::id()), Instant::now());
    let stored = store_like_mirror(log_id, &verified.entries)?;
    let store_cpu = process_cpu(std::process::id()).saturating_sub(cpu);
    let stages_cpu = verify_cpu + store_cpu;
    let stages_other = machine_busy().saturating_sub(machine).saturating_sub(stages_cpu);
    let stages_wall = verified.wall + store_started.elapsed();
    let stream_rate = streamed.count as f64 / streamed.elapsed.as_secs_f64();
    let verified_n = verified.entries.len() as f64;
    let verify_rate = verified_n / (verified.sequential + verified.signatures).as_secs_f64();
    let store_rate = verified_n / stored.elapsed.as_secs_f64();
    let predicted = 1.0 / (1.0 / stream_rate + 1.0 / verify_rate + 1.0 / store_rate);
    report.section(&format!(
        "where the time goes: the catch-up's stages one at a time in this process ({} entries streamed, the first {} \
         verified and stored)",
        number(streamed.count as f64),
        number(verified_n)
    ));
    report.figure(
        "stage_stream_entries_per_s",
        "GetEntries stream alone (source reads + sends, client decodes)",
        stream_rate,
        "entry/s",
        vec![
            Ratio::new(rate / stream_rate, "catch-up rate ÷ this"),
            Ratio::new(streamed.source_cpu.as_secs_f64() / streamed.elapsed.as_secs_f64(), "source cores busy"),
        ],
    );
    report.info(
        "stage_stream_source_cpu_us_per_entry",
        "  source node CPU per entry served",
        streamed.source_cpu.as_secs_f64() * 1e6 / streamed.count.max(1) as f64,
        "µs",
    );
    report.figure(
        "stage_verify_entries_per_s",
        &format!("verify as verify_chunk does (chunks of {CHUNK})"),
        verify_rate,
        "entry/s",
        vec![Ratio::new(rate / verify_rate, "catch-up rate ÷ this")],
    );
    report.figure(
        "stage_verify_cpu_us_per_entry",
        "  CPU per entry, all threads",
        verify_cpu.as_secs_f64() * 1e6 / verified_n,
        "µs",
        vec![Ratio::new(
            verify_cpu.as_secs_f64() / full.cpu.as_secs_f64() * mirrored as f64 / verified_n,
            "÷ the mirror process's CPU per entry",
        )],
    );
    report.figure(
        "stage_verify_sequential_us_per_entry",
        "  decode, chain link, hash, index keys, tree (1 core)",
        verified.sequential.as_secs_f64() * 1e6 / verified_n,
        "µs",
        vec![Ratio::new(
            verified.sequential.as_secs_f64() / (verified.sequential + verified.signatures).as_secs_f64(),
            "share of verify",
        )],
    );
    report.figure(
        "stage_verify_signatures_us_per_entry",
        &format!("  signatures, verify_batch on {} cores (wall)", cores()),
        verified.signatures.as_secs_f64() * 1e6 / verified_n,
        "µs",
        vec![Ratio::new(
            verified_n / verified.signatures.as_secs_f64() / report.limit_value("ed25519_mirror_batch_sigs_per_s"),
            "sig/s ÷ the same batches on bare messages",
        )],
    );
    report.figure(
        "stage_store_entries_per_s",
        &format!("store as the mirror does (chunks of {CHUNK}, {STORE_PART} per batch + flush)"),
        store_rate,
        "entry/s",
        vec![
            Ratio::new(rate / store_rate, "catch-up rate ÷ this"),
            Ratio::new(store_rate * stored.keys_per_entry / sled_keys, "× keys per entry ÷ raw sled keys/s"),
        ],
    );
    report.figure(
        "stage_store_cpu_us_per_entry",
        "  CPU per entry, all threads (sled's too)",
        store_cpu.as_secs_f64() * 1e6 / verified_n,
        "µs",
        vec![Ratio::new(
            store_cpu.as_secs_f64() / full.cpu.as_secs_f64() * mirrored as f64 / verified_n,
            "÷ the mirror process's CPU per entry",
        )],
    );
    report.info(
        "stage_store_keys_per_entry",
        "  sled keys of the log part per entry (the follower's index keys apart)",
        stored.keys_per_entry,
        "keys",
    );
    report.info("stage_store_disk_bytes_per_entry", "  on disk per entry", stored.disk_bytes as f64 / verified_n, "B");
    report.info(
        "bench_peak_rss_mb",
        "  this process's peak resident memory (all stages)",
        stored.peak_rss as f64 / 1e6,
        "MB",
    );
    report.figure(
        "stages_in_series_entries_per_s",
        "the three stages one after another (1 ÷ Σ 1/rate)",
        predicted,
        "entry/s",
        vec![
            Ratio::new(rate / predicted, "catch-up rate ÷ this"),
            Ratio::new(predicted / TARGET_ENTRIES_PER_S, "÷ target 50,000/s"),
        ],
    );
    let slowest = stream_rate.min(verify_rate).min(store_rate);
    report.figure(
        "stages_overlapped_entries_per_s",
        "the slowest stage alone (if the stages overlapped)",
        slowest,
        "entry/s",
        vec![Ratio::new(slowest / TARGET_ENTRIES_PER_S, "÷ target 50,000/s")],
    );
    report.figure(
        "stages_other_processes_cores",
        "other processes on the machine during verify and store (noise)",
        stages_other.as_secs_f64() / stages_wall.as_secs_f64(),
        "cores",
        vec![Ratio::new(
            stages_other.as_secs_f64() / stages_wall.as_secs_f64() / cores() as f64,
            "of the machine's cores",
        )],
    );
    let share = |stage_rate: f64| (1.0 / stage_rate) / (1.0 / predicted);
    report.note(&format!(
        "of the stages' time in series: stream {:.0} %, verify {:.0} %, store {:.0} %",
        share(stream_rate) * 100.0,
        share(verify_rate) * 100.0,
        share(store_rate) * 100.0
    ));

    // The same catch-up inside a running node.
    let in_node = in_node_catch_up(runtime, &peer, source.pid(), log_id, n, limits)?;
    let node_rate = in_node.held as f64 / in_node.elapsed.as_secs_f64();
    report.section(&format!(
        "a second qtrace-node with --peer (catch-up in the background, spawn to holding every entry; --mirror-chunk {})",
        std::env::var("QTRACE_BENCH_MIRROR_CHUNK").unwrap_or_else(|_| format!("default, {CHUNK}"))
    ));
    if let Some(failure) = &in_node.failure {
        let text = format!(
            "the second node did not get to hold all {} entries: {failure} ({}); it held {}",
            number(n as f64),
            in_node.status,
            number(in_node.held as f64)
        );
        report.note(&format!("FAILED: {text}; the rates below are for those"));
        failures.push(text);
    }
    report.figure(
        "in_node_entries_per_s",
        "catch-up rate inside a node",
        node_rate,
        "entry/s",
        vec![
            Ratio::new(node_rate / TARGET_ENTRIES_PER_S, "÷ target 50,000/s"),
            Ratio::new(node_rate / rate, "÷ qtrace-node mirror's rate"),
            Ratio::new(node_rate / batch_one, "÷ batch-verify(64) sig/s, 1 core"),
        ],
    );
    report.info("in_node_seconds", "  wall time", in_node.elapsed.as_secs_f64(), "s");
    report.info("in_node_start_seconds", "  of which until it served", in_node.serving.as_secs_f64(), "s");
    let node_wall = in_node.elapsed.as_secs_f64();
    let node_n = in_node.held.max(1);
    report.info("in_node_peak_rss_mb", "  node peak resident memory", in_node.peak_rss as f64 / 1e6, "MB");
    report.info("in_node_peak_rss_bytes_per_entry", "    per entry held", in_node.peak_rss as f64 / node_n as f64, "B");
    cpu_rows(report, "in_node", "  node CPU per entry, all threads", &in_node.by_group, in_node.cpu, node_wall, node_n);
    report.figure(
        "in_node_cpu_ratio",
        "  node CPU per entry ÷ the mirror process's",
        in_node.cpu.as_secs_f64() / node_n as f64 / (full.cpu.as_secs_f64() / mirrored.max(1) as f64),
        "",
        Vec::new(),
    );
    report.figure(
        "in_node_source_cpu_us_per_entry",
        "  source node CPU per entry (serving GetEntries)",
        in_node.source_cpu.as_secs_f64() * 1e6 / node_n as f64,
        "µs",
        vec![Ratio::new(in_node.source_cpu.as_secs_f64() / node_wall, "source cores busy")],
    );
    report.figure(
        "in_node_other_processes_cores",
        "  other processes on the machine (noise)",
        in_node.other_cpu.as_secs_f64() / node_wall,
        "cores",
        vec![Ratio::new(in_node.other_cpu.as_secs_f64() / node_wall / cores() as f64, "of the machine's cores")],
    );
    report.info(
        "in_node_exit_code",
        "  exit status after SIGTERM (must be 0; -1: killed)",
        f64::from(in_node.status.code().unwrap_or(-1)),
        "",
    );
    if in_node.failure.is_none() && !in_node.status.success() {
        failures.push(format!("the mirroring qtrace-node exited with {} after SIGTERM, not 0", in_node.status));
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("; ").into()) }
}

/// Entries of `log` in a stopped node's store.
fn entries_in(store: &Path, log: LogId) -> Result<u64> {
    let store = SledStore::open(store)?;
    let size = store.log(log)?.head().size;
    Ok(size)
}

/// The resident memory past which the benchmark kills a node it started:
/// QTRACE_BENCH_RSS_LIMIT_MB, else half the memory available now (at most
/// 8 GB), since the machine is shared.
fn memory_limit() -> Result<u64> {
    match std::env::var("QTRACE_BENCH_RSS_LIMIT_MB") {
        Ok(text) => Ok(text.parse::<u64>().map_err(|e| format!("QTRACE_BENCH_RSS_LIMIT_MB: {e}"))? * 1_000_000),
        Err(_) => Ok((memory_available() / 2).clamp(1_000_000_000, 8_000_000_000)),
    }
}

// ---------------------------------------------------------------------------
// Filling the source log

struct Fill {
    events: u64,
    sending: Duration,
    signing: Duration,
    node_cpu: Duration,
}

/// Appends production events until the log holds `target` entries, in
/// rounds: sign a round on every core, then send it from several clients.
fn fill(runtime: &Runtime, node: &NodeProcess, factory: &SecretKey, target: u64) -> Result<Fill> {
    let start = runtime.block_on(log_size(&node.url))?;
    let clients = runtime.block_on(async {
        let mut clients = Vec::with_capacity(FILL_CLIENTS);
        for _ in 0..FILL_CLIENTS {
            clients.push(connect(&node.url).await?);
        }
        Ok::<_, Box<dyn Error + Send + Sync>>(clients)
    })?;
    let total = target.saturating_sub(start);
    let round = total.div_ceil(10).next_multiple_of(BATCH as u64).clamp(BATCH as u64, FILL_ROUND);
    let mut fill = Fill { events: 0, sending: Duration::ZERO, signing: Duration::ZERO, node_cpu: Duration::ZERO };
    let mut size = start;
    while size < target {
        let count = (target - size).min(round);
        let signing = Instant::now();
        let pool = sign_pool(factory, fill.events, count as usize);
        fill.signing += signing.elapsed();
        let requests: Vec<pb::AppendBatchRequest> =
            pool.chunks(BATCH).map(|c| pb::AppendBatchRequest { events: c.to_vec() }).collect();
        drop(pool);
        let cpu = process_cpu(node.pid());
        let sending = Instant::now();
        let sent = runtime.block_on(send_batches(&clients, requests))?;
        fill.sending += sending.elapsed();
        fill.node_cpu += process_cpu(node.pid()).saturating_sub(cpu);
        fill.events += sent;
        size += sent;
        eprintln!(
            "fill: {}/{} entries ({:.0} %), {} events/s so far",
            number(size as f64),
            number(target as f64),
            (size - start) as f64 * 100.0 / total as f64,
            number(fill.events as f64 / fill.sending.as_secs_f64())
        );
    }
    let size = runtime.block_on(log_size(&node.url))?;
    if size != target {
        return Err(format!("the source log holds {size} entries after the fill, not {target}").into());
    }
    Ok(fill)
}

/// Sends every request, one in flight per client; any refusal is an error.
async fn send_batches(clients: &[LedgerClient<Channel>], requests: Vec<pb::AppendBatchRequest>) -> Result<u64> {
    let queue = Arc::new(Mutex::new(requests.into_iter()));
    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients {
        let mut client = client.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut appended = 0u64;
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some(request) = next else { return Ok::<u64, String>(appended) };
                let response = client
                    .append_batch(request)
                    .await
                    .map_err(|s| format!("AppendBatch: {:?}: {}", s.code(), s.message()))?
                    .into_inner();
                for result in response.results {
                    match result.outcome {
                        Some(pb::append_result::Outcome::Receipt(_)) => appended += 1,
                        Some(pb::append_result::Outcome::Refusal(r)) => {
                            return Err(format!("an event was refused: {}: {}", r.code, r.message));
                        }
                        None => return Err("a result with neither receipt nor refusal".into()),
                    }
                }
            }
        }));
    }
    let mut appended = 0;
    for task in tasks {
        appended += task.await??;
    }
    Ok(appended)
}

/// Signs `n` production events from index `first` on every core.
fn sign_pool(key: &SecretKey, first: u64, n: usize) -> Vec<pb::SignedEvent> {
    let millis = now_millis();
    common::across_cores(first..first + n as u64, |i| sign(key, &production(i, millis)))
}

async fn log_size(url: &str) -> Result<u64> {
    Ok(connect(url).await?.get_log_info(pb::GetLogInfoRequest {}).await?.into_inner().size)
}

// ---------------------------------------------------------------------------
// `qtrace-node mirror` as a process

struct MirrorRun {
    status: ExitStatus,
    /// Spawn to exit (to the first poll that finds the process a zombie).
    wall: Duration,
    /// utime + stime of the whole process, read while it was a zombie.
    cpu: Duration,
    /// CPU of threads by group, the last value seen while they ran.
    by_group: BTreeMap<&'static str, Duration>,
    /// When the process had written FIRST_CHUNK_WRITTEN bytes.
    first_chunk: Option<Duration>,
    /// Bytes the process wrote with write(2) and friends (its store).
    written: u64,
    /// Its peak resident memory (VmHWM), the last value seen while it ran.
    peak_rss: u64,
    /// Why the benchmark killed it, if it did.
    killed: Option<String>,
    /// The source node's CPU during the run (serving the entries).
    source_cpu: Duration,
    /// This benchmark's CPU during the run (polling /proc).
    bench_cpu: Duration,
    /// The whole machine's busy time during the run.
    machine: Duration,
    stdout: String,
    stderr: String,
}

impl MirrorRun {
    /// Exit status 0, and the size the command says it mirrored.
    fn check(&self, size: u64) -> Result<()> {
        let expected = format!("{PEER_NAME}: {size} entries mirrored");
        if let Some(reason) = &self.killed {
            return Err(format!("qtrace-node mirror was killed by the benchmark: {reason}").into());
        }
        if !self.status.success() || !self.stdout.contains(&expected) {
            return Err(format!(
                "qtrace-node mirror exited with {} after {:.1} s, peak RSS {}, and printed {:?} (expected \
                 {expected:?}); stderr: {}",
                self.status,
                self.wall.as_secs_f64(),
                megabytes(self.peak_rss),
                self.stdout.trim(),
                without_ansi(self.stderr.trim())
            )
            .into());
        }
        Ok(())
    }

    fn usage_rows(&self, report: &mut Report, name: &str, entries: u64) {
        let wall = self.wall.as_secs_f64();
        let per_entry = |d: Duration| d.as_secs_f64() * 1e6 / entries as f64;
        cpu_rows(report, name, "  mirror process CPU per entry, all threads", &self.by_group, self.cpu, wall, entries);
        report.figure(
            &format!("{name}_source_cpu_us_per_entry"),
            "  source node CPU per entry (serving GetEntries)",
            per_entry(self.source_cpu),
            "µs",
            vec![Ratio::new(self.source_cpu.as_secs_f64() / wall, "source cores busy")],
        );
        let other =
            self.machine.saturating_sub(self.cpu).saturating_sub(self.source_cpu).saturating_sub(self.bench_cpu);
        report.figure(
            &format!("{name}_other_processes_cores"),
            "  other processes on the machine (noise)",
            other.as_secs_f64() / wall,
            "cores",
            vec![Ratio::new(other.as_secs_f64() / wall / cores() as f64, "of the machine's cores")],
        );
        report.figure(
            &format!("{name}_written_bytes_per_entry"),
            "  bytes the mirror wrote per entry",
            self.written as f64 / entries as f64,
            "B",
            vec![Ratio::new(self.written as f64 / entries as f64 / ENTRY_BYTES_ESTIMATE, "÷ entry bytes (~600 B)")],
        );
    }
}

/// The average entry size of this workload (164-byte header + ~430-byte
/// production event), for the write-amplification ratio.
const ENTRY_BYTES_ESTIMATE: f64 = 600.0;

const TOKIO: &str = "tokio threads, verification threads (incl. ended)";

/// Runs `qtrace-node mirror` on `data` against `peer` until it exits,
/// polling /proc for its CPU and writes.
fn mirror_process(data: &Path, peer: &str, source_pid: u32, limits: Watchdog) -> Result<MirrorRun> {
    let stderr_path = data.with_extension("stderr");
    let stderr = std::fs::File::create(&stderr_path)?;
    let binary = Path::new(env!("CARGO_BIN_EXE_qtrace-node"));
    let machine = machine_busy();
    let source_cpu = process_cpu(source_pid);
    let bench_cpu = process_cpu(std::process::id());
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("mirror")
        .arg("--data")
        .arg(data)
        .arg("--peer")
        .arg(peer)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("starting {} mirror: {e}", binary.display()))?;
    let pid = child.id();
    let mut seen: BTreeMap<u32, ThreadTimes> = BTreeMap::new();
    let mut first_chunk = None;
    let mut written = 0;
    let mut peak_rss = 0;
    let mut killed = None;
    let (wall, cpu) = loop {
        // A zombie keeps its /proc/PID/stat, with the CPU time of every
        // thread it had, until it is reaped.
        if process_state(pid).is_none_or(|state| state == 'Z') {
            let wall = started.elapsed();
            written = written.max(io_field(pid, "wchar"));
            break (wall, process_cpu(pid));
        }
        for (tid, times) in threads(pid) {
            seen.insert(tid, times);
        }
        written = written.max(io_field(pid, "wchar"));
        if first_chunk.is_none() && written >= FIRST_CHUNK_WRITTEN {
            first_chunk = Some(started.elapsed());
        }
        let rss = status_bytes(pid, "VmRSS");
        peak_rss = peak_rss.max(rss).max(status_bytes(pid, "VmHWM"));
        if killed.is_none()
            && let Some(reason) = limits.exceeded(started.elapsed(), rss)
        {
            // SIGKILL to our own child, by its process id; the loop then
            // sees the zombie.
            let _ = child.kill();
            killed = Some(reason);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let status = child.wait()?;
    let source_cpu = process_cpu(source_pid).saturating_sub(source_cpu);
    let bench_cpu = process_cpu(std::process::id()).saturating_sub(bench_cpu);
    let machine = machine_busy().saturating_sub(machine);
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let by_group = by_group(&seen);
    Ok(MirrorRun {
        status,
        wall,
        cpu,
        by_group,
        first_chunk,
        written,
        peak_rss,
        killed,
        source_cpu,
        bench_cpu,
        machine,
        stdout,
        stderr,
    })
}

/// Limits on a process the benchmark runs: past them it is killed, so that
/// a runaway process neither takes the shared machine's memory nor hangs.
#[derive(Debug, Clone, Copy)]
struct Watchdog {
    timeout: Duration,
    /// Resident bytes.
    memory: u64,
}

impl Watchdog {
    fn exceeded(&self, elapsed: Duration, rss: u64) -> Option<String> {
        if elapsed > self.timeout {
            Some(format!("it ran past the time limit of {} s", self.timeout.as_secs()))
        } else if rss > self.memory {
            Some(format!(
                "its resident memory {} passed the limit of {} (QTRACE_BENCH_RSS_LIMIT_MB)",
                megabytes(rss),
                megabytes(self.memory)
            ))
        } else {
            None
        }
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{} MB", number(bytes as f64 / 1e6))
}

/// CPU per entry of a process, in all and by thread group; the tokio group
/// is the remainder of the process total.
fn cpu_rows(
    report: &mut Report,
    name: &str,
    label: &str,
    by_group: &BTreeMap<&'static str, Duration>,
    total: Duration,
    wall: f64,
    entries: u64,
) {
    let per_entry = |d: Duration| d.as_secs_f64() * 1e6 / entries as f64;
    report.figure(
        &format!("{name}_cpu_us_per_entry"),
        label,
        per_entry(total),
        "µs",
        vec![Ratio::new(total.as_secs_f64() / wall, "cores busy")],
    );
    let mut named = Duration::ZERO;
    for (group, cpu) in by_group {
        if *group == TOKIO {
            continue;
        }
        named += *cpu;
        report.figure(
            &format!("{name}_cpu_us_per_entry_{}", slug(group)),
            &format!("    {group}"),
            per_entry(*cpu),
            "µs",
            vec![Ratio::new(cpu.as_secs_f64() / wall, "cores busy")],
        );
    }
    let rest = total.saturating_sub(named);
    report.figure(
        &format!("{name}_cpu_us_per_entry_tokio"),
        &format!("    {TOKIO}"),
        per_entry(rest),
        "µs",
        vec![Ratio::new(rest.as_secs_f64() / wall, "cores busy")],
    );
}

/// CPU time by thread group from the last sample of each thread.
fn by_group(seen: &BTreeMap<u32, ThreadTimes>) -> BTreeMap<&'static str, Duration> {
    let mut out: BTreeMap<&'static str, Duration> = BTreeMap::new();
    for times in seen.values() {
        *out.entry(group_of(&times.name)).or_default() += times.run;
    }
    out
}

/// Thread groups of the mirror process. Threads that std::thread::scope
/// spawns inherit their parent's name, and most of them end between polls,
/// so the tokio group is the remainder of the process total.
fn group_of(name: &str) -> &'static str {
    if name.starts_with("sled") || name == "log flusher" {
        "sled threads (I/O, flusher)"
    } else if name == "qtrace-node" {
        "main thread"
    } else if name == "qtrace-writer" {
        "writer thread (own log)"
    } else {
        TOKIO
    }
}

// ---------------------------------------------------------------------------
// The catch-up's stages one at a time

struct Streamed {
    count: u64,
    elapsed: Duration,
    source_cpu: Duration,
    /// The first entries, kept for the other stages.
    sample: Vec<pb::Entry>,
}

/// Streams the whole log with GetEntries and does nothing with the entries
/// but decode them (tonic does) and keep the first `keep`.
async fn stream_entries(url: &str, source_pid: u32, log_id: LogId, n: u64, keep: usize) -> Result<Streamed> {
    let mut client = connect(url).await?;
    let cpu = process_cpu(source_pid);
    let started = Instant::now();
    let mut stream =
        client.get_entries(pb::GetEntriesRequest { log_id: log_id.0.to_vec(), from: 0, to: n }).await?.into_inner();
    let mut count = 0u64;
    let mut sample = Vec::with_capacity(keep);
    while let Some(entry) = stream.message().await? {
        if sample.len() < keep {
            sample.push(entry);
        }
        count += 1;
    }
    let elapsed = started.elapsed();
    if count != n {
        return Err(format!("GetEntries sent {count} entries, not {n}").into());
    }
    Ok(Streamed { count, elapsed, source_cpu: process_cpu(source_pid).saturating_sub(cpu), sample })
}

struct Verified {
    entries: Vec<NewEntry>,
    /// Decode, chain, hash, index keys and tree, on one core.
    sequential: Duration,
    /// Batch verification on every core (wall time).
    signatures: Duration,
    wall: Duration,
}

/// What `federation::chunk::verify_chunk` does, chunk by chunk, timing the part
/// on one core and the part on every core separately.
fn verify_like_mirror(log_id: LogId, wire: Vec<pb::Entry>) -> Result<Verified> {
    let threads = cores();
    let wall = Instant::now();
    let mut entries: Vec<NewEntry> = Vec::with_capacity(wire.len());
    let mut sequential = Duration::ZERO;
    let mut signatures = Duration::ZERO;
    let mut frontier = CompactRange::new();
    let mut prev = EntryHash(log_id.0);
    for chunk in wire.chunks(CHUNK) {
        let started = Instant::now();
        let first = entries.len();
        for w in chunk {
            let entry = Entry::from_pb(w)?;
            let expected = entries.len() as u64;
            if entry.seq != expected {
                return Err(format!("entry {expected}: the source sent entry {} instead", entry.seq).into());
            }
            entry.check_link(&log_id, if expected == 0 { None } else { Some(&prev) })?;
            let valid = event::decode_event(&entry.event).map_err(|e| format!("entry {expected}: {e}"))?;
            let hash = entry.hash();
            prev = hash;
            std::hint::black_box(event::index_keys(&valid.event));
            entries.push(NewEntry { entry, hash });
        }
        let part = &entries[first..];
        for new in part {
            frontier.append(new.hash.0, |_, _| {}).map_err(|_| "the tree is full")?;
        }
        sequential += started.elapsed();

        let started = Instant::now();
        let items: Vec<BatchItem<'_>> = part
            .iter()
            .map(|n| BatchItem { event: &n.entry.event, signer: &n.entry.signer, signature: &n.entry.signature })
            .collect();
        let failed = signing::verify_batch_parallel(&items, threads).is_err();
        signatures += started.elapsed();
        if failed {
            return Err("a signature in the source log did not verify".into());
        }
    }
    Ok(Verified { entries, sequential, signatures, wall: wall.elapsed() })
}

struct Stored {
    elapsed: Duration,
    disk_bytes: u64,
    /// This process's peak resident memory after storing.
    peak_rss: u64,
    /// Sled keys the log part holds per entry (entries, tiles, the
    /// checkpoint); a mirrored log has no dedup keys, and its indexes are
    /// the follower's, in their own database.
    keys_per_entry: f64,
}

/// What the mirror's store step does: each chunk stored with
/// `append_mirrored` in parts of 1,024 entries (one sled batch and a flush
/// each, as `federation::chunk::store_verified` does) into a fresh store.
fn store_like_mirror(log_id: LogId, entries: &[NewEntry]) -> Result<Stored> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(&dir.path().join("store"))?;
    let log = store.log(log_id)?;
    let started = Instant::now();
    for chunk in entries.chunks(CHUNK) {
        for part in chunk.chunks(STORE_PART) {
            log.append_mirrored(part, None)?;
        }
    }
    let elapsed = started.elapsed();
    store.flush()?;
    let peak_rss = status_bytes(std::process::id(), "VmHWM");
    let keys_per_entry = log.log_keys() as f64 / entries.len().max(1) as f64;
    Ok(Stored {
        keys_per_entry,
        elapsed,
        disk_bytes: dir_bytes(&dir.path().join("store")) + dir_bytes(&dir.path().join("store.index")),
        peak_rss,
    })
}

// ---------------------------------------------------------------------------
// Catch-up inside a node

struct InNode {
    elapsed: Duration,
    serving: Duration,
    /// Entries of the source's log it held at the end.
    held: u64,
    /// Why it did not get to hold them all, if it did not.
    failure: Option<String>,
    cpu: Duration,
    by_group: BTreeMap<&'static str, Duration>,
    peak_rss: u64,
    source_cpu: Duration,
    other_cpu: Duration,
    status: ExitStatus,
}

/// Starts a second node that mirrors the source and polls its ListLogs
/// until it holds `n` entries of the source's log, then stops it.
fn in_node_catch_up(
    runtime: &Runtime,
    peer: &str,
    source_pid: u32,
    log_id: LogId,
    n: u64,
    limits: Watchdog,
) -> Result<InNode> {
    let (source_cpu, bench_cpu, machine) = (process_cpu(source_pid), process_cpu(std::process::id()), machine_busy());
    let started = Instant::now();
    let stderr = tempfile::tempfile()?;
    let mut args = vec!["--peer", peer, "--mirror-interval-ms", "100"];
    let chunk = std::env::var("QTRACE_BENCH_MIRROR_CHUNK").unwrap_or_default();
    if !chunk.is_empty() {
        args.extend(["--mirror-chunk", chunk.as_str()]);
    }
    let mut node = NodeProcess::start(Path::new(env!("CARGO_BIN_EXE_qtrace-node")), &args, Stdio::from(stderr))?;
    let serving = started.elapsed();
    let (url, pid) = (node.url.clone(), node.pid());
    let mut seen: BTreeMap<u32, ThreadTimes> = BTreeMap::new();
    let mut peak_rss = 0;
    let mut last = 0;
    let outcome = runtime.block_on(async {
        let mut client = connect(&url).await?;
        loop {
            seen.extend(threads(pid));
            last = held(&mut client, &log_id).await.max(last);
            let rss = status_bytes(pid, "VmRSS");
            peak_rss = peak_rss.max(rss).max(status_bytes(pid, "VmHWM"));
            if last >= n {
                return Ok::<_, Box<dyn Error + Send + Sync>>((started.elapsed(), None));
            }
            if process_state(pid).is_none_or(|state| state == 'Z') {
                return Ok((started.elapsed(), Some("the node exited".to_string())));
            }
            if let Some(reason) = limits.exceeded(started.elapsed(), rss) {
                return Ok((started.elapsed(), Some(format!("the benchmark killed the node: {reason}"))));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let (elapsed, failure) = match outcome {
        Ok(outcome) => outcome,
        Err(e) => (started.elapsed(), Some(format!("polling the node failed: {e}"))),
    };
    let cpu = process_cpu(pid);
    let source_cpu = process_cpu(source_pid).saturating_sub(source_cpu);
    let bench_cpu = process_cpu(std::process::id()).saturating_sub(bench_cpu);
    let other_cpu = machine_busy().saturating_sub(machine).saturating_sub(cpu + source_cpu + bench_cpu);
    let status = if failure.is_some() { node.kill()? } else { node.stop()? };
    Ok(InNode {
        elapsed,
        serving,
        held: last,
        failure,
        cpu,
        by_group: by_group(&seen),
        peak_rss,
        source_cpu,
        other_cpu,
        status,
    })
}

/// How many entries of `log` a node holds (0 until it has any).
async fn held(client: &mut LedgerClient<Channel>, log: &LogId) -> u64 {
    client
        .list_logs(pb::ListLogsRequest {})
        .await
        .map(|r| r.into_inner().logs.into_iter().find(|l| l.log_id == log.0).map_or(0, |l| l.size))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Workload

/// Registers the manufacturer and its key, signed by the development
/// authority.
async fn register(client: &mut LedgerClient<Channel>, root: &SecretKey, factory: &SecretKey) -> Result<()> {
    let at = |body: Body| pb::Event {
        event_time: Some(pb::EventTime { unix_millis: now_millis(), offset_minutes: 480 }),
        subject: Some(pb::Subject { kind: Some(Kind::OrganisationUscc(FACTORY.into())) }),
        body: Some(body),
        ..Default::default()
    };
    let events = [
        pb::Event {
            event_time: Some(pb::EventTime { unix_millis: now_millis(), offset_minutes: 480 }),
            ..testkit::register_org(FACTORY, "Example Dairy Co. (示例乳业)", &[pb::Role::Manufacturer], &[])
        },
        at(Body::KeyRegistered(pb::KeyRegistered {
            uscc: FACTORY.into(),
            public_key: factory.public_key().to_bytes().to_vec(),
            person: "张伟".into(),
            title: "质量负责人".into(),
            admin: false,
        })),
    ];
    for event in events {
        client.append(pb::AppendRequest { event: Some(sign(root, &event)) }).await?;
    }
    Ok(())
}

fn scale_from_env_and_args() -> Result<Scale> {
    Ok(if common::small_scale()? { SMALL } else { FULL })
}

async fn connect(url: &str) -> Result<LedgerClient<Channel>> {
    let channel = Endpoint::from_shared(url.to_string())?.connect().await?;
    Ok(LedgerClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024))
}

// ---------------------------------------------------------------------------
// Limits measured in this process

struct VerifyLimits {
    /// Batches of 64 on one core.
    batch64_one: f64,
    /// Batches of 64 on every core.
    batch64_all: f64,
    /// Chunks of CHUNK split across the cores, one batch per core, as
    /// `verify_chunk` does.
    chunked_all: f64,
    /// `signing::PublicKey::from_bytes` (what `signing::verify_batch` does
    /// for every item) on one core.
    key_from_bytes: f64,
}

/// Batch verification of signatures over real production events (the
/// bytes the mirror verifies) by 16 keys.
fn measure_verify(n: usize) -> VerifyLimits {
    let keys: Vec<SigningKey> = (0..16u8).map(|i| SigningKey::from_bytes(&[i.wrapping_add(100); 32])).collect();
    let millis = now_millis();
    let threads = cores();
    let per_thread = n.div_ceil(threads);
    let signed: Vec<(Vec<u8>, ed25519_dalek::Signature, ed25519_dalek::VerifyingKey)> = std::thread::scope(|scope| {
        let keys = &keys;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t * per_thread..((t + 1) * per_thread).min(n))
                        .map(|i| {
                            let key = &keys[i % keys.len()];
                            let message = signing::signed_message(&production(i as u64, millis).encode_to_vec());
                            let signature = key.sign(&message);
                            (message, signature, key.verifying_key())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    let messages: Vec<&[u8]> = signed.iter().map(|s| s.0.as_slice()).collect();
    let signatures: Vec<ed25519_dalek::Signature> = signed.iter().map(|s| s.1).collect();
    let verifying: Vec<ed25519_dalek::VerifyingKey> = signed.iter().map(|s| s.2).collect();
    // Verifies [from, to) in batches of `batch`; the count that verified.
    let verify = |from: usize, to: usize, batch: usize| {
        let mut ok = 0;
        let mut at = from;
        while at < to {
            let end = at.saturating_add(batch).min(to);
            if ed25519_dalek::verify_batch(&messages[at..end], &signatures[at..end], &verifying[at..end]).is_ok() {
                ok += end - at;
            }
            at = end;
        }
        ok
    };
    let on_every_core = |batch: usize, span: usize| {
        // Spans of `span` signatures, each split across the cores.
        let started = Instant::now();
        let mut ok = 0;
        let mut at = 0;
        while at < n {
            let end = (at + span).min(n);
            let per = (end - at).div_ceil(threads);
            ok += std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let verify = &verify;
                        scope.spawn(move || verify((at + t * per).min(end), (at + (t + 1) * per).min(end), batch))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or(0)).sum::<usize>()
            });
            at = end;
        }
        (ok, n as f64 / started.elapsed().as_secs_f64())
    };
    let started = Instant::now();
    let ok_one = verify(0, n, VERIFY_BATCH);
    let batch64_one = n as f64 / started.elapsed().as_secs_f64();
    let (ok_all, batch64_all) = on_every_core(VERIFY_BATCH, n);
    let (ok_chunked, chunked_all) = on_every_core(usize::MAX, CHUNK);
    let key_bytes: Vec<[u8; 32]> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
    let started = Instant::now();
    let mut ok_keys = 0;
    for i in 0..n {
        ok_keys += usize::from(signing::PublicKey::from_bytes(std::hint::black_box(&key_bytes[i % 16])).is_ok());
    }
    let key_from_bytes = n as f64 / started.elapsed().as_secs_f64();
    if ok_one != n || ok_all != n || ok_chunked != n || ok_keys != n {
        eprintln!("warning: valid signatures failed batch verification ({ok_one}, {ok_all}, {ok_chunked} of {n})");
    }
    VerifyLimits { batch64_one, batch64_all, chunked_all, key_from_bytes }
}

/// Raw sled, configured as `SledStore::open` configures it: batches of
/// 100-byte values under 8-byte keys, each applied and flushed, for
/// `length` per batch size. Keys per second, by batch size.
fn measure_sled(length: Duration) -> Result<Vec<(usize, f64)>> {
    let value = vec![0x5au8; SLED_VALUE];
    let mut out = Vec::new();
    for keys in SLED_BATCHES {
        let dir = tempfile::tempdir()?;
        let db = sled::Config::new().path(dir.path().join("raw")).mode(sled::Mode::HighThroughput).open()?;
        let tree = db.open_tree("raw")?;
        let mut key = 0u64;
        let started = Instant::now();
        while started.elapsed() < length {
            let mut batch = sled::Batch::default();
            for _ in 0..keys {
                batch.insert(&key.to_be_bytes(), value.as_slice());
                key += 1;
            }
            tree.apply_batch(batch)?;
            db.flush()?;
        }
        out.push((keys, key as f64 / started.elapsed().as_secs_f64()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Node processes

// ---------------------------------------------------------------------------
// /proc and the file system

/// A log line without its terminal colour codes (ESC [ ... m).
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// A JSON key for a thread group: its name before any parenthesis or
/// comma, in lower case with underscores.
fn slug(label: &str) -> String {
    let head = label.split([',', '(']).next().unwrap_or(label).trim();
    head.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

// ---------------------------------------------------------------------------
// The report (the same shape as the append benchmark's)
