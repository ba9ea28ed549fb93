//! Load: 64 concurrent clients, each on its own connection, append to one
//! node with a small append queue (`--queue-limit`) for a bounded time.
//!
//! Most requests are unary appends of a fresh production record; every
//! tenth is an AppendBatch of 50, so the queue overflows and the node
//! answers with back-pressure (RESOURCE_EXHAUSTED), which must be the only
//! refusal. A refused request is retried, after a short back-off, with the
//! same signed events: they were not written, so the retry appends them as
//! new. Now and then a client resubmits an event already acknowledged, which
//! must come back as a duplicate with the original sequence number and hash.
//!
//! Afterwards every acknowledgement must hold: the log grew by exactly the
//! events acknowledged, each at the sequence number and entry hash of its
//! receipt (read back with GetEntry, and in the streamed log, whose chain is
//! checked), each receipt's inclusion proof verifies against its signed
//! checkpoint, and every such checkpoint is a prefix of the final log. The
//! node's counters (/metrics) must agree: appends, back-pressure refusals,
//! an empty queue at the end.
//!
//! Memory: the node runs with a small sled page cache (`--cache-mb 32`).
//! What it holds for requests is bounded by the queue and message limits;
//! what grows is the store's: the cache until it is full, and sled 0.34's
//! in-memory bookkeeping for every page of the store, about 1–2.5 KiB per
//! entry written (README, "Memory"). So the node's resident memory, sampled
//! from /proc every 250 ms, must stay below its size at the start plus the
//! cache, 192 MiB for everything else, and 4 KiB per entry in the log. A
//! queue or connection state that grew with the load would break that.
//!
//! `QTRACE_LOAD_SECONDS` sets the length of the run (default 8). The figures
//! are printed; run with `--nocapture` to see them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qtrace_client::rpc::ledger_client::LedgerClient;
use qtrace_ledger::entry::Entry;
use qtrace_ledger::hash::EntryHash;
use qtrace_ledger::merkle::{self, MemTree};
use qtrace_ledger::note::{self, Verifier};
use qtrace_ledger::pb;
use qtrace_tests::*;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

const CLIENTS: usize = 64;
const DEFAULT_SECONDS: u64 = 8;
/// Small enough that a few batches in flight overflow it.
const QUEUE_LIMIT: usize = 256;
/// Every `BATCH_EVERY`-th request of a client is a batch of `BATCH_SIZE`.
const BATCH_EVERY: u64 = 10;
const BATCH_SIZE: usize = 50;
/// Every `DUPLICATE_EVERY`-th request resubmits an acknowledged event.
const DUPLICATE_EVERY: u64 = 23;
/// A request that takes this long means the node hung: fail rather than wait.
const HANG: Duration = Duration::from_secs(60);
const RSS_INTERVAL: Duration = Duration::from_millis(250);
const MIB: u64 = 1024;
/// The node's sled page cache, in MiB (`--cache-mb`).
const CACHE_MB: u64 = 32;
/// Room beyond the cache for everything else: queue, connections, buffers.
const RSS_ROOM_KIB: u64 = 192 * MIB;
/// Ceiling on sled's per-entry bookkeeping, KiB per entry in the log.
const RSS_PER_ENTRY_KIB: u64 = 4;

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// Receipts of new events (never duplicates), in the order received.
    receipts: Vec<pb::AppendReceipt>,
    /// Receipts of resubmitted acknowledged events.
    duplicates: Vec<pb::AppendReceipt>,
    unary_requests: u64,
    batch_requests: u64,
    /// Requests refused with RESOURCE_EXHAUSTED (a batch counts once)...
    refused_requests: u64,
    /// ...and the events in them.
    refused_events: u64,
}

/// The outcome of one request: its receipts, or back-pressure.
enum Answer {
    Receipts(Vec<pb::AppendReceipt>),
    BackPressure,
}

/// Back-pressure is the one refusal the load may meet; anything else fails
/// the test with the node's message.
fn back_pressure(status: &tonic::Status, what: &str) -> Answer {
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{what}: refused with {:?}: {}",
        status.code(),
        status.message()
    );
    Answer::BackPressure
}

async fn submit(client: &mut LedgerClient<Channel>, events: &[pb::SignedEvent], what: &str) -> Answer {
    if let [signed] = events {
        let call = client.append(pb::AppendRequest { event: Some(signed.clone()) });
        return match tokio::time::timeout(HANG, call).await {
            Err(_) => panic!("{what}: no answer to an append within {HANG:?}"),
            Ok(Ok(receipt)) => Answer::Receipts(vec![receipt.into_inner()]),
            Ok(Err(status)) => back_pressure(&status, what),
        };
    }
    let call = client.append_batch(pb::AppendBatchRequest { events: events.to_vec() });
    let results = match tokio::time::timeout(HANG, call).await {
        Err(_) => panic!("{what}: no answer to a batch within {HANG:?}"),
        Ok(Ok(response)) => response.into_inner().results,
        Ok(Err(status)) => return back_pressure(&status, what),
    };
    assert_eq!(results.len(), events.len(), "{what}: one result per event");
    let mut receipts = Vec::with_capacity(results.len());
    let mut refused = 0;
    for result in results {
        match result.outcome {
            Some(pb::append_result::Outcome::Receipt(receipt)) => receipts.push(receipt),
            Some(pb::append_result::Outcome::Refusal(refusal)) => {
                let _ = back_pressure(&tonic::Status::new(refusal.code.into(), refusal.message), what);
                refused += 1;
            }
            None => panic!("{what}: a batch result without an outcome"),
        }
    }
    // The queue takes or refuses a batch whole.
    match refused {
        0 => Answer::Receipts(receipts),
        n if n == events.len() => Answer::BackPressure,
        n => panic!("{what}: {n} of {} events refused by back-pressure, the rest appended", events.len()),
    }
}

/// One client: appends until `deadline`, retrying refused events after a
/// short back-off, and resubmitting an acknowledged event now and then.
async fn run_client(
    mut client: LedgerClient<Channel>,
    actor: Actor,
    client_no: usize,
    deadline: Instant,
) -> (LedgerClient<Channel>, Tally) {
    let mut tally = Tally::default();
    let mut lots = 0u64;
    let mut requests = 0u64;
    let mut retry: Option<Vec<pb::SignedEvent>> = None;
    let mut last_acked: Option<(pb::SignedEvent, pb::AppendReceipt)> = None;
    let mut backoff_seed = client_no as u64;
    while Instant::now() < deadline {
        requests += 1;
        let probe = if requests.is_multiple_of(DUPLICATE_EVERY) && retry.is_none() { last_acked.clone() } else { None };
        if let Some((signed, first)) = probe {
            let what = format!("client {client_no}: resubmitting entry {}", first.seq);
            tally.unary_requests += 1;
            match submit(&mut client, std::slice::from_ref(&signed), &what).await {
                Answer::Receipts(mut receipts) => {
                    let again = receipts.pop().expect("one receipt for one event");
                    assert!(again.duplicate, "{what}: appended again instead of being recognised");
                    assert_eq!((again.seq, &again.entry_hash), (first.seq, &first.entry_hash), "{what}");
                    tally.duplicates.push(again);
                }
                Answer::BackPressure => {
                    tally.refused_requests += 1;
                    tally.refused_events += 1;
                    back_off(&mut backoff_seed).await;
                }
            }
            continue;
        }
        let events = retry.take().unwrap_or_else(|| {
            let count = if requests.is_multiple_of(BATCH_EVERY) { BATCH_SIZE } else { 1 };
            (0..count)
                .map(|_| {
                    lots += 1;
                    actor.sign(&production(GTIN, &format!("LOAD-{client_no}-{lots}")))
                })
                .collect()
        });
        if events.len() == 1 {
            tally.unary_requests += 1;
        } else {
            tally.batch_requests += 1;
        }
        let what = format!("client {client_no}: request {requests} ({} events)", events.len());
        match submit(&mut client, &events, &what).await {
            Answer::Receipts(receipts) => {
                for (signed, receipt) in events.into_iter().zip(receipts) {
                    // Every event is new, including those refused before:
                    // a refusal must not have written them.
                    assert!(!receipt.duplicate, "{what}: a new event is called a duplicate of {}", receipt.seq);
                    last_acked = Some((signed, receipt.clone()));
                    tally.receipts.push(receipt);
                }
            }
            Answer::BackPressure => {
                tally.refused_requests += 1;
                tally.refused_events += events.len() as u64;
                retry = Some(events);
                back_off(&mut backoff_seed).await;
            }
        }
    }
    (client, tally)
}

/// Sleeps 5 to 20 ms, varied per client so that refused clients do not
/// come back in step.
async fn back_off(seed: &mut u64) {
    *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    tokio::time::sleep(Duration::from_millis(5 + (*seed >> 33) % 16)).await;
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Samples a process's RSS on a thread of its own (not delayed by a busy
/// runtime) until stopped: (time since start, KiB).
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Duration, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            loop {
                if let Some(kib) = rss_kib(pid) {
                    samples.push((started.elapsed(), kib));
                }
                if stopping.load(Ordering::Acquire) {
                    return samples;
                }
                std::thread::sleep(RSS_INTERVAL);
            }
        });
        RssSampler { stop, thread }
    }

    fn finish(self) -> Vec<(Duration, u64)> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("RSS sampler thread")
    }
}

/// The value of the metric line starting with `line_start`, 0 if absent
/// (a labelled counter appears only once counted).
fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(node: &Node) -> String {
    let base = node.http_url();
    let response = tokio::task::spawn_blocking(move || http_get(&base, "/metrics", None)).await.expect("GET /metrics");
    assert_eq!(response.status, 200, "GET /metrics: {}", response.body);
    response.body
}

fn hash32(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().expect("32-byte hash")
}

/// Checks a receipt as a client would, and against the final log: the
/// checkpoint is signed by the log key, the inclusion proof leads from the
/// entry to its root, and that root is the final tree's root at that size.
/// Checkpoints shared by many receipts (one per group commit) are opened once.
fn check_receipt(
    receipt: &pb::AppendReceipt,
    vkey: &Verifier,
    log_id: &[u8],
    tree: &MemTree,
    opened: &mut HashMap<String, (u64, [u8; 32])>,
) {
    assert_eq!(receipt.log_id, log_id, "receipt {}: log id", receipt.seq);
    let checkpoint = receipt.checkpoint.as_ref().expect("receipt has a checkpoint");
    let (size, root) = *opened.entry(checkpoint.note.clone()).or_insert_with(|| {
        let cp = note::open_checkpoint(&checkpoint.note, vkey, &[]).expect("checkpoint signed by the log").checkpoint;
        let final_root = tree.root_at(cp.size).expect("checkpoint within the final log");
        assert_eq!(final_root, cp.root, "checkpoint at size {} is not a prefix of the final log", cp.size);
        (cp.size, cp.root)
    });
    let proof = receipt.inclusion.as_ref().expect("receipt has a proof");
    assert_eq!((proof.leaf_index, proof.tree_size), (receipt.seq, size), "receipt {}: proof position", receipt.seq);
    assert!(receipt.seq < size, "receipt {}: entry beyond its checkpoint ({size})", receipt.seq);
    let path: Vec<[u8; 32]> = proof.path.iter().map(|h| hash32(h)).collect();
    merkle::verify_inclusion(receipt.seq, size, &hash32(&receipt.entry_hash), &path, &root)
        .unwrap_or_else(|e| panic!("receipt {}: inclusion proof: {e}", receipt.seq));
}

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(items) = std::fs::read_dir(dir) else { return 0 };
    items
        .flatten()
        .map(|item| match item.file_type() {
            Ok(kind) if kind.is_dir() => disk_bytes(&item.path()),
            _ => item.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_meet_only_back_pressure_and_lose_nothing() {
    let seconds: u64 = std::env::var("QTRACE_LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_SECONDS);
    let test_started = Instant::now();
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let mut node =
        Node::start_in(&data, &["--queue-limit", &QUEUE_LIMIT.to_string(), "--cache-mb", &CACHE_MB.to_string()]);
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;
    let vkey = node.vkey();
    let log_id = node.log_id().0.to_vec();
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(node.client().await);
    }
    let size_before = client.get_log_info(pb::GetLogInfoRequest {}).await.expect("log info").into_inner().size;
    let metrics_before = metrics(&node).await;
    let pid = node.pid();
    let rss_start = rss_kib(pid).expect("the node's VmRSS");
    eprintln!(
        "load: {CLIENTS} clients for {seconds} s, --queue-limit {QUEUE_LIMIT}, a batch of {BATCH_SIZE} every \
         {BATCH_EVERY} requests; node RSS {:.1} MiB",
        mib(rss_start)
    );

    // The run.
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| tokio::spawn(run_client(client, cast.factory.clone(), i, deadline)))
        .collect();
    let mut results = Vec::with_capacity(CLIENTS);
    for task in tasks {
        results.push(task.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    let checks_started = Instant::now();
    let samples = sampler.finish();

    let accepted: usize = results.iter().map(|(_, t)| t.receipts.len()).sum();
    let duplicates: usize = results.iter().map(|(_, t)| t.duplicates.len()).sum();
    let unary: u64 = results.iter().map(|(_, t)| t.unary_requests).sum();
    let batches: u64 = results.iter().map(|(_, t)| t.batch_requests).sum();
    let refused_requests: u64 = results.iter().map(|(_, t)| t.refused_requests).sum();
    let refused_events: u64 = results.iter().map(|(_, t)| t.refused_events).sum();

    // The figures, before any check can fail.
    let size = client.get_log_info(pb::GetLogInfoRequest {}).await.expect("log info").into_inner().size;
    let rss_end = samples.last().map(|s| s.1).unwrap_or(rss_start);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(rss_start);
    let quarter = Duration::from_secs(seconds) / 4;
    let peak_within =
        |from: Duration, to: Duration| samples.iter().filter(|(t, _)| *t >= from && *t < to).map(|s| s.1).max();
    let first_quarter = peak_within(Duration::ZERO, quarter);
    let last_quarter = peak_within(quarter * 3, quarter * 4);
    let rate = accepted as f64 / elapsed.as_secs_f64();
    eprintln!(
        "load: {:.1} s, {accepted} appends acknowledged ({rate:.0}/s) in {unary} unary and {batches} batch requests; \
         {refused_requests} requests ({refused_events} events) refused by back-pressure and retried; \
         {duplicates} resubmissions recognised as duplicates; log {size_before} -> {size} entries, \
         setup {:.1} s",
        elapsed.as_secs_f64(),
        started.duration_since(test_started).as_secs_f64()
    );
    eprintln!(
        "load: node RSS {:.1} MiB before, peak {:.1} MiB (first quarter {:.1}, last quarter {:.1}), {:.1} MiB at \
         the end ({} samples; {:.1} KiB per appended entry); store {:.1} MiB on disk",
        mib(rss_start),
        mib(peak),
        mib(first_quarter.unwrap_or(0)),
        mib(last_quarter.unwrap_or(0)),
        mib(rss_end),
        samples.len(),
        rss_end.saturating_sub(rss_start) as f64 / accepted.max(1) as f64,
        disk_bytes(&data) as f64 / (1024.0 * 1024.0)
    );

    // The log grew by exactly the events acknowledged, each at its own
    // sequence number: unique, and together filling the new range.
    assert_eq!(size, size_before + accepted as u64, "log size after {accepted} acknowledged appends");
    let mut by_seq: HashMap<u64, &[u8]> = HashMap::with_capacity(accepted);
    for receipt in results.iter().flat_map(|(_, t)| &t.receipts) {
        assert!((size_before..size).contains(&receipt.seq), "receipt seq {} outside the new range", receipt.seq);
        let earlier = by_seq.insert(receipt.seq, &receipt.entry_hash);
        assert!(earlier.is_none(), "two acknowledgements name entry {}", receipt.seq);
    }
    for receipt in results.iter().flat_map(|(_, t)| &t.duplicates) {
        let original = by_seq.get(&receipt.seq).copied();
        assert_eq!(original, Some(receipt.entry_hash.as_slice()), "a duplicate's receipt names entry {}", receipt.seq);
    }

    // The whole log, streamed: chained, hashing as stated, and at every new
    // sequence number the entry a receipt named.
    let mut stream = client
        .get_entries(pb::GetEntriesRequest { log_id: Vec::new(), from: 0, to: size })
        .await
        .expect("GetEntries")
        .into_inner();
    let mut tree = MemTree::new();
    let mut prev: Option<EntryHash> = None;
    let own_log = node.log_id();
    while let Some(wire) = stream.next().await {
        let wire = wire.expect("streamed entry");
        let seq = tree.size();
        let entry = Entry::from_pb(&wire).expect("entry decodes");
        assert_eq!(entry.seq, seq, "entries stream in order");
        entry.check_link(&own_log, prev.as_ref()).unwrap_or_else(|e| panic!("entry {seq}: chain: {e}"));
        let hash = entry.hash();
        if seq >= size_before {
            assert_eq!(by_seq.get(&seq).copied(), Some(&hash.0[..]), "entry {seq} is not the one acknowledged");
        }
        tree.append(hash.0).expect("tree grows");
        prev = Some(hash);
    }
    assert_eq!(tree.size(), size, "the node streamed every entry");

    // Every receipt read back by sequence number with GetEntry, each client
    // on its own connection.
    let fetches: Vec<_> = results
        .into_iter()
        .map(|(mut client, tally)| {
            tokio::spawn(async move {
                for receipt in &tally.receipts {
                    let request = pb::GetEntryRequest {
                        key: Some(pb::get_entry_request::Key::Seq(receipt.seq)),
                        ..Default::default()
                    };
                    let entry = tokio::time::timeout(HANG, client.get_entry(request))
                        .await
                        .unwrap_or_else(|_| panic!("GetEntry({}) hung", receipt.seq))
                        .unwrap_or_else(|e| panic!("GetEntry({}) of an acknowledged entry: {e}", receipt.seq))
                        .into_inner();
                    let entry = Entry::from_pb(&entry).expect("entry decodes");
                    assert_eq!((entry.seq, &entry.hash().0[..]), (receipt.seq, &receipt.entry_hash[..]), "GetEntry");
                }
                tally
            })
        })
        .collect();
    let mut tallies = Vec::with_capacity(CLIENTS);
    for fetch in fetches {
        tallies.push(fetch.await.expect("GetEntry task"));
    }

    // Every receipt's proof, into a checkpoint that the final log extends.
    let mut opened = HashMap::new();
    for receipt in tallies.iter().flat_map(|t| t.receipts.iter().chain(&t.duplicates)) {
        check_receipt(receipt, &vkey, &log_id, &tree, &mut opened);
    }

    // The node's own counts agree: every append and every refusal, and an
    // empty queue.
    let metrics_after = metrics(&node).await;
    let delta = |name: &str| metric(&metrics_after, name) - metric(&metrics_before, name);
    assert_eq!(delta("qtrace_appends_total "), accepted as f64, "appends counted by the node");
    let exhausted = "qtrace_append_refusals_total{code=\"RESOURCE_EXHAUSTED\"} ";
    // The node counts a refused unary append once and a refused batch once
    // per event: the refused events.
    assert_eq!(delta(exhausted), refused_events as f64, "back-pressure refusals counted by the node");
    assert_eq!(metric(&metrics_after, "qtrace_append_queue_depth "), 0.0, "events left in the queue");

    // Memory: below the start plus the cache, room for the rest and
    // sled's bookkeeping for the entries in the log, throughout the run.
    let ceiling = rss_start + CACHE_MB * MIB + RSS_ROOM_KIB + RSS_PER_ENTRY_KIB * size;
    assert!(
        peak < ceiling,
        "node RSS peaked at {:.1} MiB, above {:.1} MiB (start + --cache-mb {CACHE_MB} + {} MiB + {RSS_PER_ENTRY_KIB} \
         KiB x {size} entries)",
        mib(peak),
        mib(ceiling),
        RSS_ROOM_KIB / MIB
    );

    eprintln!(
        "load: checked {} receipts against {} checkpoints and the streamed log in {:.1} s",
        accepted + duplicates,
        opened.len(),
        checks_started.elapsed().as_secs_f64()
    );
    assert!(accepted > 0, "nothing was appended");
    assert!(
        refused_requests > 0,
        "no back-pressure in {seconds} s: the load never filled the queue of {QUEUE_LIMIT}; lower QUEUE_LIMIT"
    );
    assert!(node.stop().success(), "SIGTERM exits 0");
}
