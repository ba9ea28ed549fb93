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
//!   takes on disk, per entry and per entry byte;
//! - at the first size and at 1,000,000 entries (small: the first and the
//!   last size), once the follower has caught up and with the import
//!   paused, the consumer resolver under load: 16 clients, each a loop of
//!   keep-alive HTTP/1.1 `GET /01/{gtin}/10/{lot}` with
//!   `Accept: application/json` for a lot drawn at random among those
//!   imported so far, for a fixed time. The rate of verdicts and the p50
//!   and p99 latency are reported, and the rate at 1,000,000 ÷ the rate at
//!   20,000 (issue 14: ≥ 0.5, p99 ≤ 10 ms). Any answer other than 200 with
//!   a JSON `verdict` fails the benchmark.
//!
//! Events are signed before each window's clock starts, on every core.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qtrace_ledger::entry::Entry;
use qtrace_ledger::pb;
use qtrace_ledger::signing::SecretKey;

use super::common::node::NodeProcess;
use super::common::procfs::{dir_bytes, status_bytes};
use super::common::workload::{GTINS, lot_of, production};
use super::common::{Ratio, Report, across_cores, now_millis, sign};
use super::{BATCH, Percentiles, Result, connect, register};

/// Sizes at which the import is measured, the window of events before each
/// measurement whose rate is reported, and the sizes (among the marks) at
/// which the resolver is loaded, for how long.
pub struct ImportScale {
    pub marks: &'static [u64],
    pub window: u64,
    pub resolver_marks: &'static [u64],
    pub resolver_length: Duration,
}

pub const FULL: ImportScale = ImportScale {
    marks: &[20_000, 100_000, 1_000_000, 3_000_000],
    window: 50_000,
    resolver_marks: &[20_000, 1_000_000],
    resolver_length: Duration::from_secs(10),
};
pub const SMALL: ImportScale = ImportScale {
    marks: &[2_000, 5_000, 10_000, 20_000],
    window: 5_000,
    resolver_marks: &[2_000, 20_000],
    resolver_length: Duration::from_secs(2),
};

/// Concurrent AppendBatch clients.
const CLIENTS: usize = 4;
/// Longest wait for the index follower to catch up after a window.
const INDEX_WAIT: Duration = Duration::from_secs(600);
/// Concurrent resolver clients (one keep-alive connection each).
const RESOLVER_CLIENTS: usize = 16;
/// The resolver targets: the rate at 1,000,000 entries ÷ the rate
/// at 20,000, and the p99 latency.
const TARGET_RESOLVER_RATIO: f64 = 0.5;
const TARGET_RESOLVER_P99_MS: f64 = 10.0;

/// What was measured at one mark.
struct Mark {
    size: u64,
    /// Events in the timed window before the mark (fewer than the window
    /// when the mark comes first and is smaller).
    events: u64,
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
    if let Some(m) = scale.resolver_marks.iter().find(|m| !scale.marks.contains(m)) {
        return Err(format!("resolver mark {m} is not an import mark {:?}", scale.marks).into());
    }
    let mut next: u64 = 0;
    let mut marks = Vec::new();
    let mut loads: Vec<(u64, Load)> = Vec::new();
    let mut entry_bytes: u64 = 0;
    let started = Instant::now();
    println!("import: {} production records in windows of {}, marks at {:?}", last, scale.window, scale.marks);
    while next < last {
        let mark = scale.marks.iter().copied().find(|m| *m > next).unwrap_or(last);
        // Windows end exactly at the marks, and the one just before a mark,
        // the only one timed, is a whole window when the gap allows it.
        let start = next;
        let end = if mark - start <= scale.window { mark } else { (start + scale.window).min(mark - scale.window) };
        let events = sign_window(&factory, start, end);
        let event_bytes: u64 = events.iter().map(|e| e.event.len() as u64).sum();
        let t0 = Instant::now();
        send(&mut clients, events).await?;
        let acked = t0.elapsed();
        wait_indexed(node).await?;
        let indexed = t0.elapsed();
        entry_bytes += event_bytes;
        next = end;
        if end == mark {
            let n = (end - start) as f64;
            let m = Mark {
                size: end,
                events: end - start,
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
            if scale.resolver_marks.contains(&end) {
                let load = resolver_load(node, end, scale.resolver_length).await?;
                println!(
                    "  {:>9} entries, resolver: {} verdicts in {:.1} s from {RESOLVER_CLIENTS} clients: {:.0}/s, \
                     p50 {:.2} ms, p99 {:.2} ms",
                    end,
                    load.verdicts,
                    load.elapsed.as_secs_f64(),
                    load.per_s(),
                    millis(load.p50),
                    millis(load.p99)
                );
                loads.push((end, load));
            }
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
         (rates over the {} events before each size, or all of them below it)",
        scale.window
    ));
    // Import rates compare with the first mark timed over a whole window
    // (100,000 in the full run), as they did before the smaller first mark
    // was added for the resolver.
    let first = marks.iter().find(|m| m.events == scale.window).or(marks.first()).ok_or("no marks measured")?;
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

    report.section(&format!(
        "resolver: {RESOLVER_CLIENTS} concurrent clients (JSON verdicts of random lots), {:.0} s at each size",
        scale.resolver_length.as_secs_f64()
    ));
    if let Some((first_size, first)) = loads.first() {
        let (first_size, first_rate) = (*first_size, first.per_s());
        for (size, load) in &loads {
            let rate = load.per_s();
            report.figure(
                &format!("import_resolver_{size}_per_s"),
                &format!("verdicts/s at {size} entries"),
                rate,
                "verdict/s",
                vec![Ratio::new(
                    rate / first_rate,
                    &format!("÷ the rate at {first_size} (issue 14 target ≥ {TARGET_RESOLVER_RATIO})"),
                )],
            );
            report.info(&format!("import_resolver_{size}_p50_ms"), "  latency p50", millis(load.p50), "ms");
            report.figure(
                &format!("import_resolver_{size}_p99_ms"),
                "  latency p99",
                millis(load.p99),
                "ms",
                vec![Ratio::new(millis(load.p99) / TARGET_RESOLVER_P99_MS, "÷ target ≤ 10 ms")],
            );
        }
    }
    Ok(())
}

/// One resolver load: verdicts answered, the time they took (until the last
/// request in flight answered) and their latency.
struct Load {
    verdicts: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Load {
    fn per_s(&self) -> f64 {
        self.verdicts as f64 / self.elapsed.as_secs_f64()
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// [`RESOLVER_CLIENTS`] blocking clients asking the node's resolver for the
/// JSON verdict of random lots among the first `lots` productions, for
/// `length`. Any answer other than 200 with a `verdict` fails the load.
async fn resolver_load(node: &NodeProcess, lots: u64, length: Duration) -> Result<Load> {
    let addr = node.http.clone().ok_or("the import node wrote no DATA/http.addr: no resolver to load")?;
    tokio::task::spawn_blocking(move || load_resolver(&addr, lots, length)).await?
}

fn load_resolver(addr: &str, lots: u64, length: Duration) -> Result<Load> {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let deadline = started + length;
    let outcomes: Vec<Result<Vec<Duration>, String>> = std::thread::scope(|scope| {
        let stop = &stop;
        let handles: Vec<_> = (0..RESOLVER_CLIENTS as u64)
            .map(|client| {
                scope.spawn(move || {
                    let outcome = resolver_client(addr, lots, client, deadline, stop);
                    if outcome.is_err() {
                        // One error fails the load: the others stop early.
                        stop.store(true, Ordering::Relaxed);
                    }
                    outcome
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a resolver client thread panicked".to_string())))
            .collect()
    });
    let elapsed = started.elapsed();
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(client) => latencies.extend(client),
            Err(e) => errors.push(e),
        }
    }
    if let Some(first) = errors.first() {
        return Err(format!(
            "resolver at {lots} entries: {} of {RESOLVER_CLIENTS} clients got an answer that is not a verdict; \
             first: {first}",
            errors.len()
        )
        .into());
    }
    if latencies.is_empty() {
        return Err(format!("resolver at {lots} entries: no verdict answered in {length:?}").into());
    }
    let lat = Percentiles::of(&latencies);
    Ok(Load { verdicts: latencies.len(), elapsed, p50: lat.p50, p99: lat.p99 })
}

/// One client's loop until `deadline` (or another client's error): the
/// latency of every verdict, or the first answer that is not one.
fn resolver_client(
    addr: &str,
    lots: u64,
    client: u64,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Vec<Duration>, String> {
    // SplitMix64, seeded per client and size: the same lots every run.
    let mut state = (client + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ lots;
    let mut random = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut connection: Option<BufReader<TcpStream>> = None;
    let mut latencies = Vec::new();
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        // Production i made lot L26{i:08} of GTINS[i % 2].
        let i = random() % lots;
        let path = format!("/01/{}/10/{}", GTINS[(i % 2) as usize], lot_of(i));
        let mut stream = match connection.take() {
            Some(stream) => stream,
            None => open(addr).map_err(|e| format!("connecting to {addr}: {e}"))?,
        };
        let t0 = Instant::now();
        let answer = get_json(&mut stream, addr, &path).map_err(|e| format!("GET {path}: {e}"))?;
        let latency = t0.elapsed();
        if answer.status != 200 {
            return Err(format!("GET {path}: status {}: {}", answer.status, excerpt(&answer.body)));
        }
        let has_verdict = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .is_ok_and(|json| json.get("verdict").is_some_and(serde_json::Value::is_string));
        if !has_verdict {
            return Err(format!("GET {path}: 200 without a JSON verdict: {}", excerpt(&answer.body)));
        }
        latencies.push(latency);
        if !answer.close {
            connection = Some(stream);
        }
    }
    Ok(latencies)
}

fn open(addr: &str) -> std::io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(BufReader::new(stream))
}

/// An HTTP/1.1 answer with a Content-Length body.
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// The server closes the connection after this answer.
    close: bool,
}

/// One keep-alive `GET path` asking for JSON, and its answer (the
/// resolver's answers carry a Content-Length; anything else is an error).
fn get_json(stream: &mut BufReader<TcpStream>, host: &str, path: &str) -> std::io::Result<Answer> {
    use std::io::{Error, ErrorKind};
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n");
    stream.get_mut().write_all(request.as_bytes())?;
    let mut line = String::new();
    if stream.read_line(&mut line)? == 0 {
        return Err(Error::new(ErrorKind::UnexpectedEof, "the node closed the connection"));
    }
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("not an HTTP/1.1 status line: {line:?}")))?;
    let mut length = None;
    let mut close = false;
    loop {
        line.clear();
        if stream.read_line(&mut line)? == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "the connection closed inside the response head"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| {
                Error::new(ErrorKind::InvalidData, format!("Content-Length {value:?} is not a number"))
            })?);
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    let length = length.ok_or_else(|| {
        Error::new(ErrorKind::InvalidData, format!("status {status} without a Content-Length (chunked is not read)"))
    })?;
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(Answer { status, body, close })
}

/// The start of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
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
    let mut stream = TcpStream::connect(addr).ok()?;
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
