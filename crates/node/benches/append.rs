//! How fast a real `qtrace-node` process appends, next to machine limits
//! measured in the same run.
//!
//! `cargo bench -p qtrace-node --bench append` runs the full version, the
//! one whose figures we quote; `QTRACE_BENCH_SCALE=small` (or the argument
//! `small`) runs a smoke version in a few seconds. The program prints one
//! table and ends with a single line `BENCH-SUMMARY {json}`. It never asserts
//! a time.
//!
//! It starts the release `qtrace-node` binary cargo built for this benchmark
//! (`CARGO_BIN_EXE_qtrace-node`) on 127.0.0.1 port 0 with a temporary data
//! directory, registers a manufacturer and a testing lab with the
//! development authority key, and then, for each phase, signs all the
//! events it will send before the clock starts (signing is the client's
//! cost, not the node's):
//!
//! - no-op RPCs: `GetLogInfo` on the same node with 1, 16 and 64 in flight
//!   (the honest cost of a tonic round trip through this server);
//! - unary `Append` with 1, 16 and 64 concurrent clients, 64 both on separate
//!   channels (one HTTP/2 connection each) and on one shared channel;
//! - `AppendBatch` of 1,000 events from 1 and 4 concurrent clients;
//! - `import` (in `append/import.rs`): on a second node started with
//!   `--cache-mb 64`, bulk-importing production records to 3,000,000
//!   entries (small: 20,000), with the rate, resident memory and bytes on
//!   disk at 20,000, 100,000, 1,000,000 and 3,000,000 entries (small: 2,000,
//!   5,000, 10,000 and 20,000); and at 20,000 and 1,000,000 entries (small:
//!   2,000 and 20,000), with the import paused, the consumer resolver's
//!   rate and p50/p99 latency for 16 concurrent HTTP clients asking for the
//!   JSON verdicts of random imported lots for 10 s (small: 2 s).
//!
//! Client and node share this machine's cores, as they do for the no-op
//! baseline. For each phase it also reads, from `/proc`, the CPU time of the
//! node's threads by name (the writer thread, the tokio workers, sled's
//! threads) and the bytes the node wrote to storage, so the table says where
//! the node's time went. At the end the node is stopped with SIGTERM by
//! process id and must exit with status 0.
//!
//! Environment: `QTRACE_BENCH_SCALE` (`small` | `full`),
//! `QTRACE_BENCH_SECONDS` (override the length of every phase) and
//! `QTRACE_BENCH_ONLY` (comma-separated phase names, e.g. `unary64,batch4`,
//! for profiling one phase; ratios to skipped phases print as n/a).

use std::collections::BTreeMap;
use std::error::Error;
use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey};
use prost::Message;
use qtrace_ledger::merkle;
use qtrace_ledger::note::{self, Verifier};
use qtrace_ledger::pb::{self, event::Body, subject::Kind};
use qtrace_ledger::signing::{self, SecretKey};
use qtrace_ledger::testkit;
use qtrace_rpc::rpc::ledger_client::LedgerClient;
use tonic::transport::{Channel, Endpoint};

/// The node's allocator, so limits measured here (ed25519) are measured as
/// the node runs them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::node::NodeProcess;
use common::procfs::{ThreadTimes, io_field, own_cpu, process_cpu, threads};
use common::workload::{FACTORY, LAB, event_at};
use common::{Ratio, Report, cores, machine_busy, now_millis, sign};
use qtrace_ledger::benchkit as common;

#[path = "append/import.rs"]
mod import;

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy)]
struct Scale {
    name: &'static str,
    /// Signatures for the verify limits.
    signatures: usize,
    /// Length of each append phase.
    phase: Duration,
    /// Length of each no-op phase.
    noop: Duration,
}

const FULL: Scale =
    Scale { name: "full", signatures: 20_000, phase: Duration::from_secs(5), noop: Duration::from_secs(3) };
const SMALL: Scale =
    Scale { name: "small", signatures: 2_000, phase: Duration::from_secs(1), noop: Duration::from_millis(500) };

/// Events per AppendBatch request.
const BATCH: usize = 1_000;
/// Signatures per batch verification.
const VERIFY_BATCH: usize = 64;
/// The throughput target for 64 unary clients.
const TARGET_APPENDS_PER_S: f64 = 20_000.0;
/// The target for batch events/s ÷ single-core batch-verify sig/s.
const TARGET_BATCH_VS_VERIFY: f64 = 0.6;
/// Pre-signed events per second of phase: an upper bound on what a phase
/// can use. Running out ends the phase early (it is flagged); the rate
/// stays right because it is events ÷ the time actually taken.
const POOL_RATE_ONE_CLIENT: f64 = 5_000.0;
const POOL_RATE_UNARY: f64 = 20_000.0;
const POOL_RATE_BATCH: f64 = 30_000.0;

fn main() -> Result<()> {
    let scale = scale_from_env_and_args()?;
    let phase = match std::env::var("QTRACE_BENCH_SECONDS") {
        Ok(text) => Duration::from_secs_f64(text.parse::<f64>().map_err(|e| format!("QTRACE_BENCH_SECONDS: {e}"))?),
        Err(_) => scale.phase,
    };
    let noop = phase.min(scale.noop);
    let only: Option<Vec<String>> = std::env::var("QTRACE_BENCH_ONLY")
        .ok()
        .map(|text| text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    let enabled = |name: &str| only.as_ref().is_none_or(|names| names.iter().any(|n| n == name));
    let started = Instant::now();
    println!(
        "qtrace append benchmark, scale {} ({} cores, {:.1} s per append phase, {:.1} s per no-op phase)",
        scale.name,
        cores(),
        phase.as_secs_f64(),
        noop.as_secs_f64()
    );
    let mut report = Report::new("append", scale.name);

    // Limits that need no node: measured first, on an idle machine.
    let (verify_per_s, batch_verify_per_s) = measure_verify(scale.signatures);
    report.section("machine limits (this run; ratio = this run ÷ shared/CRATES.md reference)");
    report.limit(
        "ed25519_verify_per_s",
        "ed25519 verify_strict, 1 core",
        verify_per_s,
        "sig/s",
        vec![Ratio::reference(verify_per_s, 28_000.0)],
    );
    report.limit(
        "ed25519_batch64_sigs_per_s",
        "ed25519 verify_batch (64), 1 core",
        batch_verify_per_s,
        "sig/s",
        vec![Ratio::reference(batch_verify_per_s, 60_000.0)],
    );

    let mut node = NodeProcess::start(Path::new(env!("CARGO_BIN_EXE_qtrace-node")), &[], Stdio::inherit())?;
    println!("qtrace-node pid {} at {} (data {})", node.pid(), node.url, node.data.display());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cores()).enable_all().build()?;
    let outcome = runtime.block_on(run(&node, &mut report, Settings { phase, noop, enabled: &enabled }));
    drop(runtime);
    let status = node.stop()?;
    let outcome = match outcome {
        Ok(()) if enabled("import") => {
            let import_scale = if scale.name == "small" { &import::SMALL } else { &import::FULL };
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cores()).enable_all().build()?;
            runtime.block_on(import::run(&mut report, import_scale))
        }
        other => other,
    };
    if let Err(e) = &outcome {
        report.note(&format!("the benchmark stopped early: {e}"));
    }
    report.section("shutdown");
    report.info(
        "node_exit_code",
        "node exit status after SIGTERM (must be 0)",
        f64::from(status.code().unwrap_or(-1)),
        "",
    );

    let seconds = started.elapsed().as_secs_f64();
    report.print();
    println!("total time: {seconds:.1} s");
    println!("BENCH-SUMMARY {}", report.summary(seconds, outcome.is_ok()));
    outcome?;
    if !status.success() {
        return Err(format!("qtrace-node exited with {status} after SIGTERM, not 0").into());
    }
    Ok(())
}

struct Settings<'a> {
    phase: Duration,
    noop: Duration,
    enabled: &'a dyn Fn(&str) -> bool,
}

async fn run(node: &NodeProcess, report: &mut Report, settings: Settings<'_>) -> Result<()> {
    let mut admin = connect(&node.url).await?;
    let root = SecretKey::from_file_text(&std::fs::read_to_string(node.data.join("authority.key"))?)?;
    let factory = SecretKey::from_seed(&[13; 32]);
    let lab = SecretKey::from_seed(&[11; 32]);
    register(&mut admin, &root, &factory, &lab).await?;
    let verifier = Verifier::parse(std::fs::read_to_string(node.data.join("log.vkey"))?.trim())?;
    let signers = Signers { factory, lab };
    let mut bench = Bench { node, report, signers, verifier, next_event: 0, noop: BTreeMap::new() };
    let enabled = settings.enabled;

    bench
        .report
        .section(&format!("no-op RPC: GetLogInfo on the same node ({:.1} s each)", settings.noop.as_secs_f64()));
    for (name, clients, mode) in [
        ("noop1", 1, Mode::Separate),
        ("noop16", 16, Mode::Separate),
        ("noop64", 64, Mode::Separate),
        ("noop64s", 64, Mode::Shared),
    ] {
        if enabled(name) {
            bench.noop_phase(name, clients, mode, settings.noop).await?;
        }
    }

    let mut best64: Option<(f64, &str)> = None;
    for (name, clients, mode, pool_rate) in [
        ("unary1", 1, Mode::Separate, POOL_RATE_ONE_CLIENT),
        ("unary16", 16, Mode::Separate, POOL_RATE_UNARY),
        ("unary64", 64, Mode::Separate, POOL_RATE_UNARY),
        ("unary64s", 64, Mode::Shared, POOL_RATE_UNARY),
    ] {
        if enabled(name) {
            let rate = bench.unary_phase(name, clients, mode, settings.phase, pool_rate).await?;
            if clients == 64 && best64.is_none_or(|(best, _)| rate > best) {
                best64 = Some((rate, mode.name()));
            }
        }
    }
    if let Some((rate, mode)) = best64 {
        bench.report.section("64 unary clients: the better channel layout");
        bench.report.figure(
            "unary64_best_per_s",
            &format!("appends/s, 64 clients, best layout ({mode})"),
            rate,
            "append/s",
            vec![Ratio::new(rate / TARGET_APPENDS_PER_S, "÷ target 20,000/s")],
        );
    }

    for (name, clients) in [("batch1", 1), ("batch4", 4)] {
        if enabled(name) {
            bench.batch_phase(name, clients, settings.phase).await?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One channel (HTTP/2 connection) per client.
    Separate,
    /// One channel shared by every client.
    Shared,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Separate => "separate channels",
            Mode::Shared => "one shared channel",
        }
    }
}

struct Signers {
    factory: SecretKey,
    lab: SecretKey,
}

struct Bench<'a> {
    node: &'a NodeProcess,
    report: &'a mut Report,
    signers: Signers,
    verifier: Verifier,
    /// Index of the next workload event: every event is new.
    next_event: u64,
    /// No-op RPC rate and p50 by phase name.
    noop: BTreeMap<&'static str, (f64, Duration)>,
}

impl Bench<'_> {
    async fn clients(&self, n: usize, mode: Mode) -> Result<Vec<LedgerClient<Channel>>> {
        let mut out = Vec::with_capacity(n);
        match mode {
            Mode::Separate => {
                for _ in 0..n {
                    out.push(connect(&self.node.url).await?);
                }
            }
            Mode::Shared => {
                let client = connect(&self.node.url).await?;
                out.extend(std::iter::repeat_n(client, n));
            }
        }
        Ok(out)
    }

    /// Signs `n` workload events on every core, before any clock starts.
    fn sign_pool(&mut self, n: usize) -> Vec<pb::SignedEvent> {
        let first = self.next_event;
        self.next_event += n as u64;
        let millis = now_millis();
        let signers = &self.signers;
        common::across_cores(first..first + n as u64, |i| sign_event(signers, i, millis))
    }

    fn noop_for(&self, clients: usize, mode: Mode) -> Option<(f64, Duration)> {
        let name = match (clients, mode) {
            (1, _) => "noop1",
            (16, _) => "noop16",
            (64, Mode::Separate) => "noop64",
            (64, Mode::Shared) => "noop64s",
            _ => return None,
        };
        self.noop.get(name).copied()
    }

    async fn noop_phase(&mut self, name: &'static str, clients: usize, mode: Mode, length: Duration) -> Result<()> {
        let clients = self.clients(clients, mode).await?;
        let n = clients.len();
        let usage = Usage::start(self.node);
        let phase = drive(clients, length, usize::MAX, |mut client, _| async move {
            client.get_log_info(pb::GetLogInfoRequest {}).await.map(|_| Done::one()).map_err(|s| s.to_string())
        })
        .await;
        let usage = usage.finish();
        let per_s = phase.events as f64 / phase.elapsed.as_secs_f64();
        let lat = Percentiles::of(&phase.latencies);
        self.noop.insert(name, (per_s, lat.p50));
        self.report.figure(
            &format!("{name}_rpc_per_s"),
            &format!("no-op RPC/s, {n} in flight ({})", mode.name()),
            per_s,
            "rpc/s",
            vec![Ratio::new(per_s / self.noop.get("noop1").map_or(f64::NAN, |v| v.0), "÷ no-op RPC/s, 1 in flight")],
        );
        self.report.figure(
            &format!("{name}_p50_us"),
            "  latency p50",
            micros(lat.p50),
            "µs",
            vec![Ratio::new(lat.p99.as_secs_f64() / lat.p50.as_secs_f64(), "p99 ÷ p50")],
        );
        self.report.figure(
            &format!("{name}_node_cpu_us"),
            "  node CPU per RPC",
            usage.node_cpu.as_secs_f64() * 1e6 / phase.events.max(1) as f64,
            "µs",
            vec![Ratio::new(usage.node_cpu.as_secs_f64() / phase.elapsed.as_secs_f64(), "node cores busy")],
        );
        let other = usage.other_cpu.as_secs_f64() / phase.elapsed.as_secs_f64();
        self.report.figure(
            &format!("{name}_other_processes_cores"),
            "  other processes on the machine (noise)",
            other,
            "cores",
            vec![Ratio::new(other / cores() as f64, "of the machine's cores")],
        );
        phase.check(name)
    }

    async fn unary_phase(
        &mut self,
        name: &'static str,
        clients: usize,
        mode: Mode,
        length: Duration,
        pool_rate: f64,
    ) -> Result<f64> {
        let pool: Arc<Vec<pb::SignedEvent>> =
            Arc::new(self.sign_pool((pool_rate * length.as_secs_f64()).ceil() as usize));
        let clients = self.clients(clients, mode).await?;
        let n = clients.len();
        let usage = Usage::start(self.node);
        let requests = pool.clone();
        let phase = drive(clients, length, pool.len(), move |mut client, i| {
            let event = requests[i].clone();
            async move {
                let receipt = client
                    .append(pb::AppendRequest { event: Some(event) })
                    .await
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                    .into_inner();
                Ok::<Done, String>(Done { events: 1, refused: 0, first_refusal: None, receipt: Some(receipt) })
            }
        })
        .await;
        let usage = usage.finish();
        let per_s = phase.events as f64 / phase.elapsed.as_secs_f64();
        let lat = Percentiles::of(&phase.latencies);
        let (noop_per_s, noop_p50) = self.noop_for(n, mode).unwrap_or((f64::NAN, Duration::ZERO));
        self.report.section(&format!(
            "unary Append, {n} concurrent clients, {} ({} appended in {:.2} s{})",
            mode.name(),
            phase.events,
            phase.elapsed.as_secs_f64(),
            if phase.exhausted { ", pre-signed pool used up" } else { "" }
        ));
        let mut ratios = vec![
            Ratio::new(per_s / noop_per_s, &format!("÷ no-op RPC/s, {n} in flight, same layout")),
            Ratio::new(per_s / self.report.limit_value("ed25519_verify_per_s"), "÷ ed25519 verify_strict/s, 1 core"),
        ];
        if n == 64 {
            ratios.push(Ratio::new(per_s / TARGET_APPENDS_PER_S, "÷ target 20,000/s"));
        }
        self.report.figure(&format!("{name}_appends_per_s"), "durable appends/s", per_s, "append/s", ratios);
        self.latency_rows(name, &lat, noop_p50, "÷ no-op RPC p50, same concurrency");
        if n == 1 && (Duration::from_millis(38)..Duration::from_millis(48)).contains(&lat.p50) {
            self.report.note(
                "a one-client p50 near 40 ms with the node mostly idle is the signature of Nagle's algorithm \
                 meeting delayed ACKs: the node's accepted sockets lack TCP_NODELAY",
            );
        }
        self.usage_rows(name, &usage, phase.events, phase.elapsed, n);
        self.check_receipt(phase.receipt.as_ref())?;
        phase.check(name)?;
        Ok(per_s)
    }

    async fn batch_phase(&mut self, name: &'static str, clients: usize, length: Duration) -> Result<()> {
        let pool = self.sign_pool((POOL_RATE_BATCH * length.as_secs_f64()).ceil() as usize);
        let requests: Arc<Vec<pb::AppendBatchRequest>> =
            Arc::new(pool.chunks(BATCH).map(|c| pb::AppendBatchRequest { events: c.to_vec() }).collect());
        drop(pool);
        let clients = self.clients(clients, Mode::Separate).await?;
        let n = clients.len();
        let usage = Usage::start(self.node);
        let shared = requests.clone();
        let phase = drive(clients, length, requests.len(), move |mut client, i| {
            let request = shared[i].clone();
            async move {
                let response = client
                    .append_batch(request)
                    .await
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                    .into_inner();
                let mut done = Done { events: 0, refused: 0, first_refusal: None, receipt: None };
                for result in response.results {
                    match result.outcome {
                        Some(pb::append_result::Outcome::Receipt(receipt)) => {
                            done.events += 1;
                            done.receipt = Some(receipt);
                        }
                        Some(pb::append_result::Outcome::Refusal(refusal)) => {
                            done.refused += 1;
                            done.first_refusal.get_or_insert(format!("{}: {}", refusal.code, refusal.message));
                        }
                        None => done.refused += 1,
                    }
                }
                Ok::<Done, String>(done)
            }
        })
        .await;
        let usage = usage.finish();
        let per_s = phase.events as f64 / phase.elapsed.as_secs_f64();
        let lat = Percentiles::of(&phase.latencies);
        let batch_verify = self.report.limit_value("ed25519_batch64_sigs_per_s");
        self.report.section(&format!(
            "AppendBatch of {BATCH}, {n} concurrent clients ({} appended in {:.2} s{})",
            phase.events,
            phase.elapsed.as_secs_f64(),
            if phase.exhausted { ", pre-signed pool used up" } else { "" }
        ));
        self.report.figure(
            &format!("{name}_events_per_s"),
            "durable events/s",
            per_s,
            "event/s",
            vec![
                Ratio::new(
                    per_s / batch_verify,
                    &format!("÷ batch-verify(64) sig/s, 1 core (target ≥ {TARGET_BATCH_VS_VERIFY})"),
                ),
                Ratio::new(
                    per_s / self.report.limit_value("ed25519_verify_per_s"),
                    "÷ ed25519 verify_strict/s, 1 core",
                ),
            ],
        );
        let ideal = Duration::from_secs_f64(BATCH as f64 / batch_verify);
        self.latency_rows(name, &lat, ideal, &format!("÷ time to batch-verify {BATCH} sigs on 1 core"));
        self.usage_rows(name, &usage, phase.events, phase.elapsed, n * BATCH);
        self.check_receipt(phase.receipt.as_ref())?;
        phase.check(name)
    }

    fn latency_rows(&mut self, name: &str, lat: &Percentiles, base: Duration, against: &str) {
        for (label, value) in [("p50", lat.p50), ("p99", lat.p99)] {
            self.report.figure(
                &format!("{name}_{label}_us"),
                &format!("  latency {label}"),
                micros(value),
                "µs",
                vec![Ratio::new(value.as_secs_f64() / base.as_secs_f64(), against)],
            );
        }
    }

    /// Where the node's time went during a phase, per appended event.
    fn usage_rows(&mut self, name: &str, usage: &UsageDelta, events: usize, elapsed: Duration, in_flight: usize) {
        let events = events.max(1) as f64;
        let wall = elapsed.as_secs_f64();
        let verify_cost = 1.0 / self.report.limit_value("ed25519_verify_per_s");
        let per_event = |d: Duration| d.as_secs_f64() / events;
        self.report.figure(
            &format!("{name}_node_cpu_us_per_event"),
            "  node CPU per event, all threads",
            per_event(usage.node_cpu) * 1e6,
            "µs",
            vec![
                Ratio::new(per_event(usage.node_cpu) / verify_cost, "÷ one verify_strict"),
                Ratio::new(usage.node_cpu.as_secs_f64() / wall, "node cores busy"),
            ],
        );
        for (group, cpu) in &usage.by_group {
            if cpu.as_secs_f64() / wall < 0.01 {
                continue;
            }
            self.report.figure(
                &format!("{name}_cpu_us_per_event_{}", slug(group)),
                &format!("    {group}"),
                per_event(*cpu) * 1e6,
                "µs",
                vec![Ratio::new(cpu.as_secs_f64() / wall, "cores busy")],
            );
        }
        if let Some(groups) = usage.groups.as_ref().filter(|g| g.count > 0.0) {
            let size = groups.events / groups.count;
            self.report.figure(
                &format!("{name}_group_commit_events"),
                "  events per group commit (LogStore::append call)",
                size,
                "events",
                vec![Ratio::new(size / in_flight as f64, "÷ events the clients keep in flight")],
            );
            self.report.figure(
                &format!("{name}_append_call_us_per_event"),
                "  writer inside LogStore::append, per event",
                groups.append_seconds / events * 1e6,
                "µs",
                vec![Ratio::new(groups.append_seconds / wall, "share of wall (sled batch + sign + flush)")],
            );
        }
        let blocked = (1.0 - (usage.writer_run + usage.writer_wait).as_secs_f64() / wall).max(0.0);
        self.report.figure(
            &format!("{name}_writer_blocked_share"),
            "  writer thread blocked (flush I/O or no work)",
            blocked * 100.0,
            "% wall",
            vec![Ratio::new(usage.writer_wait.as_secs_f64() / wall, "writer waiting for a core, share of wall")],
        );
        self.report.figure(
            &format!("{name}_node_runqueue_wait_us_per_event"),
            "  node threads waiting for a core",
            per_event(usage.node_wait) * 1e6,
            "µs",
            vec![Ratio::new(usage.node_wait.as_secs_f64() / wall, "threads waiting, average")],
        );
        self.report.figure(
            &format!("{name}_bench_cpu_us_per_event"),
            "  benchmark client CPU per event",
            per_event(usage.client_cpu) * 1e6,
            "µs",
            vec![Ratio::new(usage.client_cpu.as_secs_f64() / wall, "client cores busy")],
        );
        self.report.figure(
            &format!("{name}_other_processes_cores"),
            "  other processes on the machine (noise)",
            usage.other_cpu.as_secs_f64() / wall,
            "cores",
            vec![Ratio::new(usage.other_cpu.as_secs_f64() / wall / cores() as f64, "of the machine's cores")],
        );
        self.report.figure(
            &format!("{name}_written_bytes_per_event"),
            "  bytes the node wrote to storage per event",
            usage.written_bytes as f64 / events,
            "B",
            vec![Ratio::new(usage.written_bytes as f64 / events / ENTRY_BYTES_ESTIMATE, "÷ entry bytes (~564 B)")],
        );
    }

    /// Checks one receipt per phase the way a client would: signed by the
    /// log key, and its proof leads from the entry to the checkpoint's root.
    fn check_receipt(&self, receipt: Option<&pb::AppendReceipt>) -> Result<()> {
        let Some(receipt) = receipt else { return Ok(()) };
        let checkpoint = receipt.checkpoint.as_ref().ok_or("a receipt without a checkpoint")?;
        let opened = note::open_checkpoint(&checkpoint.note, &self.verifier, &[])?;
        let proof = receipt.inclusion.as_ref().ok_or("a receipt without a proof")?;
        let path: Vec<[u8; 32]> =
            proof.path.iter().map(|h| <[u8; 32]>::try_from(h.as_slice())).collect::<Result<_, _>>()?;
        let leaf = <[u8; 32]>::try_from(receipt.entry_hash.as_slice())?;
        merkle::verify_inclusion(receipt.seq, proof.tree_size, &leaf, &path, &opened.checkpoint.root)?;
        Ok(())
    }
}

/// The average entry size of this workload (164-byte header + ~400-byte
/// event), for the write-amplification ratio.
const ENTRY_BYTES_ESTIMATE: f64 = 564.0;

// ---------------------------------------------------------------------------
// Driving clients

/// What one call achieved.
struct Done {
    events: usize,
    refused: usize,
    first_refusal: Option<String>,
    receipt: Option<pb::AppendReceipt>,
}

impl Done {
    fn one() -> Done {
        Done { events: 1, refused: 0, first_refusal: None, receipt: None }
    }
}

#[derive(Default)]
struct Phase {
    events: usize,
    refused: usize,
    failed_calls: usize,
    first_problem: Option<String>,
    latencies: Vec<Duration>,
    elapsed: Duration,
    exhausted: bool,
    receipt: Option<pb::AppendReceipt>,
}

impl Phase {
    /// A refused event or a failed call means the benchmark is measuring
    /// something other than appends: stop and say so.
    fn check(&self, name: &str) -> Result<()> {
        if self.refused == 0 && self.failed_calls == 0 {
            return Ok(());
        }
        Err(format!(
            "{name}: {} events refused and {} calls failed; first: {}",
            self.refused,
            self.failed_calls,
            self.first_problem.as_deref().unwrap_or("?")
        )
        .into())
    }
}

/// Runs `call` from every client in a loop until `length` has passed or
/// `limit` calls were made, one call in flight per client. The clock stops
/// when the last call in flight has answered.
async fn drive<F, Fut>(clients: Vec<LedgerClient<Channel>>, length: Duration, limit: usize, call: F) -> Phase
where
    F: Fn(LedgerClient<Channel>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Done, String>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients {
        let next = next.clone();
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut phase = Phase::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    phase.exhausted = true;
                    break;
                }
                let one = Instant::now();
                let outcome = call(client.clone(), i).await;
                phase.latencies.push(one.elapsed());
                match outcome {
                    Ok(done) => {
                        phase.events += done.events;
                        phase.refused += done.refused;
                        if phase.first_problem.is_none() {
                            phase.first_problem = done.first_refusal;
                        }
                        if done.receipt.is_some() {
                            phase.receipt = done.receipt;
                        }
                    }
                    Err(problem) => {
                        phase.failed_calls += 1;
                        phase.first_problem.get_or_insert(problem);
                    }
                }
            }
            phase
        }));
    }
    let mut total = Phase::default();
    for task in tasks {
        match task.await {
            Ok(phase) => {
                total.events += phase.events;
                total.refused += phase.refused;
                total.failed_calls += phase.failed_calls;
                total.exhausted |= phase.exhausted;
                if total.first_problem.is_none() {
                    total.first_problem = phase.first_problem;
                }
                if phase.receipt.is_some() {
                    total.receipt = phase.receipt;
                }
                total.latencies.extend(phase.latencies);
            }
            Err(e) => {
                total.failed_calls += 1;
                total.first_problem.get_or_insert(format!("client task failed: {e}"));
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}

async fn connect(url: &str) -> Result<LedgerClient<Channel>> {
    let channel = Endpoint::from_shared(url.to_string())?.connect().await?;
    Ok(LedgerClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024))
}

// ---------------------------------------------------------------------------
// The node process

// ---------------------------------------------------------------------------
// CPU and I/O accounting from /proc

/// CPU time of the node's threads by name, runqueue wait, bytes written,
/// this process's CPU time and the whole machine's, at the start of a phase.
struct Usage {
    http: Option<String>,
    metrics: Option<BTreeMap<String, f64>>,
    pid: u32,
    machine: Duration,
    node_total: Duration,
    node: BTreeMap<u32, ThreadTimes>,
    client: Duration,
    client_total: Duration,
    written: u64,
}

/// Group commits during a phase, from the node's /metrics: how many
/// `LogStore::append` calls, the events they held, and the seconds the
/// writer spent inside them (sled batch, checkpoint signing and flush).
struct Groups {
    count: f64,
    events: f64,
    append_seconds: f64,
}

struct UsageDelta {
    groups: Option<Groups>,
    /// CPU time of every other process on the machine (other developers'
    /// builds, say): the noise in this phase.
    other_cpu: Duration,
    node_cpu: Duration,
    node_wait: Duration,
    by_group: BTreeMap<String, Duration>,
    /// The writer thread's time on a core and waiting for one.
    writer_run: Duration,
    writer_wait: Duration,
    client_cpu: Duration,
    written_bytes: u64,
}

impl Usage {
    fn start(node: &NodeProcess) -> Usage {
        let pid = node.pid();
        Usage {
            http: node.http.clone(),
            metrics: node.http.as_deref().and_then(scrape_metrics),
            pid,
            machine: machine_busy(),
            node_total: process_cpu(pid),
            node: threads(pid),
            client: own_cpu(),
            client_total: process_cpu(std::process::id()),
            written: io_field(pid, "write_bytes"),
        }
    }

    fn finish(self) -> UsageDelta {
        let now = threads(self.pid);
        let node_total = process_cpu(self.pid).saturating_sub(self.node_total);
        let client_total = process_cpu(std::process::id()).saturating_sub(self.client_total);
        let machine = machine_busy().saturating_sub(self.machine);
        let groups = match (&self.metrics, self.http.as_deref().and_then(scrape_metrics)) {
            (Some(before), Some(after)) => {
                let delta =
                    |name: &str| after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0);
                Some(Groups {
                    count: delta("qtrace_append_batch_size_count"),
                    events: delta("qtrace_append_batch_size_sum"),
                    append_seconds: delta("qtrace_append_flush_seconds_sum"),
                })
            }
            _ => None,
        };
        let mut delta = UsageDelta {
            groups,
            other_cpu: machine.saturating_sub(node_total).saturating_sub(client_total),
            node_cpu: Duration::ZERO,
            node_wait: Duration::ZERO,
            by_group: BTreeMap::new(),
            writer_run: Duration::ZERO,
            writer_wait: Duration::ZERO,
            client_cpu: own_cpu().saturating_sub(self.client),
            written_bytes: io_field(self.pid, "write_bytes").saturating_sub(self.written),
        };
        for (tid, times) in now {
            let (run0, wait0) = self.node.get(&tid).map_or((Duration::ZERO, Duration::ZERO), |t| (t.run, t.wait));
            let run = times.run.saturating_sub(run0);
            let wait = times.wait.saturating_sub(wait0);
            delta.node_cpu += run;
            delta.node_wait += wait;
            if times.name == "qtrace-writer" {
                delta.writer_run += run;
                delta.writer_wait += wait;
            }
            *delta.by_group.entry(group_of(&times.name)).or_default() += run;
        }
        // Threads that ended during the phase (AppendBatch verifies on
        // scoped threads that live for one batch) are gone from /proc/PID/task
        // but their time is in the process total, which ticks at 10 ms.
        let vanished = node_total.saturating_sub(delta.node_cpu);
        if vanished > Duration::from_millis(20) {
            delta.by_group.insert("threads that ended (scoped signature verification)".into(), vanished);
            delta.node_cpu = node_total;
        }
        delta
    }
}

/// Unlabelled samples of the node's Prometheus text at /metrics, over a
/// plain HTTP/1.1 request; `None` when the node does not serve it.
fn scrape_metrics(addr: &str) -> Option<BTreeMap<String, f64>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(name, _)| !name.contains('{'))
        .filter_map(|(name, value)| Some((name.to_string(), value.trim().parse::<f64>().ok()?)))
        .collect();
    Some(samples)
}

/// A JSON key for a thread group: its name before any parenthesis, in
/// lower case with underscores ("writer thread (…)" gives "writer_thread").
fn slug(label: &str) -> String {
    let head = label.split(" (").next().unwrap_or(label).trim();
    head.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// Thread names grouped: tokio's workers and blocking threads share one
/// name, and threads std::thread::scope spawns inherit their parent's.
fn group_of(name: &str) -> String {
    if name.starts_with("tokio") {
        "tokio threads (gRPC, verify, receipts)".to_string()
    } else if name == "qtrace-writer" {
        "writer thread (sequence, authorise, sled, flush)".to_string()
    } else if name.starts_with("sled") {
        "sled background threads".to_string()
    } else {
        format!("thread {name}")
    }
}

// ---------------------------------------------------------------------------
// Limits measured in this process

/// Single-core `verify_strict` and 64-signature batch verification over
/// real workload messages signed by 16 keys.
fn measure_verify(n: usize) -> (f64, f64) {
    let keys: Vec<SigningKey> = (0..16u8).map(|i| SigningKey::from_bytes(&[i.wrapping_add(100); 32])).collect();
    let millis = now_millis();
    let mut messages = Vec::with_capacity(n);
    let mut signatures = Vec::with_capacity(n);
    let mut verifying = Vec::with_capacity(n);
    for i in 0..n {
        let key = &keys[i % keys.len()];
        let message = signing::signed_message(&event_at(i as u64, millis).encode_to_vec());
        signatures.push(key.sign(&message));
        verifying.push(key.verifying_key());
        messages.push(message);
    }
    let started = Instant::now();
    let mut ok = 0usize;
    for ((message, signature), key) in messages.iter().zip(&signatures).zip(&verifying) {
        ok += usize::from(std::hint::black_box(key).verify_strict(message, signature).is_ok());
    }
    let single = n as f64 / started.elapsed().as_secs_f64();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let started = Instant::now();
    let mut verified = 0usize;
    for ((m, s), k) in
        refs.chunks(VERIFY_BATCH).zip(signatures.chunks(VERIFY_BATCH)).zip(verifying.chunks(VERIFY_BATCH))
    {
        if ed25519_dalek::verify_batch(m, s, k).is_ok() {
            verified += m.len();
        }
    }
    let batch = verified as f64 / started.elapsed().as_secs_f64();
    if ok != n || verified != n {
        eprintln!("warning: {} of {n} valid signatures failed to verify", n - ok.min(verified));
    }
    (single, batch)
}

// ---------------------------------------------------------------------------
// Workload: the same shapes as crates/store/benches/store.rs

fn sign_event(signers: &Signers, i: u64, millis: i64) -> pb::SignedEvent {
    let key = if i % 10 >= 8 { &signers.lab } else { &signers.factory };
    sign(key, &event_at(i, millis))
}

/// Registers the factory (manufacturer) and the lab (testing lab accredited
/// for both GTINs) and one key each, signed by the development authority.
async fn register(
    client: &mut LedgerClient<Channel>,
    root: &SecretKey,
    factory: &SecretKey,
    lab: &SecretKey,
) -> Result<()> {
    let millis = now_millis();
    let at = |subject: &str, body: Body| pb::Event {
        event_time: Some(pb::EventTime { unix_millis: millis, offset_minutes: 480 }),
        subject: Some(pb::Subject { kind: Some(Kind::OrganisationUscc(subject.into())) }),
        body: Some(body),
        ..Default::default()
    };
    let org = |uscc: &str, name: &str, role: pb::Role, prefixes: &[&str]| pb::Event {
        event_time: Some(pb::EventTime { unix_millis: millis, offset_minutes: 480 }),
        ..testkit::register_org(uscc, name, &[role], prefixes)
    };
    let key = |uscc: &str, key: &SecretKey, person: &str| {
        at(
            uscc,
            Body::KeyRegistered(pb::KeyRegistered {
                uscc: uscc.into(),
                public_key: key.public_key().to_bytes().to_vec(),
                person: person.into(),
                title: "质量负责人".into(),
                admin: false,
            }),
        )
    };
    let events = [
        org(FACTORY, "Example Dairy Co. (示例乳业)", pb::Role::Manufacturer, &[]),
        org(LAB, "Shanghai Food Testing Lab (上海食品检验所)", pb::Role::TestingLab, &["0952", "0693"]),
        key(FACTORY, factory, "张伟"),
        key(LAB, lab, "李娜"),
    ];
    for event in events {
        client.append(pb::AppendRequest { event: Some(sign(root, &event)) }).await?;
    }
    Ok(())
}

fn scale_from_env_and_args() -> Result<Scale> {
    Ok(if common::small_scale()? { SMALL } else { FULL })
}

// ---------------------------------------------------------------------------
// Percentiles and the report (the same shape as the store benchmark's)

struct Percentiles {
    p50: Duration,
    p99: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles; an empty sample gives zeros.
    fn of(samples: &[Duration]) -> Percentiles {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
            sorted.get(rank - 1).copied().unwrap_or_default()
        };
        Percentiles { p50: at(0.50), p99: at(0.99) }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
