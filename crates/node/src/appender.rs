//! The append path: one writer thread sequences, group-commits and flushes.
//!
//! gRPC handlers decode events and verify signatures on the runtime's worker
//! threads (all cores), then hand verified submissions to [`Appender`]. The
//! writer thread takes everything queued (up to [`MAX_GROUP`] events),
//! checks duplicates and authorisation in order against its own working
//! copy of the registry, assigns sequence numbers, writes entries, indexes
//! and the new signed checkpoint in one sled batch, flushes once, and only
//! then publishes the working copy (see [`crate::snapshot`]) and answers
//! every caller. Readers never hold the writer up: they read the last
//! published snapshot, which the writer replaces by swapping a pointer. The queue is bounded by a count of queued events: when it is full
//! a submission is refused with RESOURCE_EXHAUSTED instead of growing memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::snapshot::{Registries, Snapshot};
use qtrace_ledger::entry::Entry;
use qtrace_ledger::event::{self, ValidEvent};
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::merkle::Hash;
use qtrace_ledger::note::Signer;
use qtrace_ledger::pb;
use qtrace_ledger::registry::{AuthError, RecordInfo, Records, RecordsError, Registry};
use qtrace_store::{LogStore, NewEntry, StoreError};
use tokio::sync::{broadcast, oneshot};

use crate::logs::Logs;
use crate::setup::{self, now_micros};

/// Most events sequenced into one batch (one flush).
pub const MAX_GROUP: usize = 4_096;
/// Most events waiting for the writer before new ones are refused.
pub const DEFAULT_QUEUE_LIMIT: usize = 32_768;
/// How far in the future of the node's clock an event time may claim to be.
pub const MAX_FUTURE_MILLIS: i64 = 24 * 3_600 * 1_000;
/// Longest the writer waits for announced submissions (unary appends whose
/// signatures are being verified) to join the group it is about to commit.
/// Waiting lets one flush serve many callers: under load, groups grow from
/// a few events to dozens, and sled writes far less per event.
pub const MAX_LINGER: std::time::Duration = std::time::Duration::from_micros(1_000);
/// How often a lingering writer checks that announced submissions remain.
const LINGER_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// An event whose encoding and signature have been checked.
#[derive(Debug, Clone)]
pub struct Verified {
    pub event_bytes: Vec<u8>,
    pub signer: [u8; 32],
    pub signature: [u8; 64],
    pub event: ValidEvent,
}

/// Where an accepted or duplicate event sits in the log.
#[derive(Debug, Clone)]
pub struct Logged {
    pub seq: u64,
    pub entry_hash: EntryHash,
    pub logged_at_micros: i64,
    pub duplicate: bool,
    /// The tree size and signed checkpoint the caller can prove against.
    pub tree_size: u64,
    pub checkpoint: Arc<String>,
    /// The root of the tree at `tree_size`, which `checkpoint` signs.
    pub root: Hash,
}

/// Why the writer refused an event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("event_time: {0}")]
    Time(String),
    #[error("the append queue is full ({0} events waiting); retry later")]
    QueueFull(usize),
    /// The index follower lags beyond the bound ([`qtrace_store::Limits`]).
    #[error("indexing lags {0} entries behind the log (索引滞后); retry later")]
    IndexBehind(u64),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("storage failure: {0}")]
    Storage(String),
}

type Reply = oneshot::Sender<Vec<Result<Logged, AppendError>>>;

struct Job {
    events: Vec<Verified>,
    reply: Reply,
}

/// The handle gRPC handlers use to submit verified events.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    /// Submissions announced with [`Appender::announce`] and not yet queued.
    arriving: Arc<AtomicUsize>,
    limit: usize,
    closed: Arc<AtomicBool>,
}

impl Appender {
    /// Starts the writer thread. `entries` receives every appended entry.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        log: Arc<LogStore>,
        logs: Arc<Logs>,
        registries: Arc<Registries>,
        trust: setup::Trust,
        signer: Signer,
        origin: String,
        entries: broadcast::Sender<Arc<pb::Entry>>,
        queue_limit: usize,
    ) -> (Appender, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Job>();
        let queued = Arc::new(AtomicUsize::new(0));
        let arriving = Arc::new(AtomicUsize::new(0));
        let mut writer = Writer {
            log,
            logs,
            registries,
            trust,
            registry_stale: false,
            registry_unbuilt: None,
            signer,
            origin,
            entries,
            queued: queued.clone(),
            arriving: arriving.clone(),
            flush_owed: false,
        };
        let handle = std::thread::Builder::new()
            .name("qtrace-writer".into())
            .spawn(move || writer.run(rx))
            // Failing to start a thread at boot leaves nothing to serve.
            .expect("spawning the writer thread");
        (Appender { tx, queued, arriving, limit: queue_limit, closed: Arc::new(AtomicBool::new(false)) }, handle)
    }

    /// Announces a submission that is on its way (its signature is being
    /// verified): the writer waits up to [`MAX_LINGER`] for announced
    /// submissions before it commits a group. The announcement ends when
    /// the returned guard is dropped or handed to [`Appender::submit`].
    pub fn announce(&self) -> Arrival {
        self.arriving.fetch_add(1, Ordering::AcqRel);
        Arrival(self.arriving.clone())
    }

    /// Queues events and waits until they are durable (or refused). The
    /// results are in the order of `events`.
    pub async fn submit(&self, events: Vec<Verified>, arrival: Option<Arrival>) -> Vec<Result<Logged, AppendError>> {
        let n = events.len();
        if self.closed.load(Ordering::Acquire) {
            return vec![Err(AppendError::ShuttingDown); n];
        }
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > self.limit && before > 0 {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return vec![Err(AppendError::QueueFull(before)); n];
        }
        let depth = &crate::metrics::get().queue_depth;
        depth.inc_by(n as i64);
        let (reply, answer) = oneshot::channel();
        // No longer on its way once sent: ended before the send, so a
        // writer woken by this job never waits for the job itself.
        drop(arrival);
        if self.tx.send(Job { events, reply }).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            depth.dec_by(n as i64);
            return vec![Err(AppendError::ShuttingDown); n];
        }
        answer.await.unwrap_or_else(|_| vec![Err(AppendError::ShuttingDown); n])
    }

    /// Refuses new submissions; the writer finishes what is queued.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// A submission on its way to the writer; see [`Appender::announce`].
pub struct Arrival(Arc<AtomicUsize>);

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Writer {
    log: Arc<LogStore>,
    /// Own and mirrored logs: parents may be in any of them.
    logs: Arc<Logs>,
    /// The published registry: a batch starts from the latest snapshot and
    /// publishes its working copy once the batch is durable.
    registries: Arc<Registries>,
    /// Whose records count, for rebuilding the registry.
    trust: setup::Trust,
    /// A write failed after the store may have taken part of it: the
    /// published snapshot may lack entries the store holds, so the next
    /// batch starts from a rebuild instead.
    registry_stale: bool,
    /// Why the registry could not be rebuilt: until a rebuild succeeds
    /// nothing is authorised.
    registry_unbuilt: Option<String>,
    signer: Signer,
    origin: String,
    entries: broadcast::Sender<Arc<pb::Entry>>,
    queued: Arc<AtomicUsize>,
    arriving: Arc<AtomicUsize>,
    /// A batch reached the tree but its flush failed: its entries are not
    /// known to be durable, so nothing may be acknowledged until a flush
    /// succeeds (a later batch's, or one made for a group of duplicates).
    flush_owed: bool,
}

/// One event's place in the batch being built.
enum Slot {
    /// Placed in the batch, at this index.
    Accepted(usize),
    /// The same signer already submitted the same event: the original entry.
    Duplicate {
        seq: u64,
        entry_hash: EntryHash,
        logged_at_micros: i64,
    },
    Refused(AppendError),
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Job>) {
        // The loop ends when every Appender handle is dropped and the queue
        // is drained: that is the shutdown path.
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            let mut n_events = jobs[0].events.len();
            let deadline = std::time::Instant::now() + MAX_LINGER;
            while n_events < MAX_GROUP {
                let next = match rx.try_recv() {
                    Ok(job) => Some(job),
                    // Nothing queued: wait a moment for submissions being
                    // verified right now, if there are any.
                    Err(mpsc::TryRecvError::Empty) if self.arriving.load(Ordering::Acquire) > 0 => {
                        // Short waits, so a submission that is refused
                        // instead (its announcement ends) costs little.
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            None
                        } else {
                            match rx.recv_timeout(left.min(LINGER_POLL)) {
                                Ok(job) => Some(job),
                                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                                Err(mpsc::RecvTimeoutError::Disconnected) => None,
                            }
                        }
                    }
                    Err(_) => None,
                };
                match next {
                    Some(job) => {
                        n_events += job.events.len();
                        jobs.push(job);
                    }
                    None => break,
                }
            }
            self.queued.fetch_sub(n_events, Ordering::AcqRel);
            crate::metrics::get().queue_depth.dec_by(n_events as i64);
            self.process(jobs);
        }
        tracing::info!("writer stopped");
    }

    fn process(&mut self, jobs: Vec<Job>) {
        let span = tracing::debug_span!("append_batch", events = jobs.iter().map(|j| j.events.len()).sum::<usize>());
        let _guard = span.enter();
        // Pushed back before anything is placed (the registry untouched)
        // while the index follower lags beyond its bound; duplicates too,
        // which keeps the rule simple: nothing is answered until it catches
        // up a little.
        let lag = self.log.index_lag();
        if lag > self.log.limits().max_lag {
            let error = AppendError::IndexBehind(lag);
            for job in jobs {
                let _ = job.reply.send(vec![Err(error.clone()); job.events.len()]);
            }
            return;
        }
        let log_id = self.log.log_id();
        let head = self.log.head();
        let now = now_micros();
        let mut next_seq = head.size;
        let mut prev = head.last_hash;
        let mut batch: Vec<NewEntry> = Vec::new();
        let log = self.log.clone();
        // Mirror tasks publish too: they wait while this batch is built,
        // so the snapshot it starts from is still the latest when it
        // publishes. Readers do not wait.
        let registries = self.registries.clone();
        let writing = registries.write();
        let (base, rebuilt) = if self.registry_stale || self.registry_unbuilt.is_some() {
            (self.rebuild_registry(), true)
        } else {
            (Some((*registries.latest()).clone()), false)
        };
        let Some(base) = base else {
            let reason = self.registry_unbuilt.clone().unwrap_or_default();
            let error = AppendError::Storage(format!("the registry cannot be rebuilt: {reason}"));
            for job in jobs {
                let _ = job.reply.send(vec![Err(error.clone()); job.events.len()]);
            }
            return;
        };
        // The working copy: a clone shares the registry's maps until the
        // batch changes them.
        let mut registry = base.registry.clone();
        let mut published = false;
        let logs = self.logs.clone();
        let mut pending = PendingRecords { log: &log, logs: &logs, log_id, new: HashMap::new() };
        let mut in_batch: HashMap<[u8; 32], (u64, EntryHash, i64)> = HashMap::new();
        let mut slots: Vec<Vec<Slot>> = Vec::with_capacity(jobs.len());
        let sequence_span = tracing::debug_span!("sequence", log = %log_id, from = head.size).entered();
        for job in &jobs {
            let mut job_slots = Vec::with_capacity(job.events.len());
            for verified in &job.events {
                job_slots.push(self.place(
                    &mut registry,
                    verified,
                    now,
                    &mut next_seq,
                    &mut prev,
                    &mut batch,
                    &mut pending,
                    &mut in_batch,
                ));
            }
            slots.push(job_slots);
        }
        drop(sequence_span);

        let mut checkpoint = Arc::new(String::new());
        let mut tree_size = head.size;
        let mut root = head.root;
        let mut failure: Option<AppendError> = None;
        // Refuses every slot, duplicates of old entries included.
        let mut owed: Option<AppendError> = None;
        if !batch.is_empty() {
            let metrics = crate::metrics::get();
            let write_span = tracing::debug_span!("write_flush", entries = batch.len()).entered();
            let started = std::time::Instant::now();
            let mut signed = String::new();
            let result = self.log.append(&batch, true, |size, root| {
                let note = setup::sign_checkpoint(&self.signer, &self.origin, size, root)?;
                signed = note.clone();
                Ok::<_, qtrace_ledger::note::NoteError>(note)
            });
            metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
            metrics.batch_size.observe(batch.len() as f64);
            drop(write_span);
            match result {
                Ok(new_head) => {
                    // The flush covered every earlier write too.
                    self.flush_owed = false;
                    metrics.appends.inc_by(batch.len() as u64);
                    tree_size = new_head.size;
                    root = new_head.root;
                    checkpoint = Arc::new(signed);
                    // Durable: readers may now see the batch's registry.
                    registries.publish(
                        &writing,
                        Snapshot { registry: std::mem::take(&mut registry), cut: base.cut.with(log_id, new_head.size) },
                    );
                    published = true;
                    self.registry_stale = false;
                    for new in &batch {
                        // Nobody listening is not an error.
                        let _ = self.entries.send(Arc::new(new.entry.to_pb(&log_id)));
                    }
                }
                // Nothing was written: the working copy is dropped (the
                // published snapshot is still the registry of the store),
                // and the whole group is refused, duplicates of older
                // entries too (they would get no checkpoint, and entries
                // left unflushed by an earlier failure are still owed a
                // flush). A follower that fell behind between the check
                // above and the append pushes the group back the same way.
                Err(StoreError::IndexBehind { lag }) => {
                    let error = AppendError::IndexBehind(lag);
                    owed = Some(error.clone());
                    failure = Some(error);
                }
                Err(e @ StoreError::Checkpoint { .. }) => {
                    let error = self.storage_failure(base.cut.size(&log_id), e);
                    owed = Some(error.clone());
                    failure = Some(error);
                }
                Err(e) => {
                    // Whatever this batch's write left unflushed, and what
                    // earlier batches did, is not durable: nothing in the
                    // group is acknowledged, duplicates of older entries
                    // included.
                    self.flush_owed = true;
                    let error = self.storage_failure(base.cut.size(&log_id), e);
                    owed = Some(error.clone());
                    failure = Some(error);
                }
            }
        } else if self.flush_owed
            && let Err(e) = self.log.flush()
        {
            // Duplicates of entries written before the failed flush must
            // not be acknowledged either.
            owed = Some(AppendError::Storage(format!("flushing earlier entries: {e}")));
        } else if let Ok(Some((size, note))) = self.log.latest_checkpoint() {
            self.flush_owed = false;
            // Every batch stores the checkpoint of its new head, so the
            // latest is the head's; read its root only if it is not.
            let size_root = if size == head.size { Ok(head.root) } else { self.log.root(size) };
            match size_root {
                Ok(r) => {
                    tree_size = size;
                    root = r;
                    checkpoint = Arc::new(note);
                }
                Err(e) => failure = Some(AppendError::Storage(format!("reading the root of checkpoint {size}: {e}"))),
            }
        }

        // A registry rebuilt for this batch describes the store as it is;
        // published once nothing stored is owed a flush.
        if rebuilt && !published && !self.flush_owed && !self.registry_stale {
            registries.publish(&writing, base);
        }
        drop(writing);

        for (job, job_slots) in jobs.into_iter().zip(slots) {
            let results = job_slots
                .into_iter()
                .map(|slot| {
                    if let Some(e) = &owed
                        && !matches!(slot, Slot::Refused(_))
                    {
                        return Err(e.clone());
                    }
                    match slot {
                        Slot::Refused(e) => Err(e),
                        Slot::Accepted(i) => match &failure {
                            Some(e) => Err(e.clone()),
                            None => {
                                let new = &batch[i];
                                Ok(Logged {
                                    seq: new.entry.seq,
                                    entry_hash: new.hash,
                                    logged_at_micros: new.entry.logged_at_micros,
                                    duplicate: false,
                                    tree_size,
                                    checkpoint: checkpoint.clone(),
                                    root,
                                })
                            }
                        },
                        Slot::Duplicate { seq, entry_hash, logged_at_micros } => {
                            // A duplicate of an entry in this same batch shares
                            // its fate.
                            if seq >= head.size
                                && let Some(e) = &failure
                            {
                                return Err(e.clone());
                            }
                            Ok(Logged {
                                seq,
                                entry_hash,
                                logged_at_micros,
                                duplicate: true,
                                tree_size,
                                checkpoint: checkpoint.clone(),
                                root,
                            })
                        }
                    }
                })
                .collect();
            // The caller may have gone away; its entries are durable anyway.
            let _ = job.reply.send(results);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        registry: &mut Registry,
        verified: &Verified,
        now_micros: i64,
        next_seq: &mut u64,
        prev: &mut EntryHash,
        batch: &mut Vec<NewEntry>,
        pending: &mut PendingRecords<'_>,
        in_batch: &mut HashMap<[u8; 32], (u64, EntryHash, i64)>,
    ) -> Slot {
        let dedup = qtrace_store::dedup_key(&verified.signer, &verified.event_bytes);
        if let Some((seq, hash, logged_at)) = in_batch.get(&dedup) {
            return Slot::Duplicate { seq: *seq, entry_hash: *hash, logged_at_micros: *logged_at };
        }
        match self.log.duplicate_of(&verified.signer, &verified.event_bytes) {
            Ok(Some(seq)) => {
                return match self.log.entry(seq) {
                    Ok(Some(entry)) => {
                        Slot::Duplicate { seq, entry_hash: entry.hash(), logged_at_micros: entry.logged_at_micros }
                    }
                    Ok(None) => {
                        Slot::Refused(AppendError::Storage(format!("duplicate index names missing entry {seq}")))
                    }
                    Err(e) => Slot::Refused(AppendError::Storage(e.to_string())),
                };
            }
            Ok(None) => {}
            Err(e) => return Slot::Refused(AppendError::Storage(e.to_string())),
        }
        if let Some(t) = &verified.event.event.event_time
            && t.unix_millis > now_micros / 1000 + MAX_FUTURE_MILLIS
        {
            return Slot::Refused(AppendError::Time(format!(
                "{} ms is more than 24 hours after the node's clock ({} ms)",
                t.unix_millis,
                now_micros / 1000
            )));
        }
        match registry.authorize(*next_seq, &verified.signer, &verified.event, pending) {
            Ok(_) => {}
            // A storage failure is the node's, not a refusal of the event.
            Err(AuthError::Unreadable(e)) => return Slot::Refused(AppendError::Storage(e.to_string())),
            Err(e) => return Slot::Refused(AppendError::Auth(e)),
        }
        registry.apply(*next_seq, &verified.signer, &verified.event);
        // Logged times never go backwards, even if the clock does.
        let last_logged = batch.last().map(|n| n.entry.logged_at_micros).unwrap_or(i64::MIN);
        let entry = Entry {
            seq: *next_seq,
            prev_hash: *prev,
            logged_at_micros: now_micros.max(last_logged),
            signer: verified.signer,
            signature: verified.signature,
            event: verified.event_bytes.clone(),
        };
        let hash = entry.hash();
        pending.new.insert(entry.seq, RecordInfo { hash, signer: entry.signer, kind: Some(verified.event.kind) });
        in_batch.insert(dedup, (entry.seq, hash, entry.logged_at_micros));
        batch.push(NewEntry { entry, hash });
        *prev = hash;
        *next_seq += 1;
        Slot::Accepted(batch.len() - 1)
    }

    /// After a failed write the working copy is dropped and the published
    /// snapshot stands — unless the store holds more of the own log than
    /// the snapshot it was built from (`base_size`): then the next batch
    /// starts from a rebuild.
    fn storage_failure(&mut self, base_size: Option<u64>, error: StoreError) -> AppendError {
        if Some(self.log.head().size) == base_size {
            tracing::error!(%error, "append failed; nothing was stored and the published registry stands");
        } else {
            tracing::error!(%error, "append failed after storing part of the batch; the registry is rebuilt first");
            self.registry_stale = true;
        }
        AppendError::Storage(error.to_string())
    }

    /// Rebuilds the registry with the node's trust (own log and peers'
    /// mirrors), as at start. On failure the writer refuses every event
    /// until a later rebuild succeeds.
    fn rebuild_registry(&mut self) -> Option<Snapshot> {
        match setup::rebuild_registry(&self.trust, &self.log, &self.logs.mirrors()) {
            Ok(snapshot) => {
                self.registry_unbuilt = None;
                self.registry_stale = false;
                Some(snapshot)
            }
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!(error = %reason, "the registry cannot be rebuilt; appends are refused until it is");
                self.registry_unbuilt = Some(reason);
                None
            }
        }
    }
}

/// Records visible to authorisation: the store plus this batch so far.
struct PendingRecords<'a> {
    log: &'a LogStore,
    logs: &'a Logs,
    log_id: LogId,
    new: HashMap<u64, RecordInfo>,
}

impl Records for PendingRecords<'_> {
    fn record(&self, log: &LogId, seq: u64) -> Result<Option<RecordInfo>, RecordsError> {
        let unreadable = |detail: String| RecordsError { log: *log, seq, detail };
        let entry = if *log == self.log_id {
            if let Some(found) = self.new.get(&seq) {
                return Ok(Some(*found));
            }
            self.log.entry(seq).map_err(|e| unreadable(e.to_string()))?
        } else {
            // A parent in a mirrored log: only entries already verified and
            // stored by mirroring count.
            match self.logs.get(log) {
                Some(mirror) => mirror.entry(seq).map_err(|e| unreadable(e.to_string()))?,
                None => None,
            }
        };
        let Some(entry) = entry else { return Ok(None) };
        // Stored entries were checked before they were stored; one that no
        // longer decodes is damage, which authorisation reports as such.
        let kind = event::decode_event(&entry.event).ok().map(|e| e.kind);
        Ok(Some(RecordInfo { hash: entry.hash(), signer: entry.signer, kind }))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use qtrace_ledger::event::decode_event;
    use qtrace_ledger::ids::Uscc;
    use qtrace_ledger::pb::event::Body;
    use qtrace_ledger::signing::SecretKey;
    use qtrace_store::SledStore;

    use super::*;

    /// An organisation registered on the peer's log only.
    const PEER_ORG: &str = "91310000MA1K2Q7A5L";
    /// An organisation the node's own authority registers.
    const OWN_ORG: &str = "914403007152672A21";

    fn genesis(origin: &str, authority: &SecretKey) -> pb::LogGenesis {
        pb::LogGenesis {
            origin: origin.into(),
            operator_uscc: "9144030071526726XG".into(),
            operator_name: "operator".into(),
            root_authority_keys: vec![authority.public_key().to_bytes().to_vec()],
        }
    }

    fn org_registered(uscc: &str) -> pb::Event {
        pb::Event {
            event_time: Some(pb::EventTime { unix_millis: now_micros() / 1000, offset_minutes: 480 }),
            subject: Some(pb::Subject { kind: Some(pb::subject::Kind::OrganisationUscc(uscc.into())) }),
            body: Some(Body::OrgRegistered(pb::OrgRegistered {
                uscc: uscc.into(),
                name: "an organisation".into(),
                roles: vec![pb::Role::Manufacturer as i32],
                accreditations: Vec::new(),
                address: String::new(),
                region: "310000".into(),
            })),
            ..Default::default()
        }
    }

    fn verified(event: &pb::Event, key: &SecretKey) -> Verified {
        let event_bytes = event.encode_to_vec();
        let valid = decode_event(&event_bytes).unwrap();
        Verified {
            signature: key.sign_event(&event_bytes),
            signer: key.public_key().to_bytes(),
            event_bytes,
            event: valid,
        }
    }

    /// Appends `event_bytes`, signed by `signer`, to `log` as its next entry.
    fn append_raw(log: &LogStore, log_key: &SecretKey, origin: &str, signer: &SecretKey, event_bytes: Vec<u8>) {
        let head = log.head();
        let entry = Entry {
            seq: head.size,
            prev_hash: head.last_hash,
            logged_at_micros: now_micros(),
            signer: signer.public_key().to_bytes(),
            signature: signer.sign_event(&event_bytes),
            event: event_bytes,
        };
        let hash = entry.hash();
        let checkpoint_signer = Signer::new(origin, log_key.signing_key().clone()).unwrap();
        log.append(&[NewEntry { entry, hash }], true, |size, root| {
            setup::sign_checkpoint(&checkpoint_signer, origin, size, root)
        })
        .unwrap();
    }

    struct Node {
        store: SledStore,
        own_key: SecretKey,
        own_authority: SecretKey,
        logs: Arc<Logs>,
        peer: Arc<LogStore>,
        peer_key: SecretKey,
        trust: setup::Trust,
    }

    /// A node whose own log holds its genesis and whose mirror of a peer's
    /// log holds the peer's genesis and the registration of [`PEER_ORG`].
    fn node() -> Node {
        let store = SledStore::temporary().unwrap();
        let own_key = SecretKey::from_seed(&[1; 32]);
        let own_authority = SecretKey::from_seed(&[2; 32]);
        let peer_key = SecretKey::from_seed(&[3; 32]);
        let peer_authority = SecretKey::from_seed(&[4; 32]);
        let own = Arc::new(store.log(LogId::of_key(&own_key.public_key().to_bytes())).unwrap());
        setup::append_genesis(&own, &own_key, genesis("qtrace.test/own", &own_authority)).unwrap();
        let logs = Arc::new(Logs::new(own, store.clone()));
        let peer = logs.mirror(LogId::of_key(&peer_key.public_key().to_bytes())).unwrap();
        setup::append_genesis(&peer, &peer_key, genesis("qtrace.test/peer", &peer_authority)).unwrap();
        let registration = org_registered(PEER_ORG).encode_to_vec();
        append_raw(&peer, &peer_key, "qtrace.test/peer", &peer_authority, registration);
        let trust =
            setup::Trust { own: own_key.public_key().to_bytes(), peers: vec![peer_key.public_key().to_bytes()] };
        Node { store, own_key, own_authority, logs, peer, peer_key, trust }
    }

    fn knows(registries: &Registries, uscc: &str) -> bool {
        let uscc: Uscc = uscc.parse().unwrap();
        registries.latest().registry.organisation(&uscc).is_some()
    }

    #[test]
    fn a_storage_failure_keeps_the_peers_registrations() {
        let node = node();
        let registry = setup::rebuild_registry(&node.trust, &node.logs.own, &node.logs.mirrors()).unwrap();
        let registry = Arc::new(Registries::new(registry));
        assert!(knows(&registry, PEER_ORG), "the peer's registration counts before the failure");
        // The writer's origin cannot name a checkpoint, so signing the
        // batch's checkpoint fails and nothing is written: the storage
        // failure path, which drops the working copy.
        let signer = Signer::new("qtrace.test/own", node.own_key.signing_key().clone()).unwrap();
        let (entries, _) = broadcast::channel(16);
        let (appender, writer) = Appender::start(
            node.logs.own.clone(),
            node.logs.clone(),
            registry.clone(),
            node.trust.clone(),
            signer,
            String::new(),
            entries,
            16,
        );
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let results =
            runtime.block_on(appender.submit(vec![verified(&org_registered(OWN_ORG), &node.own_authority)], None));
        assert!(matches!(results.as_slice(), [Err(AppendError::Storage(_))]), "{results:?}");
        drop(appender);
        writer.join().unwrap();
        assert!(knows(&registry, PEER_ORG), "the peer's registration still counts after the failure");
        assert!(!knows(&registry, OWN_ORG), "the unwritten registration was forgotten");
        assert_eq!(node.logs.own.head().size, 1);
        drop(node.store);
    }

    #[test]
    fn the_registry_rebuild_names_an_entry_it_cannot_read() {
        let node = node();
        append_raw(&node.peer, &node.peer_key, "qtrace.test/peer", &node.own_authority, vec![0xff, 0xff, 0x20]);
        let Err(error) = setup::rebuild_registry(&node.trust, &node.logs.own, &node.logs.mirrors()) else {
            panic!("rebuilt over an entry that does not decode");
        };
        let text = format!("{error:#}");
        assert!(text.contains(&format!("entry 2 of mirrored log {}", node.peer.log_id())), "{text}");
    }
}
