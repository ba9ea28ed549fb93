//! Crash safety: a node killed with SIGKILL at random moments under
//! concurrent load, restarted on the same data directory again and again.
//!
//! After every restart the log must hold every acknowledged record at the
//! sequence number and hash its receipt gave, the chain and the tree must be
//! intact and consistent with every checkpoint a client was ever shown, and
//! every record whose request was cut off by the kill must be either wholly
//! there (entry, indexes, duplicate key) or wholly absent. At the end
//! `qtrace-node audit` re-verifies the whole store.
//!
//! `QTRACE_CRASH_CYCLES` sets the number of kills (default 20) and
//! `QTRACE_CRASH_SEED` replays a run (the seed is printed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qtrace_client::rpc::ledger_client::LedgerClient;
use qtrace_ledger::entry::Entry;
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::merkle::{self, MemTree};
use qtrace_ledger::note::{self, Verifier};
use qtrace_ledger::pb;
use qtrace_store::dedup_key;
use qtrace_tests::*;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

/// Concurrent clients, each with its own registered manufacturer key.
const CLIENTS: usize = 8;
const DEFAULT_CYCLES: usize = 20;

/// xorshift64*: enough randomness for timings and choices, and a seed that
/// replays a failing run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An acknowledged append.
#[derive(Debug, Clone)]
struct Acked {
    seq: u64,
    hash: [u8; 32],
    dedup: [u8; 32],
    /// The kill cycle in which it was acknowledged.
    cycle: usize,
}

/// What one client learnt during one cycle.
#[derive(Default)]
struct Outcomes {
    acked: Vec<Acked>,
    /// Signed checkpoints shown in receipts, by tree size.
    checkpoints: BTreeMap<u64, String>,
    /// Submissions whose request failed when the node died: each must be
    /// either wholly present or wholly absent afterwards.
    in_flight: Vec<pb::SignedEvent>,
    /// Submissions refused with a definite answer: must be absent.
    refused: Vec<(pb::SignedEvent, String)>,
}

impl Outcomes {
    fn merge(&mut self, other: Outcomes) {
        self.acked.extend(other.acked);
        self.checkpoints.extend(other.checkpoints);
        self.in_flight.extend(other.in_flight);
        self.refused.extend(other.refused);
    }

    /// Checks a receipt as a client would (inclusion proof into the signed
    /// checkpoint it carries) and records it.
    fn receipt(&mut self, vkey: &Verifier, signed: &pb::SignedEvent, receipt: &pb::AppendReceipt, cycle: usize) {
        let checkpoint = receipt.checkpoint.as_ref().expect("receipt has a checkpoint");
        let opened =
            note::open_checkpoint(&checkpoint.note, vkey, &[]).expect("receipt checkpoint is signed by the log");
        let proof = receipt.inclusion.as_ref().expect("receipt has an inclusion proof");
        let path: Vec<[u8; 32]> = proof.path.iter().map(|h| hash32(h)).collect();
        let hash = hash32(&receipt.entry_hash);
        assert_eq!(proof.tree_size, opened.checkpoint.size, "proof and checkpoint sizes");
        merkle::verify_inclusion(receipt.seq, proof.tree_size, &hash, &path, &opened.checkpoint.root)
            .expect("receipt inclusion proof verifies");
        self.checkpoints.insert(opened.checkpoint.size, checkpoint.note.clone());
        self.acked.push(Acked { seq: receipt.seq, hash, dedup: dedup_of(signed), cycle });
    }
}

fn hash32(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().expect("32-byte hash")
}

fn dedup_of(signed: &pb::SignedEvent) -> [u8; 32] {
    dedup_key(&hash32(&signed.signer), &signed.event)
}

/// A refusal that may hide a durable write (the connection died, or the
/// node failed mid-write) rather than a definite "no".
fn uncertain(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal | Code::DeadlineExceeded
    )
}

/// One client appending until the node dies under it: single appends and
/// small batches, each event a fresh lot. `stop` is set just after the
/// kill; the request sent after seeing it fails at the latest, so every
/// client has a request in flight when the node dies and none loops on.
async fn load(
    url: String,
    actor: Actor,
    vkey: Verifier,
    client_no: usize,
    cycle: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Outcomes {
    let mut out = Outcomes::default();
    let Ok(mut client) = LedgerClient::connect(url).await else { return out };
    let mut rng = Rng::new(seed);
    let mut n = 0usize;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let count = if rng.below(3) == 0 { 2 + rng.below(4) as usize } else { 1 };
        let events: Vec<pb::SignedEvent> = (0..count)
            .map(|_| {
                n += 1;
                actor.sign(&production(GTIN, &format!("K{cycle}-{client_no}-{n}")))
            })
            .collect();
        if count == 1 {
            let signed = events[0].clone();
            match client.append(pb::AppendRequest { event: Some(signed.clone()) }).await {
                Ok(receipt) => out.receipt(&vkey, &signed, &receipt.into_inner(), cycle),
                Err(status) if uncertain(&status) => {
                    out.in_flight.push(signed);
                    break;
                }
                Err(status) => out.refused.push((signed, status.to_string())),
            }
        } else {
            match client.append_batch(pb::AppendBatchRequest { events: events.clone() }).await {
                Ok(response) => {
                    let results = response.into_inner().results;
                    assert_eq!(results.len(), events.len(), "one result per event");
                    for (signed, result) in events.iter().zip(results) {
                        match result.outcome {
                            Some(pb::append_result::Outcome::Receipt(receipt)) => {
                                out.receipt(&vkey, signed, &receipt, cycle)
                            }
                            Some(pb::append_result::Outcome::Refusal(refusal))
                                if uncertain(&tonic::Status::new(refusal.code.into(), "")) =>
                            {
                                out.in_flight.push(signed.clone())
                            }
                            other => out.refused.push((signed.clone(), format!("{other:?}"))),
                        }
                    }
                }
                Err(status) if uncertain(&status) => {
                    out.in_flight.extend(events);
                    break;
                }
                Err(status) => out.refused.extend(events.into_iter().map(|e| (e, status.to_string()))),
            }
        }
        if stopping {
            break;
        }
    }
    out
}

/// Runs `call` on every item, up to 32 at a time, so that the calls'
/// round trips overlap on the one connection.
async fn concurrently<T, R, Fut>(items: Vec<T>, call: impl Fn(T) -> Fut) -> Vec<R>
where
    Fut: std::future::Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let mut results = Vec::with_capacity(items.len());
    let mut pending = Vec::new();
    for item in items {
        pending.push(tokio::spawn(call(item)));
        if pending.len() == 32 {
            for task in pending.drain(..) {
                results.push(task.await.expect("call task"));
            }
        }
    }
    for task in pending {
        results.push(task.await.expect("call task"));
    }
    results
}

/// What the test has verified of the log so far: every entry hash, chained
/// and signature-checked, and the tree they make.
struct Known {
    log_id: LogId,
    vkey: Verifier,
    hashes: Vec<[u8; 32]>,
    tree: MemTree,
    /// Dedup key (signer ‖ event) → sequence number, for every entry.
    by_dedup: HashMap<[u8; 32], u64>,
    /// The newest checkpoint verified against the tree.
    latest: Option<(u64, [u8; 32])>,
    /// Checkpoint sizes already proven consistent with a later verified one.
    proven: HashSet<u64>,
}

impl Known {
    /// Reads what the restarted node serves and checks it against everything
    /// the clients were told.
    async fn check(&mut self, client: &mut LedgerClient<Channel>, all: &Outcomes, cycle: usize) {
        // The newest checkpoint, signed by the log key, and the size it states.
        let latest = client.get_checkpoint(pb::GetCheckpointRequest::default()).await.expect("latest checkpoint");
        let latest = note::open_checkpoint(&latest.into_inner().note, &self.vkey, &[])
            .expect("the latest checkpoint is signed by the log key")
            .checkpoint;
        let info = client.get_log_info(pb::GetLogInfoRequest {}).await.expect("log info").into_inner();
        assert_eq!(info.size, latest.size, "cycle {cycle}: the log size is the latest checkpoint's size");
        let known = self.hashes.len() as u64;
        assert!(latest.size >= known, "cycle {cycle}: the log shrank from {known} to {} entries", latest.size);

        // The new entries: each linked to the one before, hashing to what
        // the node says, signed, and seen once.
        let mut stream = client
            .get_entries(pb::GetEntriesRequest { log_id: Vec::new(), from: known, to: latest.size })
            .await
            .expect("entries")
            .into_inner();
        while let Some(wire) = stream.next().await {
            let wire = wire.expect("entry");
            let seq = self.hashes.len() as u64;
            let entry = Entry::from_pb(&wire).expect("entry decodes");
            assert_eq!(entry.seq, seq, "cycle {cycle}: entries come in order");
            let prev = self.hashes.last().map(|h| EntryHash(*h));
            entry.check_link(&self.log_id, prev.as_ref()).expect("chain is intact");
            entry.verify_signature().expect("entry signature verifies");
            let hash = entry.hash().0;
            assert_eq!(wire.entry_hash, hash.to_vec(), "entry {seq}: stated hash is its hash");
            let dedup = dedup_key(&entry.signer, &entry.event);
            let twice = self.by_dedup.insert(dedup, seq);
            assert_eq!(twice, None, "entry {seq}: the same signed event is in the log twice");
            self.tree.append(hash).expect("tree grows");
            self.hashes.push(hash);
        }
        assert_eq!(self.hashes.len() as u64, latest.size, "cycle {cycle}: the node streamed every entry");
        assert_eq!(self.tree.root(), latest.root, "cycle {cycle}: the entries make the signed root");

        // Every receipt ever given names an entry at that place, with that hash.
        for acked in &all.acked {
            let found = self.hashes.get(acked.seq as usize);
            assert_eq!(found, Some(&acked.hash), "cycle {cycle}: acknowledged entry {} lost or changed", acked.seq);
            assert_eq!(self.by_dedup.get(&acked.dedup), Some(&acked.seq), "entry {}: dedup key", acked.seq);
        }
        // The node serves the receipts of the cycle just killed by sequence number.
        let recent: Vec<(u64, [u8; 32])> =
            all.acked.iter().filter(|a| a.cycle + 1 >= cycle).map(|a| (a.seq, a.hash)).collect();
        let fetched = concurrently(recent.clone(), |(seq, _)| {
            let mut client = client.clone();
            async move {
                client
                    .get_entry(pb::GetEntryRequest {
                        key: Some(pb::get_entry_request::Key::Seq(seq)),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await;
        for ((seq, hash), entry) in recent.into_iter().zip(fetched) {
            let entry = entry.unwrap_or_else(|e| panic!("cycle {cycle}: GetEntry({seq}) after the restart: {e}"));
            let entry = Entry::from_pb(&entry).expect("entry decodes");
            assert_eq!((entry.seq, entry.hash().0), (seq, hash), "cycle {cycle}: GetEntry({seq})");
        }

        // Every checkpoint a client saw is consistent with the latest: by a
        // proof from the node checked against the two signed roots, and by
        // the tree itself. Each is proven once; the latest of the restart
        // before is proven again to the new latest, which carries every
        // earlier proof forward.
        let mut to_prove: Vec<(u64, [u8; 32])> = Vec::new();
        for (size, text) in &all.checkpoints {
            if !self.proven.contains(size) {
                let cp = note::open_checkpoint(text, &self.vkey, &[]).expect("receipt checkpoint opens").checkpoint;
                to_prove.push((cp.size, cp.root));
            }
        }
        to_prove.extend(self.latest);
        let new_size = latest.size;
        let proofs = concurrently(to_prove.clone(), |(old_size, _)| {
            let mut client = client.clone();
            async move {
                client
                    .get_consistency_proof(pb::GetConsistencyProofRequest { old_size, new_size, ..Default::default() })
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await;
        for ((size, root), proof) in to_prove.into_iter().zip(proofs) {
            assert!(size <= new_size, "cycle {cycle}: a receipt showed size {size} beyond the log");
            assert_eq!(self.tree.root_at(size).expect("root at size"), root, "cycle {cycle}: checkpoint {size}");
            let proof = proof.unwrap_or_else(|e| panic!("consistency proof {size} -> {new_size}: {e}"));
            let path: Vec<[u8; 32]> = proof.proof.expect("proof").path.iter().map(|h| hash32(h)).collect();
            merkle::verify_consistency(size, new_size, &path, &root, &latest.root)
                .unwrap_or_else(|e| panic!("cycle {cycle}: checkpoint {size} is not consistent with {new_size}: {e}"));
            self.proven.insert(size);
        }
        self.latest = Some((latest.size, latest.root));

        // A definite refusal wrote nothing.
        for (signed, why) in &all.refused {
            assert!(!self.by_dedup.contains_key(&dedup_of(signed)), "a refused event ({why}) is in the log");
        }
    }
}

/// Settles the submissions cut off by a kill: each is wholly present
/// (entry, lot index and duplicate key agree) or wholly absent (no index
/// names it, and submitting it again appends it as new). Returns the
/// receipts of the resubmission, and (present, absent) counts.
async fn settle(
    client: &mut LedgerClient<Channel>,
    known: &Known,
    in_flight: Vec<pb::SignedEvent>,
    cycle: usize,
) -> (Outcomes, usize, usize) {
    let lots: Vec<String> = in_flight
        .iter()
        .map(|signed| {
            let event = qtrace_ledger::event::decode_event(&signed.event).expect("our own event").event;
            match event.subject.and_then(|s| s.kind) {
                Some(pb::subject::Kind::Product(p)) => p.lot,
                other => panic!("unexpected subject {other:?}"),
            }
        })
        .collect();
    let indexed = concurrently(lots.clone(), |lot| {
        let mut client = client.clone();
        async move {
            let code = format!("(01){GTIN}(10){lot}");
            let request =
                pb::QueryRequest { key: Some(pb::query_request::Key::ProductCode(code)), ..Default::default() };
            client.query(request).await.map(|r| r.into_inner().entries.iter().map(|e| e.seq).collect::<Vec<u64>>())
        }
    })
    .await;
    let mut present = Vec::new();
    for ((signed, lot), indexed) in in_flight.iter().zip(lots).zip(indexed) {
        let seq = known.by_dedup.get(&dedup_of(signed)).copied();
        let indexed = indexed.expect("query by lot");
        assert_eq!(
            indexed,
            seq.into_iter().collect::<Vec<_>>(),
            "cycle {cycle}: lot {lot}: index and entries disagree"
        );
        present.push(seq);
    }
    let mut out = Outcomes::default();
    let (n_present, n_absent) = (present.iter().flatten().count(), present.iter().filter(|p| p.is_none()).count());
    for chunk in in_flight.chunks(500).zip(present.chunks(500)) {
        let (events, present) = chunk;
        let results = client
            .append_batch(pb::AppendBatchRequest { events: events.to_vec() })
            .await
            .expect("resubmitting the cut-off events")
            .into_inner()
            .results;
        for ((signed, was), result) in events.iter().zip(present).zip(results) {
            let Some(pb::append_result::Outcome::Receipt(receipt)) = result.outcome else {
                panic!("cycle {cycle}: resubmission refused: {result:?}");
            };
            match was {
                Some(seq) => {
                    assert!(receipt.duplicate, "cycle {cycle}: a present event was appended again");
                    assert_eq!(receipt.seq, *seq, "cycle {cycle}: the duplicate names the stored entry");
                }
                None => assert!(!receipt.duplicate, "cycle {cycle}: an absent event is called a duplicate"),
            }
            out.receipt(&known.vkey, signed, &receipt, cycle);
        }
    }
    (out, n_present, n_absent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_concurrent_load_loses_no_acknowledged_record() {
    let cycles: usize =
        std::env::var("QTRACE_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CYCLES);
    let seed: u64 =
        std::env::var("QTRACE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| now_millis() as u64);
    eprintln!("crash test: {cycles} cycles, QTRACE_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let started = Instant::now();

    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let mut node = Node::start_in(&data, &[]);
    let vkey = node.vkey();
    let mut client = node.client().await;
    let root = Actor { key: node.authority_key(), uscc: REGULATOR.into() };
    root.append(&mut client, register_org(FACTORY, "Example Dairy Co. (示例乳业)", &[pb::Role::Manufacturer], &[]))
        .await
        .expect("register the manufacturer");
    let actors: Vec<Actor> = (0..CLIENTS).map(|i| Actor::new(40 + i as u8, FACTORY)).collect();
    for (i, actor) in actors.iter().enumerate() {
        root.append(&mut client, register_key(actor, &format!("操作员{i}"), "生产记录员")).await.expect("register key");
    }

    let mut known = Known {
        log_id: node.log_id(),
        vkey: vkey.clone(),
        hashes: Vec::new(),
        tree: MemTree::new(),
        by_dedup: HashMap::new(),
        latest: None,
        proven: HashSet::new(),
    };
    known.check(&mut client, &Outcomes::default(), 0).await;
    let setup_size = known.hashes.len();
    let mut all = Outcomes::default();
    let (mut total_present, mut total_absent) = (0, 0);

    for cycle in 1..=cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = actors
            .iter()
            .enumerate()
            .map(|(i, actor)| {
                tokio::spawn(load(node.url.clone(), actor.clone(), vkey.clone(), i, cycle, rng.next(), stop.clone()))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100 + rng.below(300))).await;
        node.kill();
        stop.store(true, Ordering::Release);
        let mut this_cycle = Outcomes::default();
        for task in tasks {
            let out = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a client hung after the kill")
                .expect("client task");
            this_cycle.merge(out);
        }
        let in_flight = std::mem::take(&mut this_cycle.in_flight);
        let acked_now = this_cycle.acked.len();
        all.merge(this_cycle);

        node = Node::start_in(&data, &[]);
        assert_eq!(node.vkey().to_string(), vkey.to_string(), "same log key after the restart");
        let mut client = node.client().await;
        known.check(&mut client, &all, cycle).await;
        let n_in_flight = in_flight.len();
        let (resubmitted, present, absent) = settle(&mut client, &known, in_flight, cycle).await;
        total_present += present;
        total_absent += absent;
        all.merge(resubmitted);
        eprintln!(
            "cycle {cycle}: {acked_now} acknowledged, {n_in_flight} cut off ({present} durable, {absent} absent), log size {}",
            known.hashes.len()
        );
    }

    // The last resubmissions, and nothing but submitted events in the log.
    let mut client = node.client().await;
    known.check(&mut client, &all, cycles + 1).await;
    let submitted: HashSet<[u8; 32]> = all.acked.iter().map(|a| a.dedup).collect();
    for (dedup, seq) in &known.by_dedup {
        assert!(*seq < setup_size as u64 || submitted.contains(dedup), "entry {seq} was never acknowledged");
    }
    assert!(all.acked.len() > cycles, "the load appended too little to mean anything: {}", all.acked.len());
    assert!(total_present + total_absent > 0, "no request was ever cut off by a kill");
    let size = known.hashes.len();
    assert!(node.stop().success(), "SIGTERM exits 0");

    // The whole store, re-verified offline: no partial entry anywhere.
    let (passed, output) = audit(&data);
    assert!(passed, "audit after {cycles} kills failed:\n{output}");
    assert!(output.contains(&format!("{size} entries")), "audit covered the whole log: {output}");
    eprintln!(
        "crash test: {} receipts, {total_present} cut-off records durable, {total_absent} absent, {size} entries, {:.1} s",
        all.acked.len(),
        started.elapsed().as_secs_f64()
    );
}
