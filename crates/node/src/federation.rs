//! Federation (互联互通): mirroring, cosigning and equivocation detection.
//!
//! Each node writes one log and mirrors its peers' logs. For every peer a
//! task fetches the peer's signed checkpoint, streams the entries it lacks,
//! verifies each (chain link, signature, record format), rebuilds the tree
//! and checks it against the signed checkpoint (directly, or through a
//! consistency proof to it for a chunk that ends earlier) before storing a
//! single entry. It then cosigns the checkpoint, after checking a
//! consistency proof from the last checkpoint of that log it cosigned, and
//! hands the cosignature to the peer. Finally it asks the peer which
//! checkpoints it holds of other logs and compares them with its own: two
//! checkpoints of one log that cannot both be true are kept as evidence of
//! equivocation, served to anyone, and turn every verdict on that log
//! INVALID.
//!
//! A node cosigns with its log key, as a C2SP tlog-cosignature key (type
//! 0x04) named by its origin, so a peer's verifier key (`--peer
//! NAME=URL,VKEY`) is all another node needs to check both its checkpoints
//! and its cosignatures.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prost::Message;
use qtrace_ledger::entry::Entry;
use qtrace_ledger::event::{self, IndexKey};
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::merkle::{self, CompactRange, Hash};
use qtrace_ledger::note::{self, CosignatureVerifier, Cosigner, Note, Verifier};
use qtrace_ledger::pb;
use qtrace_ledger::registry::Registry;
use qtrace_ledger::signing::{self, BatchItem};
use qtrace_ledger::store::{LogStore, Meta, NewEntry, SledStore};
use qtrace_rpc::rpc::ledger_client::LedgerClient;
use tonic::transport::Channel;

/// Entries verified and stored together while catching up (default).
pub const DEFAULT_CHUNK: usize = 8_192;

/// A configured peer: `NAME=URL,VKEY`.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub url: String,
    pub vkey: Verifier,
    pub log_id: LogId,
}

impl Peer {
    /// The peer as a witness: its log key used for cosignatures.
    pub fn witness(&self) -> Option<CosignatureVerifier> {
        CosignatureVerifier::new(self.vkey.name().as_str(), *self.vkey.public_key()).ok()
    }
}

impl FromStr for Peer {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, rest) =
            text.split_once('=').ok_or_else(|| format!("{text:?}: expected NAME=URL,VKEY (no '=' found)"))?;
        let (url, vkey) =
            rest.split_once(',').ok_or_else(|| format!("{text:?}: expected NAME=URL,VKEY (no ',' found)"))?;
        if name.is_empty() {
            return Err(format!("{text:?}: the peer NAME is empty"));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{text:?}: URL must start with http:// or https://"));
        }
        let vkey = Verifier::parse(vkey.trim()).map_err(|e| format!("{text:?}: VKEY: {e}"))?;
        let log_id = LogId::of_key(&vkey.public_key().to_bytes());
        Ok(Peer { name: name.to_string(), url: url.to_string(), vkey, log_id })
    }
}

/// Every log this node keeps: its own and its mirrors.
pub struct Logs {
    pub own: Arc<LogStore>,
    store: SledStore,
    mirrors: RwLock<BTreeMap<LogId, Arc<LogStore>>>,
}

impl Logs {
    pub fn new(own: Arc<LogStore>, store: SledStore) -> Self {
        Logs { own, store, mirrors: RwLock::new(BTreeMap::new()) }
    }

    /// The log `id`, own or mirrored, if this node keeps it.
    pub fn get(&self, id: &LogId) -> Option<Arc<LogStore>> {
        if *id == self.own.log_id() {
            return Some(self.own.clone());
        }
        self.mirrors.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Opens (creating if new) the mirror of a peer's log.
    pub fn mirror(&self, id: LogId) -> anyhow::Result<Arc<LogStore>> {
        if let Some(log) = self.get(&id) {
            return Ok(log);
        }
        let log = Arc::new(self.store.log(id)?);
        self.mirrors.write().unwrap_or_else(|p| p.into_inner()).insert(id, log.clone());
        Ok(log)
    }

    /// Own log first, then mirrors by log id.
    pub fn all(&self) -> Vec<Arc<LogStore>> {
        let mut all = vec![self.own.clone()];
        all.extend(self.mirrors.read().unwrap_or_else(|p| p.into_inner()).values().cloned());
        all
    }
}

/// How a node federates: its peers, how often it polls them, and how many
/// entries it verifies and stores at a time while catching up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub peers: Vec<Peer>,
    pub interval: Duration,
    pub chunk: usize,
    /// TLS for https:// peers (their CA, and this node's identity for
    /// mutual TLS).
    pub tls: Option<qtrace_rpc::connect::Tls>,
}

/// Shared federation state.
pub struct Federation {
    pub peers: Vec<Peer>,
    pub logs: Arc<Logs>,
    pub registry: Arc<RwLock<Registry>>,
    /// This node as a witness.
    pub cosigner: Cosigner,
    /// This node's own log verifier key.
    pub own_vkey: Verifier,
    pub equivocations: RwLock<Vec<pb::Equivocation>>,
    meta: Meta,
    pub interval: Duration,
    /// Entries verified and stored together while catching up.
    pub chunk: usize,
    tls: Option<qtrace_rpc::connect::Tls>,
    /// Serialises read-modify-write of this node's checkpoint notes when
    /// witnesses hand in cosignatures at the same time.
    cosign_lock: std::sync::Mutex<()>,
}

const EQUIVOCATION_PREFIX: &[u8] = b"equivocation/";
const COSIGNED_PREFIX: &[u8] = b"cosigned/";

impl Federation {
    pub fn new(
        settings: Settings,
        logs: Arc<Logs>,
        registry: Arc<RwLock<Registry>>,
        cosigner: Cosigner,
        own_vkey: Verifier,
        meta: Meta,
    ) -> anyhow::Result<Self> {
        let Settings { peers, interval, chunk, tls } = settings;
        let mut stored = Vec::new();
        for (_, value) in meta.scan(EQUIVOCATION_PREFIX)? {
            if let Ok(evidence) = pb::Equivocation::decode(value.as_slice()) {
                stored.push(evidence);
            }
        }
        Ok(Federation {
            peers,
            logs,
            registry,
            cosigner,
            own_vkey,
            equivocations: RwLock::new(stored),
            meta,
            interval,
            chunk: chunk.max(1),
            tls,
            cosign_lock: std::sync::Mutex::new(()),
        })
    }

    /// The verifier key of a log this node knows: its own or a peer's.
    pub fn vkey_of(&self, log: &LogId) -> Option<&Verifier> {
        if LogId::of_key(&self.own_vkey.public_key().to_bytes()) == *log {
            return Some(&self.own_vkey);
        }
        self.peers.iter().find(|p| p.log_id == *log).map(|p| &p.vkey)
    }

    /// Witnesses whose cosignatures count: the peers and this node.
    pub fn witnesses(&self) -> Vec<CosignatureVerifier> {
        let mut witnesses: Vec<CosignatureVerifier> = self.peers.iter().filter_map(Peer::witness).collect();
        witnesses.push(self.cosigner.verifier());
        witnesses
    }

    /// Trusted log keys: own and peers'.
    pub fn trusted_logs(&self) -> Vec<Verifier> {
        let mut logs = vec![self.own_vkey.clone()];
        logs.extend(self.peers.iter().map(|p| p.vkey.clone()));
        logs
    }

    pub fn equivocations_of(&self, log: &LogId) -> Vec<pb::Equivocation> {
        self.equivocations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|e| e.log_id == log.0)
            .cloned()
            .collect()
    }

    /// Keeps evidence of equivocation (once) and raises the alarm.
    pub fn record_equivocation(&self, evidence: pb::Equivocation) {
        let mut all = self.equivocations.write().unwrap_or_else(|p| p.into_inner());
        // The same conflict seen again (with other cosignatures on the
        // notes) is not new evidence: compare the signed bodies.
        fn pair(e: &pb::Equivocation) -> [&str; 2] {
            let mut bodies = [body_of(&e.note_a), body_of(&e.note_b)];
            bodies.sort();
            bodies
        }
        let new_pair = pair(&evidence);
        let known = all.iter().any(|e| e.log_id == evidence.log_id && pair(e) == new_pair);
        if known {
            return;
        }
        crate::metrics::get().equivocations.inc();
        tracing::error!(
            log = %hex::encode(&evidence.log_id),
            source = %evidence.source,
            detail = %evidence.detail,
            "EQUIVOCATION: a log showed two histories (分叉); evidence stored, verdicts on it are INVALID"
        );
        let mut key = EQUIVOCATION_PREFIX.to_vec();
        key.extend_from_slice(&(all.len() as u64).to_be_bytes());
        if let Err(e) = self.meta.put(&key, &evidence.encode_to_vec()) {
            tracing::error!(error = %e, "could not store equivocation evidence");
        }
        all.push(evidence);
    }

    fn cosigned(&self, log: &LogId) -> Option<(u64, Hash)> {
        let mut key = COSIGNED_PREFIX.to_vec();
        key.extend_from_slice(&log.0);
        let value = self.meta.get(&key).ok()??;
        let size = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
        let root: Hash = value.get(8..40)?.try_into().ok()?;
        Some((size, root))
    }

    fn set_cosigned(&self, log: &LogId, size: u64, root: &Hash) -> anyhow::Result<()> {
        let mut key = COSIGNED_PREFIX.to_vec();
        key.extend_from_slice(&log.0);
        let mut value = size.to_be_bytes().to_vec();
        value.extend_from_slice(root);
        self.meta.put(&key, &value)?;
        Ok(())
    }

    /// Applies the registry records of a mirrored log (organisations and
    /// keys registered by a trusted authority on any log are honoured).
    pub fn replay_registry(&self, log: &LogStore) -> anyhow::Result<()> {
        let seqs = log.lookup(&IndexKey::Registry, None, usize::MAX)?;
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        for seq in seqs {
            if let Some(entry) = log.entry(seq)?
                && let Ok(event) = event::decode_event(&entry.event)
            {
                registry.apply_in(log.log_id(), seq, &entry.signer, &event);
            }
        }
        Ok(())
    }

    /// Attaches a witness's cosignature to this node's checkpoint.
    pub fn add_cosignature(&self, size: u64, line: &str) -> Result<String, String> {
        let _guard = self.cosign_lock.lock().unwrap_or_else(|p| p.into_inner());
        let own = &self.logs.own;
        let note_text = own
            .checkpoint(size)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no checkpoint was signed at size {size}"))?;
        let line = line.trim_end_matches('\n');
        let with =
            note::add_signature_lines(&note_text, &format!("{line}\n")).map_err(|e| format!("cosignature: {e}"))?;
        let opened = note::open_checkpoint(&with, &self.own_vkey, &self.witnesses())
            .map_err(|e| format!("cosignature does not verify: {e}"))?;
        let signature = note::NoteSignature::parse_line(line).map_err(|e| format!("cosignature: {e}"))?;
        if !opened.cosigners.iter().any(|(name, _)| *name == signature.name) {
            return Err(format!(
                "cosignature by {} is not from a known witness (a configured peer)",
                signature.name.as_str()
            ));
        }
        own.put_checkpoint(size, &with).map_err(|e| e.to_string())?;
        Ok(with)
    }
}

/// Mirrors one peer until the node stops: rounds of catch-up, cosigning and
/// gossip, retrying with backoff while the peer is down.
pub async fn run(fed: Arc<Federation>, peer: Peer, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut client: Option<LedgerClient<Channel>> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            return;
        }
        let result = round(&fed, &peer, &mut client, &Progress::Log).await;
        let pause = match result {
            Ok(progressed) => {
                backoff = Duration::from_millis(200);
                if progressed { Duration::ZERO } else { fed.interval }
            }
            Err(e) => {
                tracing::warn!(peer = %peer.name, error = %e, "mirroring failed; retrying in {:?}", backoff);
                client = None;
                let pause = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                pause
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How catch-up reports progress.
pub enum Progress {
    /// Log lines (the node's mirror tasks).
    Log,
    /// A progress bar (`qtrace-node mirror` by hand).
    Bar(indicatif::ProgressBar),
}

impl Progress {
    fn report(&self, peer: &Peer, done: u64, target: u64) {
        crate::metrics::get().set_mirror_lag(&peer.name, target, done);
        match self {
            Progress::Log => {
                tracing::info!(peer = %peer.name, mirrored = done, of = target, "mirroring catch-up");
            }
            Progress::Bar(bar) => {
                bar.set_length(target);
                bar.set_position(done);
            }
        }
    }
}

async fn connect(fed: &Federation, peer: &Peer) -> anyhow::Result<LedgerClient<Channel>> {
    let mut client = qtrace_rpc::connect::connect_with(&peer.url, fed.tls.as_ref()).await?;
    let info = client.get_log_info(pb::GetLogInfoRequest {}).await?.into_inner();
    if info.log_id != peer.log_id.0 {
        anyhow::bail!(
            "{} serves log {} but the configured verifier key is for log {}",
            peer.url,
            hex::encode(&info.log_id),
            peer.log_id
        );
    }
    Ok(client)
}

/// One round against a peer. Returns whether new entries were mirrored.
pub async fn round(
    fed: &Federation,
    peer: &Peer,
    client: &mut Option<LedgerClient<Channel>>,
    progress: &Progress,
) -> anyhow::Result<bool> {
    if client.is_none() {
        *client = Some(connect(fed, peer).await?);
    }
    let Some(rpc) = client.as_mut() else { anyhow::bail!("no connection") };
    let served = rpc.get_checkpoint(pb::GetCheckpointRequest { size: 0, log_id: Vec::new() }).await?.into_inner();
    let opened = note::open_checkpoint(&served.note, &peer.vkey, &fed.witnesses())
        .map_err(|e| anyhow::anyhow!("{} served a checkpoint that does not verify: {e}", peer.name))?;
    let target = opened.checkpoint.clone();
    let local = fed.logs.mirror(peer.log_id)?;
    let head = local.head();
    crate::metrics::get().set_mirror_lag(&peer.name, target.size, head.size);

    // The new checkpoint must agree with what this node already holds.
    if target.size <= head.size && target.size > 0 {
        let ours = local.root(target.size)?;
        if ours != target.root {
            let our_note = local.latest_checkpoint()?.map(|(_, n)| n).unwrap_or_default();
            fed.record_equivocation(evidence(
                &peer.log_id,
                our_note,
                served.note.clone(),
                format!(
                    "checkpoint of size {} has root {}, but the entries this node verified against an earlier signed \
                     checkpoint of the same log give {}",
                    target.size,
                    hex::encode(target.root),
                    hex::encode(ours)
                ),
                &peer.name,
            ));
            return Ok(false);
        }
    }
    let progressed = target.size > head.size;
    if progressed {
        catch_up(fed, peer, rpc, &local, &target, &served.note, progress).await?;
        crate::metrics::get().set_mirror_lag(&peer.name, target.size, local.head().size);
    } else if target.size == head.size {
        // Same checkpoint: gather the cosignatures the peer has collected.
        merge_cosignatures(&local, target.size, &served.note)?;
    }
    cosign(fed, peer, rpc, &local, &target, &served.note).await?;
    gossip(fed, peer, rpc).await?;
    Ok(progressed)
}

/// A verified chunk being stored on a blocking thread, with what must
/// follow once it is stored.
struct Storing {
    task: tokio::task::JoinHandle<Result<qtrace_ledger::store::Head, qtrace_ledger::store::StoreError>>,
    /// Registry records in the chunk, applied only after they are stored.
    registry_entries: Vec<(u64, [u8; 32], Vec<u8>)>,
    end: u64,
    /// The mirror being written.
    store: Arc<LogStore>,
}

impl Storing {
    /// Waits for the store, then honours the chunk's registry records that
    /// were stored: all of them, or, when a part of the chunk failed to
    /// store, those of the parts before it (which are in the mirror now).
    async fn finish(self, fed: &Federation, peer: &Peer, progress: &Progress, target: u64) -> anyhow::Result<()> {
        let stored = self.task.await.map_err(|e| anyhow::anyhow!("storing mirrored entries failed to run: {e}"))?;
        let held = self.store.head().size;
        let records: Vec<_> = self.registry_entries.into_iter().filter(|(seq, _, _)| *seq < held).collect();
        if !records.is_empty() {
            let mut registry = fed.registry.write().unwrap_or_else(|p| p.into_inner());
            for (seq, signer, bytes) in records {
                if let Ok(event) = event::decode_event(&bytes) {
                    registry.apply_in(peer.log_id, seq, &signer, &event);
                }
            }
        }
        stored?;
        progress.report(peer, self.end, target);
        Ok(())
    }
}

/// Streams, verifies and stores the entries of `peer`'s log from this
/// node's head to `target`. A pipeline of three stages: the next chunk is
/// received and verified (signatures on every core) while the previous one
/// is written to the store, so a catch-up costs about the larger of the
/// two, not their sum. A chunk is stored only after it verified and its
/// rebuilt root was checked against the signed checkpoint; a failure stops
/// the pipeline after the chunk being stored, which was verified.
async fn catch_up(
    fed: &Federation,
    peer: &Peer,
    rpc: &mut LedgerClient<Channel>,
    local: &Arc<LogStore>,
    target: &note::Checkpoint,
    target_note: &str,
    progress: &Progress,
) -> anyhow::Result<()> {
    let head = local.head();
    let mut stream = rpc
        .get_entries(pb::GetEntriesRequest { log_id: peer.log_id.0.to_vec(), from: head.size, to: target.size })
        .await?
        .into_inner();
    let mut frontier = CompactRange::from_nodes(head.size, &StoreNodes(local))
        .map_err(|e| anyhow::anyhow!("loading the mirror's tree: {e:?}"))?;
    let mut prev = head.last_hash;
    let mut next = head.size;
    let mut chunk: Vec<pb::Entry> = Vec::with_capacity(fed.chunk);
    let mut storing: Option<Storing> = None;
    let result = async {
        loop {
            let item = stream.message().await?;
            let done = item.is_none();
            if let Some(entry) = item {
                chunk.push(entry);
            }
            if chunk.len() >= fed.chunk || (done && !chunk.is_empty()) {
                let wire = std::mem::take(&mut chunk);
                let log_id = peer.log_id;
                let start = (next, prev, frontier.clone());
                let verified =
                    tokio::task::spawn_blocking(move || verify_chunk(log_id, start.0, start.1, start.2, wire))
                        .await??;
                let (entries, new_frontier) = verified;
                let end = next + entries.len() as u64;
                check_against_target(rpc, peer, target, next, end, &new_frontier.root()).await?;
                let note = (end == target.size).then(|| target_note.to_string());
                let registry_entries: Vec<(u64, [u8; 32], Vec<u8>)> = entries
                    .iter()
                    .filter(|n| n.index_keys.contains(&IndexKey::Registry))
                    .map(|n| (n.entry.seq, n.entry.signer, n.entry.event.clone()))
                    .collect();
                if let Some(last) = entries.last() {
                    prev = last.hash;
                }
                // The chunk before must be stored first: appends are in
                // order, and its registry records may be needed by this
                // one's readers.
                if let Some(before) = storing.take() {
                    before.finish(fed, peer, progress, target.size).await?;
                }
                let store = local.clone();
                storing = Some(Storing {
                    task: {
                        let store = store.clone();
                        tokio::task::spawn_blocking(move || store_verified(&store, &entries, note))
                    },
                    registry_entries,
                    end,
                    store,
                });
                frontier = new_frontier;
                next = end;
            }
            if done {
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    // What was verified and handed to the store is finished even when a
    // later chunk failed.
    if let Some(last) = storing.take()
        && let Err(stored) = last.finish(fed, peer, progress, target.size).await
    {
        if let Err(later) = &result {
            tracing::warn!(peer = %peer.name, error = %later, "a later chunk failed too");
        }
        return Err(stored);
    }
    result?;
    if next != target.size {
        anyhow::bail!("{} ended the entry stream at {next}, before its checkpoint size {}", peer.name, target.size);
    }
    Ok(())
}

/// Most mirrored entries written in one sled batch. A chunk is stored in
/// parts this size: sled keeps every page version a batch replaces until
/// the batch ends, so one batch of a whole chunk (8,192 entries, ~75,000
/// keys) would hold about a gigabyte at its peak.
const STORE_PART: usize = 1_024;

/// Stores verified entries of a chunk in parts of [`STORE_PART`], in order;
/// the peer's checkpoint note, if the chunk ends at it, goes with the last.
fn store_verified(
    store: &LogStore,
    entries: &[NewEntry],
    mut note: Option<String>,
) -> Result<qtrace_ledger::store::Head, qtrace_ledger::store::StoreError> {
    let parts = entries.len().div_ceil(STORE_PART);
    let mut head = store.head();
    for (i, part) in entries.chunks(STORE_PART).enumerate() {
        let last = i + 1 == parts;
        head = store.append_mirrored(part, if last { note.take() } else { None })?;
    }
    Ok(head)
}

/// Checks that entries `from..end` of the peer's log, whose tree has root
/// `root_end`, lead to the signed `target`: equal roots when they end at
/// it, else a consistency proof from `end` to the target's size.
async fn check_against_target(
    rpc: &mut LedgerClient<Channel>,
    peer: &Peer,
    target: &note::Checkpoint,
    from: u64,
    end: u64,
    root_end: &Hash,
) -> anyhow::Result<()> {
    if end < target.size {
        let proof = rpc
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                old_size: end,
                new_size: target.size,
                log_id: Vec::new(),
            })
            .await?
            .into_inner();
        let path = hashes(&proof.proof.map(|p| p.path).unwrap_or_default())?;
        merkle::verify_consistency(end, target.size, &path, root_end, &target.root).map_err(|e| {
            anyhow::anyhow!(
                "entries {from}..{end} from {} are not a prefix of its signed checkpoint of size {}: {e}",
                peer.name,
                target.size
            )
        })?;
    } else if *root_end != target.root {
        anyhow::bail!(
            "entries from {} rebuild root {} but its signed checkpoint says {}",
            peer.name,
            hex::encode(root_end),
            hex::encode(target.root)
        );
    }
    Ok(())
}

/// Verifies a chunk of a peer's entries: sequence, chain, record format and
/// signatures (batch-verified on every core). Nothing is stored here.
fn verify_chunk(
    log_id: LogId,
    first: u64,
    mut prev: EntryHash,
    mut frontier: CompactRange,
    wire: Vec<pb::Entry>,
) -> anyhow::Result<(Vec<NewEntry>, CompactRange)> {
    let mut entries = Vec::with_capacity(wire.len());
    for (i, w) in wire.iter().enumerate() {
        let entry = Entry::from_pb(w)?;
        let expected = first + i as u64;
        if entry.seq != expected {
            anyhow::bail!("entry {expected}: the peer sent entry {} instead", entry.seq);
        }
        entry.check_link(&log_id, if expected == 0 { None } else { Some(&prev) })?;
        let valid = event::decode_event(&entry.event).map_err(|e| anyhow::anyhow!("entry {expected}: {e}"))?;
        let hash = entry.hash();
        prev = hash;
        entries.push(NewEntry { index_keys: event::index_keys(&valid.event), entry, hash });
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let items: Vec<BatchItem<'_>> = entries
        .iter()
        .map(|n| BatchItem { event: &n.entry.event, signer: &n.entry.signer, signature: &n.entry.signature })
        .collect();
    if let Err((i, e)) = signing::verify_batch_parallel(&items, threads) {
        anyhow::bail!("entry {}: signature: {e}", first + i as u64);
    }
    for new in &entries {
        frontier.append(new.hash.0, |_, _| {}).map_err(|_| anyhow::anyhow!("the mirrored tree is full"))?;
    }
    Ok((entries, frontier))
}

/// Cosigns the peer's checkpoint after checking it is consistent with the
/// last one this node cosigned, and hands the cosignature to the peer.
async fn cosign(
    fed: &Federation,
    peer: &Peer,
    rpc: &mut LedgerClient<Channel>,
    local: &LogStore,
    target: &note::Checkpoint,
    served: &str,
) -> anyhow::Result<()> {
    if target.size == 0 || local.head().size < target.size {
        return Ok(());
    }
    if let Some((size, root)) = fed.cosigned(&peer.log_id) {
        if size == target.size && root == target.root {
            // Already cosigned: hand it in again if the peer lost it.
            let ours = format!("— {} ", fed.cosigner.name().as_str());
            if !served.contains(&ours)
                && let Some(note_text) = local.checkpoint(target.size)?
                && let Some(line) = note_text.lines().find(|l| l.starts_with(&ours))
            {
                let _ = rpc
                    .add_cosignature(pb::AddCosignatureRequest { size: target.size, cosignature: line.to_string() })
                    .await;
            }
            return Ok(());
        }
        if size > target.size {
            return Ok(());
        }
        if size > 0 {
            let proof = rpc
                .get_consistency_proof(pb::GetConsistencyProofRequest {
                    old_size: size,
                    new_size: target.size,
                    log_id: Vec::new(),
                })
                .await?
                .into_inner();
            let path = hashes(&proof.proof.map(|p| p.path).unwrap_or_default())?;
            let old = note::Checkpoint { origin: target.origin.clone(), size, root, extensions: Vec::new() };
            if let Err(conflict) = qtrace_ledger::equivocation::check_consistency(&old, target, &path) {
                let old_note = local.checkpoint(size)?.unwrap_or_default();
                let new_note = local.checkpoint(target.size)?.unwrap_or_default();
                fed.record_equivocation(evidence(&peer.log_id, old_note, new_note, conflict, &peer.name));
                return Ok(());
            }
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let line = fed.cosigner.cosign(target, now).map_err(|e| anyhow::anyhow!("cosigning: {e}"))?.to_string();
    let note_text = local.checkpoint(target.size)?.unwrap_or_default();
    if !note_text.is_empty() {
        let with = note::add_signature_lines(&note_text, &format!("{line}\n"))?;
        local.put_checkpoint(target.size, &with)?;
    }
    fed.set_cosigned(&peer.log_id, target.size, &target.root)?;
    if let Err(status) =
        rpc.add_cosignature(pb::AddCosignatureRequest { size: target.size, cosignature: line.clone() }).await
    {
        tracing::warn!(peer = %peer.name, error = %status.message(), "the peer did not take our cosignature");
    }
    tracing::debug!(peer = %peer.name, size = target.size, "cosigned");
    Ok(())
}

/// Adds the cosignatures in `served` to the stored note of the same size.
fn merge_cosignatures(local: &LogStore, size: u64, served: &str) -> anyhow::Result<()> {
    let Some(ours) = local.checkpoint(size)? else { return Ok(()) };
    let theirs = Note::parse(served)?;
    let lines: String = theirs.signatures().iter().map(|s| format!("{s}\n")).collect();
    if lines.is_empty() {
        return Ok(());
    }
    let merged = note::add_signature_lines(&ours, &lines)?;
    if merged != ours {
        local.put_checkpoint(size, &merged)?;
    }
    Ok(())
}

/// Compares the checkpoints a peer holds of other logs with this node's.
async fn gossip(fed: &Federation, peer: &Peer, rpc: &mut LedgerClient<Channel>) -> anyhow::Result<()> {
    let listed = rpc.list_logs(pb::ListLogsRequest {}).await?.into_inner();
    for summary in listed.logs {
        let Ok(log) = LogId::from_slice(&summary.log_id) else { continue };
        let Some(vkey) = fed.vkey_of(&log) else { continue };
        let Some(checkpoint) = summary.checkpoint else { continue };
        let Ok(theirs) = note::open_checkpoint(&checkpoint.note, vkey, &[]) else {
            continue;
        };
        let theirs = theirs.checkpoint;
        let Some(local) = fed.logs.get(&log) else { continue };
        let head = local.head();
        if head.size == 0 || theirs.size == 0 {
            continue;
        }
        let our_note = local.latest_checkpoint()?.map(|(_, n)| n).unwrap_or_default();
        let conflict = if theirs.size <= head.size {
            let ours = local.root(theirs.size)?;
            (ours != theirs.root).then(|| {
                format!(
                    "{} holds a checkpoint of size {} with root {}, but this node's verified entries of the same log give {}",
                    peer.name,
                    theirs.size,
                    hex::encode(theirs.root),
                    hex::encode(ours)
                )
            })
        } else {
            // Their tree is larger: ask them to prove it extends ours.
            let proof = rpc
                .get_consistency_proof(pb::GetConsistencyProofRequest {
                    old_size: head.size,
                    new_size: theirs.size,
                    log_id: log.0.to_vec(),
                })
                .await;
            match proof {
                Ok(proof) => {
                    let path = hashes(&proof.into_inner().proof.map(|p| p.path).unwrap_or_default())?;
                    let ours = note::Checkpoint {
                        origin: theirs.origin.clone(),
                        size: head.size,
                        root: head.root,
                        extensions: Vec::new(),
                    };
                    qtrace_ledger::equivocation::check_consistency(&ours, &theirs, &path).err()
                }
                // The peer may not hold the entries to prove it; not evidence.
                Err(_) => None,
            }
        };
        if let Some(detail) = conflict {
            fed.record_equivocation(evidence(&log, our_note, checkpoint.note.clone(), detail, &peer.name));
        }
    }
    Ok(())
}

/// The signed text of a note: everything before the blank line.
fn body_of(note_text: &str) -> &str {
    note_text.split_once("\n\n").map(|(body, _)| body).unwrap_or(note_text)
}

fn evidence(log: &LogId, note_a: String, note_b: String, detail: String, source: &str) -> pb::Equivocation {
    pb::Equivocation {
        log_id: log.0.to_vec(),
        note_a,
        note_b,
        detail,
        detected_at_micros: crate::setup::now_micros(),
        source: source.to_string(),
    }
}

fn hashes(path: &[Vec<u8>]) -> anyhow::Result<Vec<Hash>> {
    path.iter()
        .map(|h| <[u8; 32]>::try_from(h.as_slice()).map_err(|_| anyhow::anyhow!("a proof hash is not 32 bytes")))
        .collect()
}

/// A log store as a Merkle node source.
struct StoreNodes<'a>(&'a LogStore);

impl merkle::NodeSource for StoreNodes<'_> {
    type Error = qtrace_ledger::store::StoreError;

    fn node(&self, id: merkle::NodeId) -> Result<Hash, Self::Error> {
        self.0.node(id)
    }
}
