//! What the sled store and the Merkle code cost, next to machine limits
//! measured in the same run.
//!
//! `cargo bench -p qtrace-store --bench store` runs the full version, the
//! one whose figures we quote; `QTRACE_BENCH_SCALE=small` (or the argument
//! `small`) runs a smoke version in a few seconds. The program prints one
//! table and ends with a single line `BENCH-SUMMARY {json}`. It never asserts
//! a time: a slow machine gives smaller numbers, and the ratios against the
//! limits measured here say whether the code or the machine is slow.
//! `QTRACE_BENCH_APPEND_BATCHES=64,256,1024` replaces the batch sizes of the
//! durable append runs, to explore group-commit sizes, and
//! `QTRACE_BENCH_BUILD_ENTRIES=N` the size of the big store (0 skips it).
//!
//! Measured, in order:
//!
//! 1. Limits: Ed25519 `verify_strict` and 64-signature batch verification
//!    (one thread), raw sled inserts of 512-byte values (unflushed, flushing
//!    every insert, and 1,024-insert batches flushed once), random sled
//!    reads, SHA-256 on 1 KiB inputs and on Merkle node inputs.
//! 2. `LogStore::append` with `durable = true` (one flush per call) for
//!    batches of 1, 64 and 1,024 realistic entries: signed production,
//!    shipment and inspection events of a few hundred bytes, with the index
//!    keys `event::index_keys` gives them.
//!    The follower runs meanwhile, as in the node (its indexes go to their
//!    own sled database, which these flushes do not write); batches of 64
//!    run once more with it paused: the log part alone, which issue 14's
//!    target is about. Beside the rate: the rate ÷ sled's raw
//!    apply_batch+flush key rate (the target: ≥ 0.45 for the log part) and
//!    the sled keys the appends write per entry (entry, Merkle tiles,
//!    checkpoint; the follower's index keys go to its own database).
//! 3. A store of 1,000,000 entries (20,000 at small scale) with a 64 MiB
//!    cache, built in batches of 10,000 without flushing, then flushed once:
//!    build rate, bytes on disk per entry, resident memory growth, and from
//!    it inclusion and consistency proofs (random leaves and sizes):
//!    generation rate and latency, verification rate.

use std::error::Error;
use std::hint::black_box;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey};
use prost::Message;
use qtrace_ledger::entry::ENTRY_HEADER_LEN;
use qtrace_ledger::event;
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::merkle::{self, Hash};
use qtrace_ledger::note;
use qtrace_ledger::signing::{self, SecretKey};
use qtrace_store::SledStore;
use sha2::{Digest, Sha256};

// The node benchmarks' table, summary and allocator (mimalloc, so sled is
// measured as the node runs it); this benchmark uses part of it.
#[allow(dead_code)]
/// The node's allocator, so limits measured here (sled, ed25519) are
/// measured as the node runs them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::workload::event_at;
use common::{Ratio, Report, cores};
use qtrace_ledger::benchkit as common;

#[path = "shared/entries.rs"]
mod entries;
use entries::{BASE_MILLIS, Signed, chain};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// How much work each measurement does.
#[derive(Debug, Clone, Copy)]
struct Scale {
    name: &'static str,
    /// Signatures for the verify limits.
    signatures: usize,
    /// Raw sled inserts without a flush.
    sled_unflushed: usize,
    /// Raw sled inserts with a flush after each.
    sled_flushed: usize,
    /// Raw sled batches of [`SLED_BATCH`] inserts, each flushed.
    sled_batches: usize,
    /// 1 KiB SHA-256 inputs.
    sha_inputs: usize,
    /// Merkle node hashes (65-byte inputs).
    node_hashes: usize,
    /// (entries per `append` call, calls) for the durable append runs.
    appends: [(usize, usize); 3],
    /// Entries in the big store.
    build_entries: u64,
    /// Inclusion proofs, and consistency proofs, from the big store.
    proofs: usize,
}

const FULL: Scale = Scale {
    name: "full",
    signatures: 20_000,
    sled_unflushed: 200_000,
    sled_flushed: 5_000,
    sled_batches: 100,
    sha_inputs: 1_000_000,
    node_hashes: 2_000_000,
    appends: [(1, 3_000), (64, 300), (1_024, 50)],
    build_entries: 1_000_000,
    proofs: 10_000,
};

const SMALL: Scale = Scale {
    name: "small",
    signatures: 2_000,
    sled_unflushed: 20_000,
    sled_flushed: 300,
    sled_batches: 5,
    sha_inputs: 100_000,
    node_hashes: 200_000,
    appends: [(1, 200), (64, 20), (1_024, 4)],
    build_entries: 20_000,
    proofs: 2_000,
};

/// Entries per `append` call while building the big store.
const BUILD_BATCH: usize = 10_000;
/// sled's page cache for the big store: the node's `--cache-mb 64`.
const BIG_STORE_CACHE: u64 = 64 << 20;
/// Inserts per raw sled batch.
const SLED_BATCH: usize = 1_024;
/// Size of the raw sled values.
const SLED_VALUE: usize = 512;
/// Signatures per batch verification.
const VERIFY_BATCH: usize = 64;
const ORIGIN: &str = "bench.qtrace.local/store";

/// Reference values from shared/CRATES.md (same machine kind), printed next
/// to this run's limits so a noisy run shows up as such.
mod reference {
    pub const VERIFY: f64 = 28_000.0;
    pub const BATCH_VERIFY: f64 = 60_000.0;
    pub const SLED_UNFLUSHED: f64 = 143_000.0;
    pub const SLED_FLUSH_EACH: f64 = 6_000.0;
    pub const SHA_MB: f64 = 1_600.0;
}

fn main() -> Result<()> {
    let scale = scale_from_env_and_args()?;
    let started = Instant::now();
    println!("qtrace store benchmark, scale {} ({} cores)", scale.name, cores());
    let mut report = Report::new("store", scale.name);

    let noise = Noise::start();
    let limits = measure_limits(&scale)?;
    limits.report(&mut report);
    report_noise(&mut report, "limits", &noise);

    let keys = Keys::new();
    let workload = workload_profile(&keys)?;
    report.info(
        "event_bytes_avg",
        "event bytes, average (production 5 : shipment 3 : inspection 2)",
        workload.event_bytes,
        "B",
    );
    report.info("index_keys_avg", "index keys per entry incl. signer key", workload.index_keys, "keys");

    for (batch, calls) in append_runs(&scale)? {
        measure_appends(&mut report, &limits, &keys, batch, calls, Follower::Running)?;
    }
    // Issue 14's target is on the log part alone: the same run of batches
    // of 64 with the follower paused.
    let calls = scale.appends.iter().find(|(batch, _)| *batch == 64).map_or(scale.appends[1].1, |(_, calls)| *calls);
    measure_appends(&mut report, &limits, &keys, 64, calls, Follower::Paused)?;
    let build_entries = match std::env::var("QTRACE_BENCH_BUILD_ENTRIES") {
        Ok(text) => text.trim().parse::<u64>().map_err(|e| format!("QTRACE_BENCH_BUILD_ENTRIES: {e}"))?,
        Err(_) => scale.build_entries,
    };
    if build_entries >= 2 {
        measure_big_store(&mut report, &limits, &keys, &scale, build_entries, workload.event_bytes)?;
    }

    let seconds = started.elapsed().as_secs_f64();
    report.print();
    println!("total time: {seconds:.1} s");
    println!("BENCH-SUMMARY {}", report.summary(seconds, true));
    Ok(())
}

fn scale_from_env_and_args() -> Result<Scale> {
    Ok(if common::small_scale()? { SMALL } else { FULL })
}

/// The durable append runs: the scale's, or the batch sizes listed in
/// `QTRACE_BENCH_APPEND_BATCHES` (e.g. `64,256,1024`) to explore group
/// sizes, each run for about as many entries as the scale's largest.
fn append_runs(scale: &Scale) -> Result<Vec<(usize, usize)>> {
    let Ok(list) = std::env::var("QTRACE_BENCH_APPEND_BATCHES") else { return Ok(scale.appends.to_vec()) };
    let (largest, calls) = scale.appends[scale.appends.len() - 1];
    list.split(',')
        .map(|b| {
            let batch: usize = b.trim().parse().map_err(|e| format!("QTRACE_BENCH_APPEND_BATCHES: {b:?}: {e}"))?;
            if batch == 0 {
                return Err("QTRACE_BENCH_APPEND_BATCHES: a batch holds at least one entry".into());
            }
            Ok((batch, (largest * calls / batch).clamp(3, scale.appends[0].1)))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Limits

struct Limits {
    verify_per_s: f64,
    batch_verify_sigs_per_s: f64,
    sled_unflushed_per_s: f64,
    sled_flush_each_per_s: f64,
    sled_flush_p50: Duration,
    sled_batch_inserts_per_s: f64,
    sled_get_per_s: f64,
    sha_mb_per_s: f64,
    node_hashes_per_s: f64,
}

impl Limits {
    fn report(&self, report: &mut Report) {
        report.section("machine limits (this run; ratio = this run ÷ shared/CRATES.md reference)");
        report.limit(
            "ed25519_verify_per_s",
            "ed25519 verify_strict, 1 thread",
            self.verify_per_s,
            "sig/s",
            vec![Ratio::reference(self.verify_per_s, reference::VERIFY)],
        );
        report.limit(
            "ed25519_batch64_sigs_per_s",
            "ed25519 verify_batch (64), 1 thread",
            self.batch_verify_sigs_per_s,
            "sig/s",
            vec![Ratio::reference(self.batch_verify_sigs_per_s, reference::BATCH_VERIFY)],
        );
        report.limit(
            "sled_insert_unflushed_per_s",
            "sled insert 512 B, unflushed",
            self.sled_unflushed_per_s,
            "ins/s",
            vec![Ratio::reference(self.sled_unflushed_per_s, reference::SLED_UNFLUSHED)],
        );
        report.limit(
            "sled_insert_flush_each_per_s",
            "sled insert 512 B + flush each",
            self.sled_flush_each_per_s,
            "ins/s",
            vec![Ratio::reference(self.sled_flush_each_per_s, reference::SLED_FLUSH_EACH)],
        );
        report.limit(
            "sled_flush_p50_us",
            "sled insert+flush latency p50",
            micros(self.sled_flush_p50),
            "µs",
            Vec::new(),
        );
        report.limit(
            "sled_batch1024_flush_inserts_per_s",
            "sled apply_batch(1,024 × 512 B) + flush",
            self.sled_batch_inserts_per_s,
            "ins/s",
            Vec::new(),
        );
        report.limit(
            "sled_get_per_s",
            "sled get, random key of the unflushed tree",
            self.sled_get_per_s,
            "get/s",
            Vec::new(),
        );
        report.limit(
            "sha256_1k_mb_per_s",
            "SHA-256 on 1 KiB inputs",
            self.sha_mb_per_s,
            "MB/s",
            vec![Ratio::reference(self.sha_mb_per_s, reference::SHA_MB)],
        );
        report.limit(
            "node_hash_per_s",
            "SHA-256 Merkle node hash (65 B)",
            self.node_hashes_per_s,
            "hash/s",
            Vec::new(),
        );
    }
}

fn measure_limits(scale: &Scale) -> Result<Limits> {
    let (verify_per_s, batch_verify_sigs_per_s) = measure_verify(scale.signatures)?;
    let sled = measure_sled(scale)?;
    let (sha_mb_per_s, node_hashes_per_s) = measure_sha(scale);
    Ok(Limits {
        verify_per_s,
        batch_verify_sigs_per_s,
        sled_unflushed_per_s: sled.unflushed_per_s,
        sled_flush_each_per_s: sled.flush_each_per_s,
        sled_flush_p50: sled.flush_p50,
        sled_batch_inserts_per_s: sled.batch_inserts_per_s,
        sled_get_per_s: sled.get_per_s,
        sha_mb_per_s,
        node_hashes_per_s,
    })
}

/// Single-thread `verify_strict` and 64-signature batch verification over
/// real event messages signed by 16 keys.
fn measure_verify(n: usize) -> Result<(f64, f64)> {
    let signing: Vec<SigningKey> = (0..16u8).map(|i| SigningKey::from_bytes(&[i.wrapping_add(100); 32])).collect();
    let mut messages = Vec::with_capacity(n);
    let mut signatures = Vec::with_capacity(n);
    let mut verifying = Vec::with_capacity(n);
    for i in 0..n {
        let key = &signing[i % signing.len()];
        let message = signing::signed_message(&event_at(i as u64, BASE_MILLIS).encode_to_vec());
        signatures.push(key.sign(&message));
        verifying.push(key.verifying_key());
        messages.push(message);
    }
    let started = Instant::now();
    let mut ok = 0usize;
    for ((message, signature), key) in messages.iter().zip(&signatures).zip(&verifying) {
        ok += usize::from(black_box(key).verify_strict(black_box(message), signature).is_ok());
    }
    let single = n as f64 / started.elapsed().as_secs_f64();
    check(ok == n, "verify_strict refused a valid signature")?;

    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let started = Instant::now();
    let mut batches_ok = 0usize;
    let mut verified = 0usize;
    for ((m, s), k) in
        refs.chunks(VERIFY_BATCH).zip(signatures.chunks(VERIFY_BATCH)).zip(verifying.chunks(VERIFY_BATCH))
    {
        batches_ok += usize::from(ed25519_dalek::verify_batch(black_box(m), s, k).is_ok());
        verified += m.len();
    }
    let batch = verified as f64 / started.elapsed().as_secs_f64();
    check(batches_ok == n.div_ceil(VERIFY_BATCH), "verify_batch refused valid signatures")?;
    Ok((single, batch))
}

struct SledLimits {
    unflushed_per_s: f64,
    flush_each_per_s: f64,
    flush_p50: Duration,
    batch_inserts_per_s: f64,
    get_per_s: f64,
}

/// Raw sled, configured as `SledStore::open` configures it, on a temporary
/// directory of the same disk the stores below use.
fn measure_sled(scale: &Scale) -> Result<SledLimits> {
    let value = vec![0x5au8; SLED_VALUE];
    let open = |dir: &Path| sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open();

    let dir = tempfile::tempdir()?;
    let db = open(&dir.path().join("raw"))?;
    let tree = db.open_tree("raw")?;
    let n = scale.sled_unflushed as u64;
    let started = Instant::now();
    for i in 0..n {
        tree.insert(i.to_be_bytes(), value.as_slice())?;
    }
    let unflushed_per_s = n as f64 / started.elapsed().as_secs_f64();
    db.flush()?;
    let mut rng = SplitMix64(1);
    let started = Instant::now();
    let mut found = 0usize;
    for _ in 0..n {
        found += usize::from(black_box(tree.get(rng.below(n).to_be_bytes())?).is_some());
    }
    let get_per_s = n as f64 / started.elapsed().as_secs_f64();
    check(found == n as usize, "sled lost a key")?;
    drop(tree);
    drop(db);

    let dir = tempfile::tempdir()?;
    let db = open(&dir.path().join("raw"))?;
    let tree = db.open_tree("raw")?;
    let mut latencies = Vec::with_capacity(scale.sled_flushed);
    let started = Instant::now();
    for i in 0..scale.sled_flushed as u64 {
        let one = Instant::now();
        tree.insert(i.to_be_bytes(), value.as_slice())?;
        db.flush()?;
        latencies.push(one.elapsed());
    }
    let flush_each_per_s = scale.sled_flushed as f64 / started.elapsed().as_secs_f64();
    let flush_p50 = Percentiles::of(&mut latencies).p50;
    drop(tree);
    drop(db);

    let dir = tempfile::tempdir()?;
    let db = open(&dir.path().join("raw"))?;
    let tree = db.open_tree("raw")?;
    let started = Instant::now();
    let mut key = 0u64;
    for _ in 0..scale.sled_batches {
        let mut batch = sled::Batch::default();
        for _ in 0..SLED_BATCH {
            batch.insert(&key.to_be_bytes(), value.as_slice());
            key += 1;
        }
        tree.apply_batch(batch)?;
        db.flush()?;
    }
    let batch_inserts_per_s = key as f64 / started.elapsed().as_secs_f64();
    Ok(SledLimits { unflushed_per_s, flush_each_per_s, flush_p50, batch_inserts_per_s, get_per_s })
}

/// SHA-256 throughput on 1 KiB inputs (MB/s) and Merkle node hashes per
/// second (65-byte inputs, each depending on the previous, as up a proof).
fn measure_sha(scale: &Scale) -> (f64, f64) {
    let input = vec![0xa5u8; 1024];
    let started = Instant::now();
    let mut acc = 0u8;
    for _ in 0..scale.sha_inputs {
        acc ^= Sha256::digest(black_box(&input))[0];
    }
    let mb_per_s = (scale.sha_inputs * input.len()) as f64 / started.elapsed().as_secs_f64() / 1e6;
    black_box(acc);
    let sibling = [7u8; 32];
    let mut hash = [1u8; 32];
    let started = Instant::now();
    for _ in 0..scale.node_hashes {
        hash = merkle::node_hash(&hash, black_box(&sibling));
    }
    black_box(hash);
    (mb_per_s, scale.node_hashes as f64 / started.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------
// Workload: realistic signed events

/// The signing keys of the workload: the factory signs productions and
/// shipments, the lab inspections.
struct Keys {
    factory: SecretKey,
    lab: SecretKey,
    checkpoint: note::Signer,
}

impl Keys {
    fn new() -> Keys {
        let checkpoint = note::Signer::new(ORIGIN, SigningKey::from_bytes(&[42; 32]))
            .unwrap_or_else(|e| panic!("{ORIGIN:?} is a valid key name: {e}"));
        Keys { factory: SecretKey::from_seed(&[13; 32]), lab: SecretKey::from_seed(&[11; 32]), checkpoint }
    }

    /// Signs a checkpoint note the way the node does, once per append.
    fn sign_checkpoint(&self, size: u64, root: &Hash) -> Result<String, note::NoteError> {
        let checkpoint = note::Checkpoint { origin: ORIGIN.into(), size, root: *root, extensions: Vec::new() };
        note::sign_checkpoint(&checkpoint, &self.checkpoint)
    }
}

/// Signs events `range` on every core (signing is the client's cost, not
/// the store's, so this is never timed).
fn sign_range(keys: &Keys, range: Range<u64>) -> Vec<Signed> {
    entries::sign_range(&keys.factory, &keys.lab, range)
}

struct WorkloadProfile {
    event_bytes: f64,
    index_keys: f64,
}

/// Checks that one cycle of the workload passes the ledger's own decoder
/// (so the events are ones a node accepts) and measures its shape.
fn workload_profile(keys: &Keys) -> Result<WorkloadProfile> {
    let cycle = sign_range(keys, 0..10);
    for (i, s) in cycle.iter().enumerate() {
        event::decode_event(&s.event).map_err(|e| format!("workload event {i} is not valid: {e}"))?;
    }
    let n = cycle.len() as f64;
    Ok(WorkloadProfile {
        event_bytes: cycle.iter().map(|s| s.event.len()).sum::<usize>() as f64 / n,
        index_keys: cycle.iter().map(|s| s.index_keys.len() + 1).sum::<usize>() as f64 / n,
    })
}

/// Tile keys one append of entries `from..to` writes: per tile level, each
/// tile holding one of the nodes of tree level 8·L the append completes
/// (the filled tiles and the partial one, once each).
fn tile_writes(from: u64, to: u64) -> u64 {
    (0..8u32)
        .map(|level| {
            let (lo, hi) = (from >> (8 * level), to >> (8 * level));
            if hi > lo { (hi - 1) / 256 - lo / 256 + 1 } else { 0 }
        })
        .sum()
}

/// Tile keys written by appends of `entries` in calls of `batch`.
fn tile_writes_in_calls(entries: u64, batch: u64) -> u64 {
    (0..entries.div_ceil(batch)).map(|call| tile_writes(call * batch, ((call + 1) * batch).min(entries))).sum()
}

/// Sled keys an append writes per entry into the store database: the
/// entry, the Merkle tiles it touches (`tiles` over `entries`) and one
/// checkpoint per call of `batch`. The indexes are the follower's, written
/// in its own batches into its own database, and not counted here.
fn log_keys_per_entry(entries: u64, tiles: u64, batch: u64) -> f64 {
    1.0 + tiles as f64 / entries as f64 + 1.0 / batch as f64
}

// ---------------------------------------------------------------------------
// Store appends, durable

/// Whether the index follower runs during an append run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follower {
    /// As in the node: the follower indexes while appends go on (its own
    /// sled database, so the appends' flushes do not write its pages).
    Running,
    /// The log part alone: entries, tiles and checkpoint.
    Paused,
}

fn measure_appends(
    report: &mut Report,
    limits: &Limits,
    keys: &Keys,
    batch: usize,
    calls: usize,
    follower: Follower,
) -> Result<()> {
    let n = (batch * calls) as u64;
    let log_id = LogId([0x51; 32]);
    let mut prev = EntryHash(log_id.0);
    // The log first holds enough entries for its compression dictionary, as
    // a node's log does after its first few thousand records (untimed).
    let warm = qtrace_store::DICTIONARY_TRAIN_AT;
    let signed = sign_range(keys, 0..warm + n);
    let mut entries = chain(signed, 0, &mut prev);
    let timed = entries.split_off(warm as usize);
    let noise = Noise::start();
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(&dir.path().join("store"))?;
    let log = store.log(log_id)?;
    log.append(&entries, true, |size, root| keys.sign_checkpoint(size, root))?;
    check(log.train_dictionary()?, "no compression dictionary was trained")?;
    log.wait_indexed(warm, Duration::from_secs(600))?;
    let entries = timed;
    if follower == Follower::Paused {
        log.set_limits(qtrace_store::Limits { max_lag: u64::MAX, ..log.limits() });
        log.set_follower_paused(true);
    }
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for part in entries.chunks(batch) {
        let one = Instant::now();
        log.append(part, true, |size, root| keys.sign_checkpoint(size, root))?;
        latencies.push(one.elapsed());
    }
    let elapsed = started.elapsed().as_secs_f64();
    check(log.head().size == warm + n, "the store lost entries")?;
    let per_s = n as f64 / elapsed;
    let tiles = tile_writes_in_calls(n, batch as u64);
    let keys_per_entry = log_keys_per_entry(n, tiles, batch as u64);
    let lat = Percentiles::of(&mut latencies);
    let (key, title) = match follower {
        Follower::Running => (format!("append_b{batch}"), "index follower running"),
        Follower::Paused => (format!("append_b{batch}_log_only"), "log part only, index follower paused"),
    };
    report
        .section(&format!("LogStore::append, durable, {batch} entries per call ({calls} calls, {n} entries; {title})"));
    report.figure(
        &format!("{key}_entries_per_s"),
        "entries/s",
        per_s,
        "entry/s",
        vec![
            Ratio::new(per_s / limits.sled_flush_each_per_s, "÷ sled insert+flush each /s"),
            Ratio::new(per_s / limits.verify_per_s, "÷ ed25519 verify_strict/s (1 thread)"),
            Ratio::new(
                per_s / limits.sled_batch_inserts_per_s,
                "÷ sled apply_batch+flush keys/s (issue 14 target for the log part: ≥ 0.45)",
            ),
        ],
    );
    report.figure(
        &format!("{key}_sled_keys_per_s"),
        "sled keys written/s by the appends (the log part)",
        per_s * keys_per_entry,
        "key/s",
        vec![Ratio::new(per_s * keys_per_entry / limits.sled_batch_inserts_per_s, "÷ sled apply_batch+flush ins/s")],
    );
    report.figure(
        &format!("{key}_p50_us"),
        "append call latency p50",
        micros(lat.p50),
        "µs",
        vec![Ratio::new(lat.p50.as_secs_f64() / limits.sled_flush_p50.as_secs_f64(), "÷ sled insert+flush p50")],
    );
    report.figure(
        &format!("{key}_p99_us"),
        "append call latency p99",
        micros(lat.p99),
        "µs",
        vec![Ratio::new(lat.p99.as_secs_f64() / limits.sled_flush_p50.as_secs_f64(), "÷ sled insert+flush p50")],
    );
    report.info(
        &format!("{key}_log_part_keys_per_entry"),
        "sled keys per entry written by the appends (entry, tiles, checkpoint)",
        keys_per_entry,
        "keys",
    );
    report_noise(report, &key, &noise);
    Ok(())
}

// ---------------------------------------------------------------------------
// The big store: build, size, proofs

fn measure_big_store(
    report: &mut Report,
    limits: &Limits,
    keys: &Keys,
    scale: &Scale,
    n: u64,
    event_bytes: f64,
) -> Result<()> {
    let noise = Noise::start();
    let log_id = LogId([0x52; 32]);
    let dir = tempfile::tempdir()?;
    let rss_before = common::procfs::status_bytes(std::process::id(), "VmRSS");
    let store = SledStore::open_with_cache(&dir.path().join("store"), BIG_STORE_CACHE)?;
    let log = store.log(log_id)?;
    // The log part is measured: no push-back from the index follower.
    log.set_limits(qtrace_store::Limits { max_lag: u64::MAX, ..log.limits() });
    let mut prev = EntryHash(log_id.0);
    let mut leaves: Vec<Hash> = Vec::with_capacity(n as usize);
    let mut appending = Duration::ZERO;
    let mut chunk_rates = Vec::new();
    let started = Instant::now();
    let mut start = 0u64;
    while start < n {
        let end = (start + BUILD_BATCH as u64).min(n);
        let signed = sign_range(keys, start..end);
        let entries = chain(signed, start, &mut prev);
        leaves.extend(entries.iter().map(|e| e.hash.0));
        let one = Instant::now();
        log.append(&entries, false, |size, root| keys.sign_checkpoint(size, root))?;
        let took = one.elapsed();
        appending += took;
        chunk_rates.push((end - start) as f64 / took.as_secs_f64());
        start = end;
    }
    let one = Instant::now();
    store.flush()?;
    let flushing = one.elapsed();
    let wall = started.elapsed();
    check(log.head().size == n, "the store lost entries")?;
    let build_per_s = n as f64 / (appending + flushing).as_secs_f64();
    let keys_per_entry = log_keys_per_entry(n, tile_writes_in_calls(n, BUILD_BATCH as u64), BUILD_BATCH as u64);
    let rss_after = common::procfs::status_bytes(std::process::id(), "VmRSS");
    let tile_keys = tile_writes(0, n);
    let disk = store.size_on_disk()? as f64;
    let entry_bytes = ENTRY_HEADER_LEN as f64 + event_bytes;

    report.section(&format!(
        "store of {n} entries: built in batches of {BUILD_BATCH}, durable=false, one final flush \
         (wall {:.1} s incl. signing)",
        wall.as_secs_f64()
    ));
    report.figure(
        "build_entries_per_s",
        "build rate (append + final flush time)",
        build_per_s,
        "entry/s",
        vec![Ratio::new(build_per_s / limits.sled_unflushed_per_s, "÷ sled insert unflushed/s")],
    );
    // How the rate changes as the tree grows: the first and the last tenth.
    let tenth = chunk_rates.len().div_ceil(10);
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    let first = mean(&chunk_rates[..tenth]);
    let last = mean(&chunk_rates[chunk_rates.len() - tenth..]);
    report.figure(
        "build_first_tenth_entries_per_s",
        "  append rate over the first tenth",
        first,
        "entry/s",
        vec![Ratio::new(first / limits.sled_unflushed_per_s, "÷ sled insert unflushed/s")],
    );
    report.figure(
        "build_last_tenth_entries_per_s",
        "  append rate over the last tenth",
        last,
        "entry/s",
        vec![Ratio::new(last / first, "÷ first tenth")],
    );
    report.figure(
        "build_sled_keys_per_s",
        "sled keys written/s by the appends while building (the log part)",
        build_per_s * keys_per_entry,
        "key/s",
        vec![Ratio::new(build_per_s * keys_per_entry / limits.sled_unflushed_per_s, "÷ sled insert unflushed/s")],
    );
    report.figure(
        "build_final_flush_ms",
        "final flush",
        flushing.as_secs_f64() * 1e3,
        "ms",
        vec![Ratio::new(flushing.as_secs_f64() / (appending + flushing).as_secs_f64(), "of build time")],
    );
    report.figure(
        "disk_bytes_per_entry",
        "bytes on disk per entry (size_on_disk ÷ n)",
        disk / n as f64,
        "B",
        vec![Ratio::new(
            disk / n as f64 / entry_bytes,
            &format!("÷ entry bytes ({entry_bytes:.0} B); issue 14 target ≤ 2.0"),
        )],
    );
    report.info("merkle_tile_keys", "Merkle tile keys in the store (T)", tile_keys as f64, "keys");
    report.figure(
        "rss_growth_bytes_per_entry",
        "resident memory growth over the build ÷ n (64 MiB cache; includes the benchmark's 32 B leaf per entry)",
        rss_after.saturating_sub(rss_before) as f64 / n as f64,
        "B",
        vec![Ratio::new(rss_after as f64 / (1u64 << 20) as f64, "MiB resident after the build (issue 14: < 400)")],
    );
    report_noise(report, "build", &noise);
    let noise = Noise::start();

    let size = n;
    let root = log.head().root;
    let mut rng = SplitMix64(2);
    let picks: Vec<u64> = (0..scale.proofs).map(|_| rng.below(size)).collect();
    let mut latencies = Vec::with_capacity(picks.len());
    let mut proofs = Vec::with_capacity(picks.len());
    let started = Instant::now();
    for &leaf in &picks {
        let one = Instant::now();
        let proof = log.inclusion_proof(leaf, size)?;
        latencies.push(one.elapsed());
        proofs.push(proof);
    }
    let gen_per_s = picks.len() as f64 / started.elapsed().as_secs_f64();
    let lat = Percentiles::of(&mut latencies);
    let path_len = proofs.iter().map(Vec::len).sum::<usize>() as f64 / proofs.len() as f64;
    let started = Instant::now();
    for (&leaf, proof) in picks.iter().zip(&proofs) {
        merkle::verify_inclusion(leaf, size, &leaves[leaf as usize], proof, &root)
            .map_err(|e| format!("inclusion proof of {leaf} does not verify: {e}"))?;
    }
    let verify_per_s = picks.len() as f64 / started.elapsed().as_secs_f64();
    let get_time = 1.0 / limits.sled_get_per_s;
    report.section(&format!(
        "inclusion proofs at size {size}: {} random leaves, right after the build (\
         {:.2} GB on disk, 64 MiB cache), {path_len:.1} hashes per proof",
        picks.len(),
        disk / 1e9
    ));
    report.figure(
        "inclusion_gen_per_s",
        "inclusion proof generation",
        gen_per_s,
        "proof/s",
        vec![Ratio::new(
            limits.sled_get_per_s / gen_per_s,
            "mean proof time ÷ one sled random get (a proof reads a few tiles, O(log n / 8))",
        )],
    );
    report.figure(
        "inclusion_gen_p50_us",
        "inclusion proof latency p50",
        micros(lat.p50),
        "µs",
        vec![Ratio::new(lat.p50.as_secs_f64() / get_time, "÷ one sled random get")],
    );
    report.figure(
        "inclusion_gen_p99_us",
        "inclusion proof latency p99",
        micros(lat.p99),
        "µs",
        vec![Ratio::new(lat.p99.as_secs_f64() / get_time, "÷ one sled random get")],
    );
    report.figure(
        "inclusion_verify_per_s",
        "inclusion proof verification",
        verify_per_s,
        "proof/s",
        vec![Ratio::new(verify_per_s * path_len / limits.node_hashes_per_s, "× hashes/proof ÷ node hash/s")],
    );

    let olds: Vec<u64> = (0..scale.proofs).map(|_| 1 + rng.below(size - 1)).collect();
    let mut latencies = Vec::with_capacity(olds.len());
    let mut proofs = Vec::with_capacity(olds.len());
    let started = Instant::now();
    for &old in &olds {
        let one = Instant::now();
        let proof = log.consistency_proof(old, size)?;
        latencies.push(one.elapsed());
        proofs.push(proof);
    }
    let gen_per_s = olds.len() as f64 / started.elapsed().as_secs_f64();
    let lat = Percentiles::of(&mut latencies);
    let path_len = proofs.iter().map(Vec::len).sum::<usize>() as f64 / proofs.len() as f64;
    let started = Instant::now();
    let mut old_roots = Vec::with_capacity(olds.len());
    for &old in &olds {
        old_roots.push(log.root(old)?);
    }
    let root_per_s = olds.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for ((&old, proof), old_root) in olds.iter().zip(&proofs).zip(&old_roots) {
        merkle::verify_consistency(old, size, proof, old_root, &root)
            .map_err(|e| format!("consistency proof {old} -> {size} does not verify: {e}"))?;
    }
    let verify_per_s = olds.len() as f64 / started.elapsed().as_secs_f64();
    report.section(&format!(
        "consistency proofs to size {size}: {} random old sizes, {path_len:.1} hashes per proof",
        olds.len()
    ));
    report.figure(
        "consistency_gen_per_s",
        "consistency proof generation",
        gen_per_s,
        "proof/s",
        vec![Ratio::new(limits.sled_get_per_s / gen_per_s, "mean proof time ÷ one sled random get")],
    );
    report.figure(
        "consistency_gen_p50_us",
        "consistency proof latency p50",
        micros(lat.p50),
        "µs",
        vec![Ratio::new(lat.p50.as_secs_f64() / get_time, "÷ one sled random get")],
    );
    report.figure(
        "consistency_gen_p99_us",
        "consistency proof latency p99",
        micros(lat.p99),
        "µs",
        vec![Ratio::new(lat.p99.as_secs_f64() / get_time, "÷ one sled random get")],
    );
    report.figure(
        "root_at_size_per_s",
        "root of an earlier size (LogStore::root)",
        root_per_s,
        "root/s",
        vec![Ratio::new(limits.sled_get_per_s / root_per_s, "mean root time ÷ one sled random get")],
    );
    report.figure(
        "consistency_verify_per_s",
        "consistency proof verification",
        verify_per_s,
        "proof/s",
        vec![Ratio::new(verify_per_s * path_len / limits.node_hashes_per_s, "× hashes/proof ÷ node hash/s")],
    );
    report_noise(report, "proofs", &noise);
    drop(log);
    drop(store);
    Ok(())
}

// ---------------------------------------------------------------------------
// Small helpers: randomness, percentiles, the report

/// SplitMix64: deterministic picks without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound > 0`); the modulo bias is negligible
    /// for the bounds used here.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// CPU time of the whole machine and of this process at one instant, to
/// tell how busy other processes (other developers' builds) kept the
/// machine while something was measured.
struct Noise {
    machine: f64,
    own: f64,
    at: Instant,
}

impl Noise {
    fn start() -> Noise {
        Noise { machine: common::machine_busy().as_secs_f64(), own: own_cpu_seconds(), at: Instant::now() }
    }

    /// Cores other processes kept busy on average since `start`.
    fn other_cores(&self) -> f64 {
        let machine = common::machine_busy().as_secs_f64() - self.machine;
        let own = own_cpu_seconds() - self.own;
        ((machine - own) / self.at.elapsed().as_secs_f64()).max(0.0)
    }
}

/// How busy other processes kept the machine while a section ran.
fn report_noise(report: &mut Report, key: &str, noise: &Noise) {
    let other = noise.other_cores();
    report.figure(
        &format!("{key}_other_processes_cores"),
        "other processes on the machine (noise)",
        other,
        "cores",
        vec![Ratio::new(other / cores() as f64, "of the machine's cores")],
    );
}

/// CPU time of this whole process (ended threads included), in seconds.
fn own_cpu_seconds() -> f64 {
    common::procfs::process_cpu(std::process::id()).as_secs_f64()
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles; an empty sample gives zeros.
    fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1));
            samples.get(rank - 1).copied().unwrap_or_default()
        };
        Percentiles { p50: at(0.50), p99: at(0.99) }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn check(ok: bool, what: &str) -> Result<()> {
    if ok { Ok(()) } else { Err(format!("benchmark sanity check failed: {what}").into()) }
}
