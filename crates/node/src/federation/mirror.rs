//! The mirror loop: rounds against one peer, each a catch-up (streamed,
//! verified and stored chunk by chunk), cosigning and gossip.

use std::sync::Arc;
use std::time::Duration;

use qtrace_ledger::merkle::CompactRange;
use qtrace_ledger::note;
use qtrace_ledger::pb;
use qtrace_rpc::rpc::ledger_client::LedgerClient;
use qtrace_store::LogStore;
use tonic::transport::Channel;

use super::chunk::{StoreNodes, check_against_target, store_verified, verify_chunk};
use super::cosign::{cosign, merge_cosignatures};
use super::evidence::{check_larger, mirror_evidence};
use super::gossip::gossip;
use super::{Federation, Peer};

/// Entries verified and stored together while catching up (default).
pub const DEFAULT_CHUNK: usize = 8_192;

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
            fed.record_equivocation(mirror_evidence(
                &local,
                served.note.clone(),
                target.size,
                format!(
                    "checkpoint of size {} has root {}, but the entries this node verified against an earlier signed \
                     checkpoint of the same log give {}",
                    target.size,
                    hex::encode(target.root),
                    hex::encode(ours)
                ),
                &peer.name,
            )?);
            return Ok(false);
        }
    }
    let progressed = target.size > head.size;
    if progressed {
        // A larger checkpoint must extend this node's latest signed one; the
        // log's own failed proof is kept as evidence when it proves a fork.
        let conflict = check_larger(fed, rpc, &local, Vec::new(), &target, &served.note, &peer.name).await?;
        if let Some(detail) = conflict {
            anyhow::bail!("{} serves a checkpoint that does not extend this node's: {detail}", peer.name);
        }
        catch_up(fed, peer, rpc, &local, &target, &served.note, progress).await?;
        crate::metrics::get().set_mirror_lag(&peer.name, target.size, local.head().size);
    } else if target.size == head.size {
        // Same checkpoint: gather the cosignatures the peer has collected.
        merge_cosignatures(&local, target.size, &served.note)?;
        // A catch-up that stored every entry but stopped before publishing
        // (or one that ended at this size in an earlier run) is published
        // now that the checkpoint is stored.
        if fed.registry.latest().cut.size(&peer.log_id) != Some(head.size) {
            fed.publish_mirror(&local, head.size, head.size, &[])?;
        }
    }
    cosign(fed, peer, rpc, &local, &target, &served.note).await?;
    gossip(fed, peer, rpc).await?;
    Ok(progressed)
}

/// A verified chunk being stored on a blocking thread.
struct Storing {
    task: tokio::task::JoinHandle<Result<qtrace_store::Head, qtrace_store::StoreError>>,
    end: u64,
}

impl Storing {
    /// Waits for the store. The chunk's registry records are not applied
    /// here: they join the registry when the catch-up reaches the peer's
    /// checkpoint, the first size a view can read the mirror at.
    async fn finish(self, peer: &Peer, progress: &Progress, target: u64) -> anyhow::Result<()> {
        let stored = self.task.await.map_err(|e| anyhow::anyhow!("storing mirrored entries failed to run: {e}"))?;
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
/// the pipeline after the chunk being stored, which was verified. The
/// registry records of the whole catch-up are published with the mirror
/// at the target checkpoint, once the last chunk (which stores it) is
/// stored: the registry moves from one checkpoint of the log to the next.
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
    let mut carried: Vec<(u64, [u8; 32], Vec<u8>)> = Vec::new();
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
                let (entries, registry, new_frontier) = verified;
                let end = next + entries.len() as u64;
                check_against_target(rpc, peer, target, next, end, &new_frontier.root()).await?;
                let note = (end == target.size).then(|| target_note.to_string());
                carried.extend(
                    registry
                        .iter()
                        .filter_map(|i| entries.get(*i))
                        .map(|n| (n.entry.seq, n.entry.signer, n.entry.event.clone())),
                );
                if let Some(last) = entries.last() {
                    prev = last.hash;
                }
                // The chunk before must be stored first: appends are in
                // order.
                if let Some(before) = storing.take() {
                    before.finish(peer, progress, target.size).await?;
                }
                let store = local.clone();
                storing = Some(Storing {
                    task: tokio::task::spawn_blocking(move || store_verified(&store, &entries, note)),
                    end,
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
        && let Err(stored) = last.finish(peer, progress, target.size).await
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
    // Every entry up to the target is stored, and its checkpoint with the
    // last of them.
    fed.publish_mirror(local, target.size, head.size, &carried)
}
