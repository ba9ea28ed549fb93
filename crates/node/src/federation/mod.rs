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
//! checkpoints of one log that are proven not both true (by the log's own
//! signatures and tree) are kept as evidence of equivocation, served to
//! anyone, and turn every verdict on that log INVALID; a conflict nobody
//! has proven is only logged as an alarm.
//!
//! A node cosigns with its log key, as a C2SP tlog-cosignature key (type
//! 0x04) named by its origin, so a peer's verifier key (`--peer
//! NAME=URL,VKEY`) is all another node needs to check both its checkpoints
//! and its cosignatures.
//!
//! The rooms: [`peer`] parses `--peer`; this module holds the node-wide
//! federation state ([`Federation`]); [`mirror`] runs the mirror loop
//! (catch-up rounds against one peer); [`chunk`] verifies and stores the
//! chunks a catch-up receives; [`cosign`] cosigns peers' checkpoints and
//! takes witnesses' cosignatures of this node's; [`gossip`] compares the
//! checkpoints peers hold of other logs; [`evidence`] builds, keeps and
//! loads equivocation evidence. The logs themselves are in
//! [`crate::logs`].

mod chunk;
mod cosign;
mod evidence;
mod gossip;
mod mirror;
mod peer;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use qtrace_ledger::event::{IndexKey, decode_event, index_keys};
use qtrace_ledger::hash::LogId;
use qtrace_ledger::merkle::Hash;
use qtrace_ledger::note::{CosignatureVerifier, Cosigner, Verifier};
use qtrace_ledger::pb;
use qtrace_store::{LogStore, Meta};

pub use cosign::CosignatureError;
use evidence::load_evidence;
pub use mirror::{DEFAULT_CHUNK, Progress, round, run};
pub use peer::Peer;

use crate::logs::Logs;
use crate::snapshot::{Registries, Snapshot};

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
    /// The published registry, which mirrored registry records join at
    /// the peer's checkpoints ([`Federation::publish_mirror`]).
    pub registry: Arc<Registries>,
    /// This node as a witness.
    pub cosigner: Cosigner,
    /// This node's own log verifier key.
    pub own_vkey: Verifier,
    pub equivocations: RwLock<Vec<pb::Equivocation>>,
    /// The key the next evidence is stored under: one past the largest
    /// stored, so a new record never replaces one kept earlier.
    next_evidence: std::sync::atomic::AtomicU64,
    meta: Meta,
    pub interval: Duration,
    /// Entries verified and stored together while catching up.
    pub chunk: usize,
    tls: Option<qtrace_rpc::connect::Tls>,
    /// Serialises read-modify-write of this node's checkpoint notes when
    /// witnesses hand in cosignatures at the same time.
    cosign_lock: std::sync::Mutex<()>,
}

impl Federation {
    pub fn new(
        settings: Settings,
        logs: Arc<Logs>,
        registry: Arc<Registries>,
        cosigner: Cosigner,
        own_vkey: Verifier,
        meta: Meta,
    ) -> anyhow::Result<Self> {
        let Settings { peers, interval, chunk, tls } = settings;
        let (stored, next_evidence) = load_evidence(&meta)?;
        Ok(Federation {
            peers,
            logs,
            registry,
            cosigner,
            own_vkey,
            equivocations: RwLock::new(stored),
            next_evidence: std::sync::atomic::AtomicU64::new(next_evidence),
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

    /// Publishes the registry with the mirror `log` taken up to `size`, a
    /// size at which one of the peer's signed checkpoints is stored, so a
    /// view reading the mirror at that checkpoint has exactly its registry
    /// records. `carried` holds the registry records (sequence number,
    /// signer, event bytes) of the entries from `carried_from` up, which a
    /// catch-up kept while storing them; those from the published cut up to
    /// `carried_from` (stored by a catch-up that stopped before a
    /// checkpoint) are read back from the mirror. Records of a log the node
    /// does not trust are ignored by the registry, but the cut still moves:
    /// views see the mirror's new entries.
    pub fn publish_mirror(
        &self,
        log: &LogStore,
        size: u64,
        carried_from: u64,
        carried: &[(u64, [u8; 32], Vec<u8>)],
    ) -> anyhow::Result<()> {
        let log_id = log.log_id();
        let writing = self.registry.write();
        let latest = self.registry.latest();
        let from = latest.cut.size(&log_id).unwrap_or(0);
        if size <= from {
            return Ok(());
        }
        let mut registry = latest.registry.clone();
        for entry in log.range(from, carried_from.clamp(from, size)) {
            let entry = entry.with_context(|| format!("reading back an entry of mirrored log {log_id}"))?;
            let event = decode_event(&entry.event)
                .map_err(|e| anyhow::anyhow!("entry {} of mirrored log {log_id}: {e}", entry.seq))?;
            if index_keys(&event.event).contains(&IndexKey::Registry) {
                registry.apply_in(log_id, entry.seq, &entry.signer, &event);
            }
        }
        for (seq, signer, bytes) in carried.iter().filter(|(seq, _, _)| (from.max(carried_from)..size).contains(seq)) {
            // Verified before it was stored, so it decodes; one that does
            // not is damage, reported as such.
            let event =
                decode_event(bytes).map_err(|e| anyhow::anyhow!("entry {seq} of mirrored log {log_id}: {e}"))?;
            registry.apply_in(log_id, *seq, signer, &event);
        }
        self.registry.publish(&writing, Snapshot { registry, cut: latest.cut.with(log_id, size) });
        Ok(())
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
}

fn hashes(path: &[Vec<u8>]) -> anyhow::Result<Vec<Hash>> {
    path.iter()
        .map(|h| <[u8; 32]>::try_from(h.as_slice()).map_err(|_| anyhow::anyhow!("a proof hash is not 32 bytes")))
        .collect()
}
