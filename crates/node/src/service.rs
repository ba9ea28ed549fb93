//! The `qtrace.v1.Ledger` gRPC service.

use std::pin::Pin;
use std::sync::Arc;

use qtrace_ledger::entry::Entry;
use qtrace_ledger::event::{IndexKey, decode_event};
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::ids::{Date, Gtin, ProductCode, Uscc};
use qtrace_ledger::note::Signer;
use qtrace_ledger::pb;
use qtrace_ledger::signing::PublicKey;
use qtrace_ledger::trace::{self, Direction, Limits};
use qtrace_ledger::verdict::{self, Trust};
use qtrace_ledger::view::{RecordId, Recorder, View};
use qtrace_rpc::rpc::ledger_server::Ledger;
use qtrace_store::LogStore;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::appender::{Appender, Logged, Verified};
use crate::federation::Federation;
use crate::logs::Logs;
use crate::status::{self, Failure};
use crate::storeview::StoreView;

/// Largest AppendBatch accepted.
pub const MAX_BATCH: usize = 1_000;
/// Largest and default Query page.
pub const MAX_PAGE: usize = 1_000;
pub const DEFAULT_PAGE: usize = 100;
/// Batches at least this large verify signatures on every core.
const PARALLEL_VERIFY_MIN: usize = 64;

pub struct LedgerService {
    /// This node's own log.
    pub log: Arc<LogStore>,
    /// Own and mirrored logs.
    pub logs: Arc<Logs>,
    pub federation: Arc<Federation>,
    /// Witness policy for verdicts (k of the peers).
    pub witness_quorum: usize,
    pub appender: Appender,
    pub entries: broadcast::Sender<Arc<pb::Entry>>,
    /// Default and largest trace limits.
    pub trace_limits: Limits,
    pub origin: String,
    pub signer: Signer,
}

impl LedgerService {
    fn log_id(&self) -> LogId {
        self.log.log_id()
    }

    /// Trace limits for a request: 0 means the node's default, and more than
    /// the node's limit is refused.
    fn limits(&self, max_depth: u32, max_nodes: u32) -> Result<Limits, Failure> {
        let max = self.trace_limits;
        let depth = if max_depth == 0 { max.max_depth } else { max_depth };
        let nodes = if max_nodes == 0 { max.max_nodes } else { max_nodes as usize };
        if depth > max.max_depth || nodes > max.max_nodes {
            return Err(Failure::Invalid(format!(
                "max_depth/max_nodes: this node traces at most {} steps and {} records",
                max.max_depth, max.max_nodes
            )));
        }
        Ok(Limits { max_depth: depth, max_nodes: nodes })
    }

    /// What verdicts need, shared with the HTTP resolver.
    pub fn verdicts(&self) -> Verdicts {
        Verdicts {
            federation: self.federation.clone(),
            witness_quorum: self.witness_quorum,
            trace_limits: self.trace_limits,
        }
    }

    async fn verdict(
        &self,
        request: pb::VerifyRequest,
        bundle: bool,
    ) -> Result<(verdict::Report, Option<pb::Bundle>), Failure> {
        self.verdicts().compute(request, bundle).await
    }

    /// Turns a writer outcome into a receipt with an inclusion proof.
    fn receipt(&self, logged: Logged) -> Result<pb::AppendReceipt, Failure> {
        let path = self.log.inclusion_proof(logged.seq, logged.tree_size)?;
        let checkpoint = pb::Checkpoint {
            note: logged.checkpoint.to_string(),
            origin: logged.checkpoint.lines().next().unwrap_or_default().to_string(),
            size: logged.tree_size,
            root: logged.root.to_vec(),
        };
        Ok(pb::AppendReceipt {
            log_id: self.log_id().0.to_vec(),
            seq: logged.seq,
            entry_hash: logged.entry_hash.0.to_vec(),
            inclusion: Some(pb::InclusionProof {
                leaf_index: logged.seq,
                tree_size: logged.tree_size,
                path: path.iter().map(|h| h.to_vec()).collect(),
            }),
            checkpoint: Some(checkpoint),
            duplicate: logged.duplicate,
            logged_at_micros: logged.logged_at_micros,
        })
    }

    /// The log a request names: empty means this node's own.
    fn log_for(&self, log_id: &[u8]) -> Result<Arc<LogStore>, Failure> {
        if log_id.is_empty() {
            return Ok(self.log.clone());
        }
        let id = LogId::from_slice(log_id).map_err(|e| Failure::Invalid(e.to_string()))?;
        self.logs.get(&id).ok_or_else(|| Failure::NotFound(format!("this node neither writes nor mirrors log {id}")))
    }

    /// The log and sequence number a request's key names. An entry hash
    /// with no log named finds the record in any log this node holds, its
    /// own first, then the mirrors by log id.
    fn locate(&self, log_id: &[u8], seq: Option<u64>, hash: Option<&[u8]>) -> Result<(Arc<LogStore>, u64), Failure> {
        if let (true, None, Some(bytes)) = (log_id.is_empty(), seq, hash) {
            let hash = EntryHash::from_slice(bytes).map_err(|e| Failure::Invalid(e.to_string()))?;
            for log in self.logs.all() {
                if let Some(seq) = log.seq_of(&hash)? {
                    return Ok((log, seq));
                }
            }
            return Err(Failure::NotFound(format!("no entry has hash {hash} in any log this node holds")));
        }
        let log = self.log_for(log_id)?;
        let seq = Self::find_seq(&log, seq, hash)?;
        Ok((log, seq))
    }

    fn find_seq(log: &LogStore, seq: Option<u64>, hash: Option<&[u8]>) -> Result<u64, Failure> {
        match (seq, hash) {
            (Some(seq), _) => {
                if seq >= log.head().size {
                    return Err(Failure::NotFound(format!(
                        "entry {seq} does not exist (log size {})",
                        log.head().size
                    )));
                }
                Ok(seq)
            }
            (None, Some(hash)) => {
                let hash = EntryHash::from_slice(hash).map_err(|e| Failure::Invalid(e.to_string()))?;
                log.seq_of(&hash)?.ok_or_else(|| Failure::NotFound(format!("no entry has hash {hash}")))
            }
            (None, None) => Err(Failure::Invalid("key: give a sequence number or an entry hash".into())),
        }
    }
}

/// The one place verdicts are computed: the Verify and GetBundle RPCs and
/// the HTTP resolver all come here, so a consumer's page and a regulator's
/// `qtrace verify` cannot disagree.
#[derive(Clone)]
pub struct Verdicts {
    pub federation: Arc<Federation>,
    /// Witness policy (k of the peers).
    pub witness_quorum: usize,
    pub trace_limits: Limits,
}

impl Verdicts {
    pub fn trust(&self) -> Trust {
        Trust { logs: self.federation.trusted_logs(), witnesses: self.federation.witnesses() }
    }

    /// Computes a verdict over a snapshot of the store, and with `bundle`
    /// the evidence bundle behind it.
    pub async fn compute(
        &self,
        request: pb::VerifyRequest,
        bundle: bool,
    ) -> Result<(verdict::Report, Option<pb::Bundle>), Failure> {
        let federation = self.federation.clone();
        let trust = self.trust();
        let limits = self.trace_limits;
        let quorum = self.witness_quorum;
        tokio::task::spawn_blocking(move || {
            let view = indexed_view(&federation)?;
            let options = verdict::Options { limits, include_corrected: request.raw, witness_quorum: quorum };
            verdict_over(&view, &trust, &request, options, bundle)
        })
        .await
        .map_err(|_| Failure::Internal("verdict failed to run".into()))?
    }

    /// Runs `read` on a blocking thread over the same snapshot view verdicts
    /// use (each log fixed at the published registry snapshot's cut).
    pub async fn with_view<T: Send + 'static>(
        &self,
        read: impl FnOnce(&StoreView<'_>, &Trust) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        let federation = self.federation.clone();
        let trust = self.trust();
        tokio::task::spawn_blocking(move || {
            let view = indexed_view(&federation)?;
            read(&view, &trust)
        })
        .await
        .map_err(|_| Failure::Internal("reading the store failed to run".into()))?
    }
}

/// Decodes one submission and checks its signature, outside the writer
/// (not to be confused with the Verify RPC, which computes a verdict).
pub fn check_submission(signed: &pb::SignedEvent) -> Result<Verified, Failure> {
    let _span = tracing::debug_span!("decode_verify", bytes = signed.event.len()).entered();
    let event = decode_event(&signed.event).map_err(Failure::Event)?;
    let signer = PublicKey::from_slice(&signed.signer).map_err(Failure::Signature)?;
    signer.verify_event(&signed.event, &signed.signature).map_err(Failure::Signature)?;
    let signature: [u8; 64] =
        signed.signature.as_slice().try_into().map_err(|_| Failure::Invalid("signature must be 64 bytes".into()))?;
    Ok(Verified { event_bytes: signed.event.clone(), signer: signer.to_bytes(), signature, event })
}

/// [`check_submission`] for many submissions, spread over the available cores.
fn check_submissions(events: &[pb::SignedEvent]) -> Vec<Result<Verified, Failure>> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if events.len() < PARALLEL_VERIFY_MIN || threads == 1 {
        return events.iter().map(check_submission).collect();
    }
    let chunk = events.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = events
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(check_submission).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| vec![Err(Failure::Internal("signature verification panicked".into()))])
            })
            .collect()
    })
}

/// The wire form of a stored checkpoint; origin and root are given for
/// convenience (a verifier parses the note itself).
pub fn checkpoint_pb(note_text: &str, size: u64, log: &LogStore) -> Result<pb::Checkpoint, Failure> {
    let root = log.root(size)?;
    let origin = note_text.lines().next().unwrap_or_default().to_string();
    Ok(pb::Checkpoint { note: note_text.to_string(), origin, size, root: root.to_vec() })
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<pb::Entry, Status>> + Send>>;

#[tonic::async_trait]
impl Ledger for LedgerService {
    async fn append(&self, request: Request<pb::AppendRequest>) -> Result<Response<pb::AppendReceipt>, Status> {
        let signed =
            request.into_inner().event.ok_or_else(|| status::refusal(Failure::Invalid("event: is required".into())))?;
        // Announced before the signature check, so a writer about to commit
        // waits a moment for this event instead of flushing without it.
        let arrival = self.appender.announce();
        let verified = check_submission(&signed).map_err(status::refusal)?;
        let mut results = self.appender.submit(vec![verified], Some(arrival)).await;
        let logged =
            results.pop().ok_or_else(|| status::to_status(Failure::Internal("no result from the writer".into())))?;
        let logged = logged.map_err(|e| status::refusal(Failure::Append(e)))?;
        Ok(Response::new(self.receipt(logged).map_err(status::to_status)?))
    }

    async fn append_batch(
        &self,
        request: Request<pb::AppendBatchRequest>,
    ) -> Result<Response<pb::AppendBatchResponse>, Status> {
        let events = request.into_inner().events;
        if events.len() > MAX_BATCH {
            return Err(status::refusal(Failure::Invalid(format!(
                "events: {} events in one batch; at most {MAX_BATCH} are accepted",
                events.len()
            ))));
        }
        let checked = tokio::task::spawn_blocking(move || check_submissions(&events))
            .await
            .map_err(|_| status::to_status(Failure::Internal("signature verification failed to run".into())))?;
        let mut outcomes: Vec<Option<Result<pb::AppendReceipt, Failure>>> = Vec::with_capacity(checked.len());
        let mut to_submit = Vec::new();
        let mut positions = Vec::new();
        for (i, result) in checked.into_iter().enumerate() {
            match result {
                Ok(verified) => {
                    to_submit.push(verified);
                    positions.push(i);
                    outcomes.push(None);
                }
                Err(failure) => outcomes.push(Some(Err(failure))),
            }
        }
        if !to_submit.is_empty() {
            let results = self.appender.submit(to_submit, None).await;
            for (position, result) in positions.into_iter().zip(results) {
                outcomes[position] = Some(result.map_err(Failure::Append).and_then(|logged| self.receipt(logged)));
            }
        }
        let results = outcomes
            .into_iter()
            .map(|outcome| {
                let outcome = match outcome {
                    Some(Ok(receipt)) => pb::append_result::Outcome::Receipt(receipt),
                    Some(Err(failure)) => {
                        let status = status::refusal(failure);
                        pb::append_result::Outcome::Refusal(pb::Refusal {
                            code: status.code() as i32,
                            message: status.message().to_string(),
                        })
                    }
                    None => pb::append_result::Outcome::Refusal(pb::Refusal {
                        code: tonic::Code::Internal as i32,
                        message: "no result".into(),
                    }),
                };
                pb::AppendResult { outcome: Some(outcome) }
            })
            .collect();
        Ok(Response::new(pb::AppendBatchResponse { results }))
    }

    async fn get_entry(&self, request: Request<pb::GetEntryRequest>) -> Result<Response<pb::Entry>, Status> {
        use pb::get_entry_request::Key;
        let request = request.into_inner();
        let (log, seq) = match request.key {
            Some(Key::Seq(seq)) => self.locate(&request.log_id, Some(seq), None),
            Some(Key::EntryHash(hash)) => self.locate(&request.log_id, None, Some(&hash)),
            None => self.locate(&request.log_id, None, None),
        }
        .map_err(status::to_status)?;
        let entry = log
            .entry(seq)
            .map_err(|e| status::to_status(e.into()))?
            .ok_or_else(|| status::to_status(Failure::NotFound(format!("entry {seq} does not exist"))))?;
        Ok(Response::new(entry.to_pb(&log.log_id())))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProofResponse>, Status> {
        use pb::get_inclusion_proof_request::Key;
        let request = request.into_inner();
        let (log, seq) = match request.key {
            Some(Key::Seq(seq)) => self.locate(&request.log_id, Some(seq), None),
            Some(Key::EntryHash(hash)) => self.locate(&request.log_id, None, Some(&hash)),
            None => self.locate(&request.log_id, None, None),
        }
        .map_err(status::to_status)?;
        let (size, note) = if request.tree_size == 0 {
            let (size, note) = log.latest_checkpoint().map_err(|e| status::to_status(e.into()))?.ok_or_else(|| {
                status::to_status(Failure::FailedPrecondition("the log has no checkpoint yet".into()))
            })?;
            (size, Some(note))
        } else {
            let note = log.checkpoint(request.tree_size).map_err(|e| status::to_status(e.into()))?;
            (request.tree_size, note)
        };
        if seq >= size {
            return Err(status::to_status(Failure::Invalid(format!(
                "tree_size: entry {seq} is not in a tree of {size} entries"
            ))));
        }
        let path = log.inclusion_proof(seq, size).map_err(|e| status::to_status(e.into()))?;
        let entry_hash = log
            .entry(seq)
            .map_err(|e| status::to_status(e.into()))?
            .map(|e| e.hash())
            .ok_or_else(|| status::to_status(Failure::NotFound(format!("entry {seq} does not exist"))))?;
        let checkpoint = match note {
            Some(note) => Some(checkpoint_pb(&note, size, &log).map_err(status::to_status)?),
            None => None,
        };
        Ok(Response::new(pb::InclusionProofResponse {
            proof: Some(pb::InclusionProof {
                leaf_index: seq,
                tree_size: size,
                path: path.iter().map(|h| h.to_vec()).collect(),
            }),
            checkpoint,
            entry_hash: entry_hash.0.to_vec(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProofResponse>, Status> {
        let request = request.into_inner();
        let log = self.log_for(&request.log_id).map_err(status::to_status)?;
        let head = log.head();
        let new_size = if request.new_size == 0 { head.size } else { request.new_size };
        if request.old_size == 0 || request.old_size > new_size || new_size > head.size {
            return Err(status::to_status(Failure::Invalid(format!(
                "old_size and new_size must satisfy 1 <= old_size ({}) <= new_size ({new_size}) <= log size ({})",
                request.old_size, head.size
            ))));
        }
        let path = log.consistency_proof(request.old_size, new_size).map_err(|e| status::to_status(e.into()))?;
        let old_root = log.root(request.old_size).map_err(|e| status::to_status(e.into()))?;
        let new_root = log.root(new_size).map_err(|e| status::to_status(e.into()))?;
        Ok(Response::new(pb::ConsistencyProofResponse {
            proof: Some(pb::ConsistencyProof {
                old_size: request.old_size,
                new_size,
                path: path.iter().map(|h| h.to_vec()).collect(),
            }),
            old_root: old_root.to_vec(),
            new_root: new_root.to_vec(),
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let request = request.into_inner();
        let log = self.log_for(&request.log_id).map_err(status::to_status)?;
        let size = request.size;
        let (size, note) = if size == 0 {
            log.latest_checkpoint()
                .map_err(|e| status::to_status(e.into()))?
                .ok_or_else(|| status::to_status(Failure::FailedPrecondition("the log has no checkpoint yet".into())))?
        } else {
            let note = log.checkpoint(size).map_err(|e| status::to_status(e.into()))?.ok_or_else(|| {
                status::to_status(Failure::NotFound(format!("no checkpoint was signed at size {size}")))
            })?;
            (size, note)
        };
        Ok(Response::new(checkpoint_pb(&note, size, &log).map_err(status::to_status)?))
    }

    async fn query(&self, request: Request<pb::QueryRequest>) -> Result<Response<pb::QueryResponse>, Status> {
        use pb::query_request::Key;
        let request = request.into_inner();
        let index = match request.key {
            None => {
                return Err(status::to_status(Failure::Invalid(
                    "key: give a product code, product, certificate, organisation or record".into(),
                )));
            }
            Some(Key::ProductCode(code)) => {
                let code = ProductCode::parse(&code)
                    .map_err(|e| status::to_status(Failure::Invalid(format!("product_code: {e}"))))?;
                product_index(
                    code.gtin,
                    code.lot.map(|l| l.as_str().to_string()),
                    code.serial.map(|s| s.as_str().to_string()),
                )
                .map_err(status::to_status)?
            }
            Some(Key::Product(p)) => {
                let gtin = Gtin::parse(&p.gtin)
                    .map_err(|e| status::to_status(Failure::Invalid(format!("product.gtin: {e}"))))?;
                product_index(gtin, Some(p.lot).filter(|l| !l.is_empty()), Some(p.serial).filter(|s| !s.is_empty()))
                    .map_err(status::to_status)?
            }
            Some(Key::Certificate(c)) => {
                let issuer = Uscc::parse(&c.issuer_uscc)
                    .map_err(|e| status::to_status(Failure::Invalid(format!("certificate.issuer_uscc: {e}"))))?;
                IndexKey::Certificate(issuer, c.number)
            }
            Some(Key::OrganisationUscc(u)) => IndexKey::Organisation(
                Uscc::parse(&u).map_err(|e| status::to_status(Failure::Invalid(format!("organisation_uscc: {e}"))))?,
            ),
            Some(Key::ChildrenOf(r)) => {
                let log = LogId::from_slice(&r.log_id)
                    .map_err(|e| status::to_status(Failure::Invalid(format!("children_of: {e}"))))?;
                IndexKey::Parent(log, r.seq)
            }
        };
        let page = match request.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        // The page token is "<log id hex>:<last seq>": logs are walked in
        // a fixed order (own first, then mirrors by id), each ascending.
        let logs = self.logs.all();
        let (mut start_log, mut after) = (0usize, None);
        if !request.page_token.is_empty() {
            let bad = || status::to_status(Failure::Invalid("page_token: not a token this node issued".into()));
            let (log_hex, seq) = request.page_token.split_once(':').ok_or_else(bad)?;
            let log_id = LogId::from_hex(log_hex).map_err(|_| bad())?;
            start_log = logs.iter().position(|l| l.log_id() == log_id).ok_or_else(bad)?;
            after = Some(seq.parse::<u64>().map_err(|_| bad())?);
        }
        // One more than the page tells whether another page follows.
        let mut found: Vec<(usize, u64)> = Vec::new();
        for (i, log) in logs.iter().enumerate().skip(start_log) {
            let from = if i == start_log { after } else { None };
            let want = page + 1 - found.len();
            let seqs = log.lookup(&index, from, want).map_err(|e| status::to_status(e.into()))?;
            found.extend(seqs.into_iter().map(|seq| (i, seq)));
            if found.len() > page {
                break;
            }
        }
        let more = found.len() > page;
        let mut entries = Vec::with_capacity(page.min(found.len()));
        for (i, seq) in found.iter().take(page) {
            if let Some(entry) = logs[*i].entry(*seq).map_err(|e| status::to_status(e.into()))? {
                entries.push(entry.to_pb(&logs[*i].log_id()));
            }
        }
        let next_page_token = match (more, found.get(page.saturating_sub(1))) {
            (true, Some((i, seq))) => format!("{}:{seq}", logs[*i].log_id()),
            _ => String::new(),
        };
        Ok(Response::new(pb::QueryResponse { entries, next_page_token }))
    }

    type SubscribeStream = EntryStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let from = request.into_inner().from_seq;
        let mut live = self.entries.subscribe();
        let log = self.log.clone();
        let log_id = self.log_id();
        let (tx, rx) = mpsc::channel::<Result<pb::Entry, Status>>(256);
        tokio::spawn(async move {
            let mut next = from;
            loop {
                // Catch up from the store, then follow the live feed; fall
                // back to the store whenever the feed skips ahead or lags.
                let size = log.head().size;
                while next < size {
                    let until = size.min(next.saturating_add(256));
                    let chunk: Vec<Entry> = match log.range(next, until).collect::<Result<_, _>>() {
                        Ok(chunk) => chunk,
                        Err(e) => {
                            let _ = tx.send(Err(status::to_status(e.into()))).await;
                            return;
                        }
                    };
                    for entry in chunk {
                        if tx.send(Ok(entry.to_pb(&log_id))).await.is_err() {
                            return;
                        }
                    }
                    next = until;
                }
                match live.recv().await {
                    Ok(entry) if entry.seq == next => {
                        if tx.send(Ok((*entry).clone())).await.is_err() {
                            return;
                        }
                        next += 1;
                    }
                    Ok(entry) if entry.seq < next => {}
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn trace(&self, request: Request<pb::TraceRequest>) -> Result<Response<pb::TraceResponse>, Status> {
        let request = request.into_inner();
        let direction = match pb::TraceDirection::try_from(request.direction) {
            Ok(pb::TraceDirection::Upstream) => Direction::Upstream,
            Ok(pb::TraceDirection::Downstream) => Direction::Downstream,
            _ => return Err(status::to_status(Failure::Invalid("direction: must be upstream or downstream".into()))),
        };
        let limits = self.limits(request.max_depth, request.max_nodes).map_err(status::to_status)?;
        let start = request.start.ok_or_else(|| status::to_status(Failure::Invalid("start: is required".into())))?;
        let federation = self.federation.clone();
        let trace = tokio::task::spawn_blocking(move || -> Result<pb::TraceResponse, Failure> {
            let view = indexed_view(&federation)?;
            let starts = trace_starts(&view, &start)?;
            let trace = trace::trace(&view, &starts, direction, limits, false).map_err(Failure::Trace)?;
            Ok(pb::TraceResponse {
                nodes: trace
                    .nodes
                    .iter()
                    .map(|n| pb::TraceNode {
                        entry: Some(n.record.entry.to_pb(&n.record.id.log)),
                        depth: n.depth,
                        via: n.via.map(|v| v as u32),
                        relation: n.relation.name().to_string(),
                    })
                    .collect(),
                lots: trace
                    .lots
                    .iter()
                    .map(|(g, l)| pb::ProductKey { gtin: g.to_string(), lot: l.to_string(), serial: String::new() })
                    .collect(),
            })
        })
        .await
        .map_err(|_| status::to_status(Failure::Internal("trace failed to run".into())))?
        .map_err(status::to_status)?;
        Ok(Response::new(trace))
    }

    async fn verify(&self, request: Request<pb::VerifyRequest>) -> Result<Response<pb::VerdictReport>, Status> {
        let (report, _) = self.verdict(request.into_inner(), false).await.map_err(status::to_status)?;
        Ok(Response::new(verdict::to_pb(&report)))
    }

    async fn get_bundle(&self, request: Request<pb::VerifyRequest>) -> Result<Response<pb::Bundle>, Status> {
        let (_, bundle) = self.verdict(request.into_inner(), true).await.map_err(status::to_status)?;
        bundle.map(Response::new).ok_or_else(|| status::to_status(Failure::Internal("no bundle was built".into())))
    }

    async fn get_log_info(&self, _: Request<pb::GetLogInfoRequest>) -> Result<Response<pb::LogInfo>, Status> {
        Ok(Response::new(pb::LogInfo {
            log_id: self.log_id().0.to_vec(),
            origin: self.origin.clone(),
            vkey: self.signer.verifier().to_string(),
            size: self.log.head().size,
            max_batch: MAX_BATCH as u32,
            peer_vkeys: self.federation.peers.iter().map(|p| p.vkey.to_string()).collect(),
        }))
    }

    type GetEntriesStream = EntryStream;

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let request = request.into_inner();
        let log = self.log_for(&request.log_id).map_err(status::to_status)?;
        let size = log.head().size;
        let to = if request.to == 0 { size } else { request.to.min(size) };
        if request.from > to {
            return Err(status::to_status(Failure::Invalid(format!("from ({}) is past to ({to})", request.from))));
        }
        let (tx, rx) = mpsc::channel::<Result<pb::Entry, Status>>(1_024);
        tokio::task::spawn_blocking(move || {
            let log_id = log.log_id();
            for entry in log.range(request.from, to) {
                let item = entry.map(|e| e.to_pb(&log_id)).map_err(|e| status::to_status(e.into()));
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_logs(&self, _: Request<pb::ListLogsRequest>) -> Result<Response<pb::ListLogsResponse>, Status> {
        let mut logs = Vec::new();
        for log in self.logs.all() {
            let checkpoint = match log.latest_checkpoint().map_err(|e| status::to_status(e.into()))? {
                Some((size, note)) => Some(checkpoint_pb(&note, size, &log).map_err(status::to_status)?),
                None => None,
            };
            logs.push(pb::LogSummary {
                log_id: log.log_id().0.to_vec(),
                checkpoint,
                own: log.log_id() == self.log_id(),
                size: log.head().size,
            });
        }
        Ok(Response::new(pb::ListLogsResponse { logs }))
    }

    async fn add_cosignature(
        &self,
        request: Request<pb::AddCosignatureRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let request = request.into_inner();
        let federation = self.federation.clone();
        let note = tokio::task::spawn_blocking(move || federation.add_cosignature(request.size, &request.cosignature))
            .await
            .map_err(|_| status::to_status(Failure::Internal("cosignature failed to run".into())))?
            .map_err(|e| status::to_status(Failure::Cosignature(e)))?;
        Ok(Response::new(checkpoint_pb(&note, request.size, &self.log).map_err(status::to_status)?))
    }

    async fn get_equivocations(
        &self,
        request: Request<pb::GetEquivocationsRequest>,
    ) -> Result<Response<pb::EquivocationList>, Status> {
        let request = request.into_inner();
        let all = self.federation.equivocations.read().unwrap_or_else(|p| p.into_inner()).clone();
        let equivocations =
            all.into_iter().filter(|e| request.log_id.is_empty() || e.log_id == request.log_id).collect();
        Ok(Response::new(pb::EquivocationList { equivocations }))
    }
}

/// The verdict a request asks for: the request's certificate questions
/// parsed here, the subject dispatched by `verdict::verify_subject`.
/// A snapshot view (the published registry and its cut), once the follower
/// of every log has indexed what the view can see (each waits up to its
/// read bound; past it UNAVAILABLE, saying how far indexing lags).
fn indexed_view(federation: &Federation) -> Result<StoreView<'_>, Failure> {
    for log in federation.logs.all() {
        log.wait_indexed(log.head().size, log.limits().read_wait)?;
    }
    StoreView::new(federation).map_err(|e| Failure::Internal(e.to_string()))
}

/// The verdict over one view, and with `bundle` the evidence bundle built
/// from the same view (so the bundle opened offline gives the same verdict).
pub fn verdict_over(
    view: &StoreView<'_>,
    trust: &Trust,
    request: &pb::VerifyRequest,
    options: verdict::Options,
    bundle: bool,
) -> Result<(verdict::Report, Option<pb::Bundle>), Failure> {
    let subject = request.subject.clone().ok_or_else(|| Failure::Invalid("subject: is required".into()))?;
    if !bundle {
        let report = run_verdict(view, trust, request, options)?;
        return Ok((report, None));
    }
    let recorder = Recorder::new(view);
    let report = run_verdict(&recorder, trust, request, options)?;
    let touched = recorder.touched();
    let built = qtrace_ledger::bundle::build(view, &touched, subject, crate::setup::now_micros())
        .map_err(|e| Failure::Internal(e.to_string()))?;
    Ok((report, Some(built)))
}

fn run_verdict(
    view: &dyn View,
    trust: &Trust,
    request: &pb::VerifyRequest,
    options: verdict::Options,
) -> Result<verdict::Report, Failure> {
    let at = if request.at.is_empty() {
        None
    } else {
        Some(Date::parse_iso(&request.at).map_err(|e| Failure::Invalid(format!("at: {e}")))?)
    };
    let product = if request.for_product.is_empty() {
        None
    } else {
        Some(
            verdict::product_code(&request.for_product)
                .map_err(|e| Failure::Invalid(format!("for_product: {e}")))?
                .gtin,
        )
    };
    verdict::verify_subject(view, trust, request.subject.as_ref(), at, product.as_ref(), options).map_err(|e| match e {
        verdict::SubjectError::Verdict(e) => Failure::Verdict(e),
        invalid => Failure::Invalid(invalid.to_string()),
    })
}

fn record_id(r: &pb::RecordRef) -> Result<RecordId, Failure> {
    let log = LogId::from_slice(&r.log_id).map_err(|e| Failure::Invalid(format!("record: {e}")))?;
    Ok(RecordId { log, seq: r.seq })
}

/// Where a trace starts: a record, a certificate's issue record, or the
/// records that created a lot (all records of the lot if none did).
fn trace_starts(view: &StoreView<'_>, start: &pb::VerdictSubject) -> Result<Vec<RecordId>, Failure> {
    use pb::verdict_subject::Kind;
    match start.kind.as_ref() {
        None => Err(Failure::Invalid("start: give a record, a certificate or a product code".into())),
        Some(Kind::Record(r)) => {
            let id = record_id(r)?;
            if view.record(id).map_err(|e| Failure::Internal(e.to_string()))?.is_none() {
                return Err(Failure::NotFound(format!("record {id} is not in the ledger")));
            }
            Ok(vec![id])
        }
        Some(Kind::Certificate(c)) => {
            let issuer = Uscc::parse(&c.issuer_uscc)
                .map_err(|e| Failure::Invalid(format!("start.certificate.issuer_uscc: {e}")))?;
            let ids = view
                .lookup(&IndexKey::Certificate(issuer, c.number.clone()), trace::MAX_PER_KEY)
                .map_err(|e| Failure::Internal(e.to_string()))?;
            if ids.is_empty() {
                return Err(Failure::NotFound(format!(
                    "certificate {}/{} is not in the ledger",
                    c.issuer_uscc, c.number
                )));
            }
            Ok(ids)
        }
        Some(Kind::ProductCode(code)) => {
            let code = verdict::product_code(code).map_err(|e| Failure::Invalid(format!("start.product_code: {e}")))?;
            let lot = code.lot.ok_or_else(|| Failure::Invalid("start.product_code: give the lot to trace".into()))?;
            let key = (code.gtin, lot);
            let origins = trace::lot_origins(view, &key).map_err(|e| Failure::Internal(e.to_string()))?;
            let ids: Vec<RecordId> = if origins.is_empty() {
                trace::lot_records(view, &key)
                    .map_err(|e| Failure::Internal(e.to_string()))?
                    .iter()
                    .map(|r| r.id)
                    .collect()
            } else {
                origins.iter().map(|r| r.id).collect()
            };
            if ids.is_empty() {
                return Err(Failure::NotFound(format!("the ledger has no record of {} lot {}", key.0, key.1)));
            }
            Ok(ids)
        }
    }
}

fn product_index(gtin: Gtin, lot: Option<String>, serial: Option<String>) -> Result<IndexKey, Failure> {
    use qtrace_ledger::ids::{Lot, Serial};
    if let Some(serial) = serial {
        return Ok(IndexKey::Serial(
            gtin,
            Serial::parse(&serial).map_err(|e| Failure::Invalid(format!("serial: {e}")))?,
        ));
    }
    if let Some(lot) = lot {
        return Ok(IndexKey::Lot(gtin, Lot::parse(&lot).map_err(|e| Failure::Invalid(format!("lot: {e}")))?));
    }
    Ok(IndexKey::Gtin(gtin))
}
