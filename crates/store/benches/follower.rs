//! The index follower's rate, next to sled's raw key rate measured in the
//! same run.
//!
//! `cargo bench -p qtrace-store --bench follower` builds a log of 1,000,000
//! realistic entries (the store benchmark's workload: signed production,
//! shipment and inspection events) with the follower paused, then lets it
//! index them all and measures how fast it does (issue 14 target: at least
//! 40,000 entries/s), how the rate holds from the first tenth to the last,
//! and what the indexes add on disk. `QTRACE_BENCH_SCALE=small` (or the
//! argument `small`) runs 20,000 entries in a few seconds. The program
//! prints one table and ends with `BENCH-SUMMARY {json}`; it never asserts
//! a time. `QTRACE_BENCH_FOLLOW_ENTRIES=N` replaces the log's size.

use std::error::Error;
use std::time::{Duration, Instant};

use qtrace_ledger::entry::ENTRY_HEADER_LEN;
use qtrace_ledger::event::IndexKey;
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::signing::SecretKey;
use qtrace_store::{INDEX_BATCH, Limits, SledStore};

/// The node's allocator, so sled is measured as the node runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{Ratio, Report, cores, procfs};
use qtrace_ledger::benchkit as common;

#[path = "shared/entries.rs"]
mod entries;
use entries::{chain, sign_range};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// Entries per append while building the log (untimed).
const BUILD_BATCH: u64 = 10_000;
/// Issue 14's target for the follower.
const TARGET_PER_S: f64 = 40_000.0;
/// Keys per raw sled batch for the limit: about what one follower batch
/// writes.
const RAW_BATCH: usize = 32_768;

fn main() -> Result<()> {
    let small = common::small_scale()?;
    let n = match std::env::var("QTRACE_BENCH_FOLLOW_ENTRIES") {
        Ok(text) => text.trim().parse::<u64>().map_err(|e| format!("QTRACE_BENCH_FOLLOW_ENTRIES: {e}"))?,
        Err(_) if small => 20_000,
        Err(_) => 1_000_000,
    };
    let scale = if small { "small" } else { "full" };
    let started = Instant::now();
    println!("qtrace follower benchmark, scale {scale}, {n} entries ({} cores)", cores());
    let mut report = Report::new("follower", scale);

    report.section("limit: sled apply_batch without flush (what the follower does)");
    let raw_keys_per_s = raw_sled_keys_per_s(if small { 4 } else { 30 })?;
    report.limit(
        "sled_batch_keys_per_s",
        &format!("sled apply_batch of {RAW_BATCH} keys (33 B keys, 8 B values), unflushed"),
        raw_keys_per_s,
        "key/s",
        Vec::new(),
    );

    let factory = SecretKey::from_seed(&[13; 32]);
    let lab = SecretKey::from_seed(&[11; 32]);
    let log_id = LogId([0x53; 32]);
    let dir = tempfile::tempdir()?;
    let store = SledStore::open_with_cache(&dir.path().join("store"), 64 << 20)?;
    let log = store.log(log_id)?;
    log.set_follower_paused(true);
    // Built with the follower paused: no push-back while building.
    log.set_limits(Limits { max_lag: u64::MAX, ..log.limits() });
    let mut prev = EntryHash(log_id.0);
    let mut entry_bytes = 0u64;
    let mut start = 0u64;
    while start < n {
        let end = (start + BUILD_BATCH).min(n);
        let entries = chain(sign_range(&factory, &lab, start..end), start, &mut prev);
        entry_bytes += entries.iter().map(|e| (ENTRY_HEADER_LEN + e.entry.event.len()) as u64).sum::<u64>();
        log.append(&entries, false, |_, _| Ok::<_, String>("unsigned bench checkpoint".into()))?;
        if start == 0 && end >= qtrace_store::DICTIONARY_TRAIN_AT {
            // What the running follower of a node does once the log holds
            // enough entries: the rest of the log is stored compressed.
            check(log.train_dictionary()?, "no compression dictionary was trained")?;
        }
        start = end;
    }
    store.flush()?;
    let disk_log_only = store.size_on_disk()? as f64;
    check(log.indexed() == 0 && log.index_lag() == n, "the paused follower indexed something")?;

    // Index everything, sampling the watermark to see the rate per tenth.
    let cpu_before = procfs::own_cpu();
    let began = Instant::now();
    log.set_follower_paused(false);
    let mut samples = vec![(Duration::ZERO, 0u64)];
    while log.indexed() < n {
        std::thread::sleep(Duration::from_millis(50));
        samples.push((began.elapsed(), log.indexed()));
    }
    log.wait_indexed(n, Duration::from_secs(3_600))?;
    let took = began.elapsed();
    let cpu = (procfs::own_cpu() - cpu_before).as_secs_f64();
    let per_s = n as f64 / took.as_secs_f64();
    // From the last sample at or below `from` to the first at or above
    // `to` (the watermark moves in steps of up to a follower batch).
    let rate_between = |from: u64, to: u64| {
        let (t0, d0) = samples.iter().rev().find(|(_, done)| *done <= from).copied().unwrap_or((Duration::ZERO, 0));
        let (t1, d1) = samples.iter().find(|(_, done)| *done >= to).copied().unwrap_or((took, n));
        (d1 - d0) as f64 / (t1 - t0).as_secs_f64().max(1e-9)
    };
    let first = rate_between(0, n / 10);
    let last = rate_between(n - n / 10, n);

    store.flush()?;
    let derived = log.live_derived()?;
    check(derived.iter().any(|(k, _)| k[0] == b'H'), "no hash index records")?;
    let footprint = log.index_footprint();
    let follower_keys = footprint.sled_keys;
    let disk = store.size_on_disk()? as f64;
    let rss = procfs::status_bytes(std::process::id(), "VmRSS") as f64;

    // A sanity check that what was indexed is what the entries give.
    let factory_key = IndexKey::Signer(factory.public_key().to_bytes());
    let by_factory = log.lookup(&factory_key, None, usize::MAX)?.len() as u64;
    check(by_factory == (0..n).filter(|i| i % 10 < 8).count() as u64, "the factory's postings are wrong")?;

    report.section(&format!(
        "follower: {n} entries appended with it paused, then indexed in batches of up to {INDEX_BATCH}"
    ));
    report.figure(
        "follower_entries_per_s",
        "entries indexed per second",
        per_s,
        "entry/s",
        vec![
            Ratio::new(per_s / TARGET_PER_S, "÷ target 40,000/s"),
            Ratio::new(per_s * follower_keys as f64 / n as f64 / raw_keys_per_s, "keys/s ÷ sled batch keys/s"),
        ],
    );
    report.figure("follower_first_tenth_per_s", "  over the first tenth", first, "entry/s", Vec::new());
    report.figure(
        "follower_last_tenth_per_s",
        "  over the last tenth",
        last,
        "entry/s",
        vec![Ratio::new(last / first, "÷ first tenth")],
    );
    report.info("follower_cpu_per_entry_us", "CPU per entry (all threads)", cpu / n as f64 * 1e6, "µs");
    report.info(
        "follower_keys_per_entry",
        &format!(
            "index sled keys held per entry (packed P blocks; H and D as {} + {} runs; W)",
            footprint.hash_runs, footprint.dedup_runs
        ),
        follower_keys as f64 / n as f64,
        "keys",
    );
    let entry_avg = entry_bytes as f64 / n as f64;
    report.figure(
        "disk_bytes_per_entry_log_only",
        "bytes on disk per entry, log part only",
        disk_log_only / n as f64,
        "B",
        vec![Ratio::new(disk_log_only / entry_bytes as f64, &format!("÷ entry bytes ({entry_avg:.0} B)"))],
    );
    report.figure(
        "disk_bytes_per_entry",
        "bytes on disk per entry, log and indexes",
        disk / n as f64,
        "B",
        vec![Ratio::new(disk / entry_bytes as f64, &format!("÷ entry bytes ({entry_avg:.0} B), target 2.0"))],
    );
    report.info(
        "log_live_bytes_per_entry",
        "  live in the log part (entries as stored, tiles, checkpoints)",
        log.log_live_bytes() as f64 / n as f64,
        "B",
    );
    report.info(
        "index_live_bytes_per_entry",
        "  live in the indexes (postings, runs, watermark)",
        footprint.live_bytes as f64 / n as f64,
        "B",
    );
    report.info("rss_bytes_per_entry", "resident memory ÷ entries (64 MiB cache)", rss / n as f64, "B");
    report.info("rss_mib", "resident memory at the end", rss / (1 << 20) as f64, "MiB");

    let seconds = started.elapsed().as_secs_f64();
    report.print();
    println!("total time: {seconds:.1} s");
    println!("BENCH-SUMMARY {}", report.summary(seconds, true));
    Ok(())
}

/// sled's key rate for unflushed batches of [`RAW_BATCH`] keys shaped like
/// the follower's `H` keys.
fn raw_sled_keys_per_s(batches: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new().path(dir.path()).mode(sled::Mode::HighThroughput).cache_capacity(64 << 20).open()?;
    let tree = db.open_tree("raw")?;
    let mut state = 1u64;
    let started = Instant::now();
    let mut written = 0usize;
    for _ in 0..batches {
        let mut batch = sled::Batch::default();
        for _ in 0..RAW_BATCH {
            // Keys spread like entry hashes, not in order.
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let mut key = [b'H'; 33];
            key[1..9].copy_from_slice(&state.to_be_bytes());
            batch.insert(&key[..], &state.to_be_bytes()[..]);
            written += 1;
        }
        tree.apply_batch(batch)?;
    }
    Ok(written as f64 / started.elapsed().as_secs_f64())
}

fn check(ok: bool, what: &str) -> Result<()> {
    if ok { Ok(()) } else { Err(what.into()) }
}
