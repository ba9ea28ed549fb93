//! Gossip: comparing the checkpoints a peer holds of other logs with this
//! node's own view of them.

use qtrace_ledger::hash::LogId;
use qtrace_ledger::note;
use qtrace_ledger::pb;
use qtrace_rpc::rpc::ledger_client::LedgerClient;
use tonic::transport::Channel;

use super::evidence::{check_larger, mirror_evidence};
use super::{Federation, Peer};

/// Compares the checkpoints a peer holds of other logs with this node's.
/// A conflict with this node's verified mirror is proven from the mirror; a
/// larger checkpoint is checked with a consistency proof the peer serves,
/// which proves a fork only if it rebuilds the log's own signed root (a
/// peer serving a bad proof about an honest log proves nothing).
pub(super) async fn gossip(fed: &Federation, peer: &Peer, rpc: &mut LedgerClient<Channel>) -> anyhow::Result<()> {
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
        if theirs.size <= head.size {
            let ours = local.root(theirs.size)?;
            if ours != theirs.root {
                let detail = format!(
                    "{} holds a checkpoint of size {} with root {}, but this node's verified entries of the same log give {}",
                    peer.name,
                    theirs.size,
                    hex::encode(theirs.root),
                    hex::encode(ours)
                );
                fed.record_equivocation(mirror_evidence(
                    &local,
                    checkpoint.note.clone(),
                    theirs.size,
                    detail,
                    &peer.name,
                )?);
            }
            continue;
        }
        // Their tree is larger: ask them to prove it extends this node's
        // latest signed checkpoint of the log.
        check_larger(fed, rpc, &local, log.0.to_vec(), &theirs, &checkpoint.note, &peer.name).await?;
    }
    Ok(())
}
