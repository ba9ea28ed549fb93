//! The import phase: what a new user does first — bulk-importing production
//! records (~450 entry bytes each) with AppendBatch into a node started with
//! `--cache-mb 64` — until the log holds millions of entries. It measures,
//! at sizes along the way, whether the node's cost grows with its log:
//!
//! - the import rate of the window of events ending at that size, counted
//!   until the node acknowledged the last event and again until its index
//!   follower has indexed it (the `qtrace_index_lag_entries` gauge at 0; a
//!   node without the gauge counts as indexed when it acknowledges);
//! - the node's resident memory (VmRSS, VmHWM) and the bytes its store
//!   takes on disk, per entry and per entry byte.
//!
//! Events are signed before each window's clock starts, on every core.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use qtrace_ledger::entry::Entry;
use qtrace_ledger::pb;
use qtrace_ledger::signing::SecretKey;

use super::common::node::NodeProcess;
use super::common::procfs::{dir_bytes, status_bytes};
use super::common::workload::production;
use super::common::{Ratio, Report, across_cores, now_millis, sign};
use super::{BATCH, Result, connect, register};

/// Sizes at which the import is measured, and the window of events before
/// each measurement whose rate is reported.
pub struct ImportScale {
    pub marks: &'static [u64],
    pub window: u64,
}

pub const FULL: ImportScale = ImportScale { marks: &[100_000, 1_000_000, 3_000_000], window: 50_000 };
pub const SMALL: ImportScale = ImportScale { marks: &[5_000, 10_000, 20_000], window: 5_000 };

/// Concurrent AppendBatch clients.
const CLIENTS: usize = 4;
/// Longest wait for the index follower to catch up after a window.
const INDEX_WAIT: Duration = Duration::from_secs(600);

/// What was measured at one mark.
struct Mark {
    size: u64,
    acked_per_s: f64,
    indexed_per_s: f64,
    rss: u64,
    hwm: u64,
    disk: u64,
    entry_bytes: u64,
}

pub async fn run(report: &mut Report, scale: &ImportScale) -> Result<()> {
    let mut node = NodeProcess::start(
        Path::new(env!("CARGO_BIN_EXE_qtrace-node")),
        &["--cache-mb", "64", "--queue-limit", "65536"],
        Stdio::inherit(),
    )?;
    let outcome = import(&node, report, scale).await;
    let status = node.stop()?;
    outcome?;
    if !status.success() {
        return Err(format!("the import node exited with {status} after SIGTERM, not 0").into());
    }
    Ok(())
}

async fn import(node: &NodeProcess, report: &mut Report, scale: &ImportScale) -> Result<()> {
    let mut admin = connect(&node.url).await?;
    let root = SecretKey::from_file_text(&std::fs::read_to_string(node.data.join("authority.key"))?)?;
    let factory = SecretKey::from_seed(&[13; 32]);
    let lab = SecretKey::from_seed(&[11; 32]);
    register(&mut admin, &root, &factory, &lab).await?;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(&node.url).await?);
    }
    let last = *scale.marks.last().ok_or("no import marks")?;
    let mut next: u64 = 0;
    let mut marks = Vec::new();
    let mut entry_bytes: u64 = 0;
    let started = Instant::now();
    println!("import: {} production records in windows of {}, marks at {:?}", last, scale.window, scale.marks);
    while next < last {
        let mark = scale.marks.iter().copied().find(|m| *m > next).unwrap_or(last);
        // Windows end exactly at the marks; only the window just before a
        // mark is timed.
        let end = (next + scale.window).min(mark);
        let events = sign_window(&factory, next, end);
        let event_bytes: u64 = events.iter().map(|e| e.event.len() as u64).sum();
        let t0 = Instant::now();
        send(&mut clients, events).await?;
        let acked = t0.elapsed();
        wait_indexed(node).await?;
        let indexed = t0.elapsed();
        entry_bytes += event_bytes;
        next = end;
        if end == mark {
            let n = (end - (mark - scale.window.min(mark))) as f64;
            let m = Mark {
                size: end,
                acked_per_s: n / acked.as_secs_f64(),
                indexed_per_s: n / indexed.as_secs_f64(),
                rss: status_bytes(node.pid(), "VmRSS"),
                hwm: status_bytes(node.pid(), "VmHWM"),
                disk: dir_bytes(&node.data.join("store")) + dir_bytes(&node.data.join("store.index")),
                entry_bytes,
            };
            println!(
                "  {:>9} entries after {:.0} s: {:.0} events/s acknowledged, {:.0}/s indexed, RSS {} MiB, disk {} MiB",
                m.size,
                started.elapsed().as_secs_f64(),
                m.acked_per_s,
                m.indexed_per_s,
                m.rss >> 20,
                m.disk >> 20
            );
            marks.push(m);
        }
    }
    // Entry bytes: the events plus each entry's fixed layout around it,
    // read off the last entry the node stored.
    let size = admin.get_log_info(pb::GetLogInfoRequest::default()).await?.into_inner().size;
    let last_entry = admin
        .get_entry(pb::GetEntryRequest {
            key: Some(pb::get_entry_request::Key::Seq(size.checked_sub(1).ok_or("the log is empty")?)),
            log_id: Vec::new(),
        })
        .await?
        .into_inner();
    let entry = Entry::from_pb(&last_entry).map_err(|e| format!("the last entry: {e}"))?;
    let overhead = (entry.encode().len() - entry.event.len()) as u64;

    report.section(&format!(
        "bulk import of production records, AppendBatch of {BATCH} from {CLIENTS} clients, node --cache-mb 64 \
         (rates over the {} events before each size)",
        scale.window
    ));
    let first = marks.first().ok_or("no marks measured")?;
    let (first_acked, first_indexed, first_size) = (first.acked_per_s, first.indexed_per_s, first.size);
    for m in &marks {
        let bytes = m.entry_bytes + overhead * m.size;
        let size = m.size;
        report.figure(
            &format!("import_{size}_indexed_per_s"),
            &format!("events/s at {size} entries, until indexed"),
            m.indexed_per_s,
            "event/s",
            vec![Ratio::new(m.indexed_per_s / first_indexed, &format!("÷ the rate at {first_size} (target ≥ 0.85)"))],
        );
        report.figure(
            &format!("import_{size}_acked_per_s"),
            &format!("events/s at {size} entries, until acknowledged"),
            m.acked_per_s,
            "event/s",
            vec![Ratio::new(m.acked_per_s / first_acked, &format!("÷ the rate at {first_size}"))],
        );
        report.figure(
            &format!("import_{size}_disk_per_entry_byte"),
            &format!("store bytes on disk ÷ entry bytes at {size} ({} B per entry)", bytes / size.max(1)),
            m.disk as f64 / bytes.max(1) as f64,
            "×",
            vec![Ratio::new(m.disk as f64 / bytes.max(1) as f64 / 2.0, "÷ target 2.0")],
        );
        report.figure(
            &format!("import_{size}_rss_mib"),
            &format!("node resident memory at {size} (peak {} MiB)", m.hwm >> 20),
            (m.rss >> 20) as f64,
            "MiB",
            vec![Ratio::new((m.rss >> 20) as f64 / 400.0, "÷ 400 MiB (the target at 1,000,000)")],
        );
    }
    for pair in marks.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let growth = (b.rss as f64 - a.rss as f64) / (b.size - a.size) as f64;
        report.figure(
            &format!("import_rss_growth_{}_{}", a.size, b.size),
            &format!("resident memory growth per entry from {} to {}", a.size, b.size),
            growth,
            "B/entry",
            vec![Ratio::new(growth / 100.0, "÷ target 100 B/entry")],
        );
    }
    Ok(())
}

/// Production events `from..to`, signed by the factory on every core.
fn sign_window(factory: &SecretKey, from: u64, to: u64) -> Vec<pb::SignedEvent> {
    let millis = now_millis();
    across_cores(from..to, |i| sign(factory, &production(i, millis)))
}

/// Sends `events` in AppendBatch requests of [`BATCH`], the clients taking
/// turns, and fails on any refusal.
async fn send(
    clients: &mut [qtrace_rpc::rpc::ledger_client::LedgerClient<tonic::transport::Channel>],
    events: Vec<pb::SignedEvent>,
) -> Result<()> {
    let requests: Vec<pb::AppendBatchRequest> =
        events.chunks(BATCH).map(|c| pb::AppendBatchRequest { events: c.to_vec() }).collect();
    let per_client = requests.len().div_ceil(clients.len()).max(1);
    let mut tasks = Vec::new();
    for (client, part) in clients.iter().zip(requests.chunks(per_client)) {
        let mut client = client.clone();
        let part = part.to_vec();
        tasks.push(tokio::spawn(async move {
            for request in part {
                let response = client
                    .append_batch(request)
                    .await
                    .map_err(|s| format!("AppendBatch: {:?}: {}", s.code(), s.message()))?
                    .into_inner();
                for result in response.results {
                    if let Some(pb::append_result::Outcome::Refusal(r)) = result.outcome {
                        return Err(format!("an import event was refused: {}: {}", r.code, r.message));
                    }
                }
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Waits until the node's index follower has caught up: the sum of its
/// `qtrace_index_lag_entries` samples is 0 (a node without the gauge has no
/// follower: everything it acknowledged is indexed).
async fn wait_indexed(node: &NodeProcess) -> Result<()> {
    let Some(http) = node.http.as_deref() else { return Ok(()) };
    let deadline = Instant::now() + INDEX_WAIT;
    loop {
        match index_lag(http) {
            None | Some(0) => return Ok(()),
            Some(lag) if Instant::now() > deadline => {
                return Err(format!("the index follower still lags {lag} entries after {INDEX_WAIT:?}").into());
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// The sum of the node's `qtrace_index_lag_entries` samples, or `None` when
/// it has no such gauge.
fn index_lag(addr: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    let samples: Vec<u64> = body
        .lines()
        .filter(|l| l.starts_with("qtrace_index_lag_entries"))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .map(|v| v.max(0.0) as u64)
        .collect();
    if samples.is_empty() { None } else { Some(samples.iter().sum()) }
}
