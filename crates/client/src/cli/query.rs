//! The reading commands: `get`, `checkpoint`, `proof` and `consistency`.
//! Each rechecks what the node sends (hashes recomputed, signatures and
//! proofs verified locally) and refuses, exit 1, when it does not check out.

use qtrace_client::hash::LogId;
use qtrace_client::input::RecordKey;
use qtrace_client::merkle;
use qtrace_client::note::Verifier;
use qtrace_client::pb;
use qtrace_client::render::{self, kind_label};
use qtrace_client::time::{format_event_time, format_micros_utc};
use qtrace_client::verify::{self, CheckError, CheckedCheckpoint};
use serde_json::{Value, json};

use super::{CheckpointArgs, ConsistencyArgs, Ctx, Failure, ProofArgs, Trust};

/// The log's verifier key from --vkey / QTRACE_VKEY or DIR/log.vkey, if given.
fn trusted_key(trust: &Trust) -> Result<Option<Verifier>, Failure> {
    let (text, source) = match (&trust.vkey, &trust.data) {
        (Some(_), Some(_)) => {
            return Err(Failure::Usage("give either --vkey (or QTRACE_VKEY) or --data, not both".to_owned()));
        }
        (Some(vkey), None) => (vkey.clone(), "--vkey".to_owned()),
        (None, Some(dir)) => {
            let path = dir.join("log.vkey");
            let text =
                std::fs::read_to_string(&path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
            (text, path.display().to_string())
        }
        (None, None) => return Ok(None),
    };
    Verifier::parse(text.trim())
        .map(Some)
        .map_err(|e| Failure::Usage(format!("{source}: not a C2SP verifier key: {e}")))
}

fn hexes(hashes: &[merkle::Hash]) -> Value {
    hashes.iter().map(hex::encode).collect()
}

fn signature_line(checkpoint: &CheckedCheckpoint, key: Option<&Verifier>) -> String {
    match key {
        Some(key) if checkpoint.signed => format!("verified 已验证 with {}", key.name()),
        _ => "NOT verified 未验证 (give --vkey or --data to check the log's signature)".to_owned(),
    }
}

pub async fn get(ctx: &mut Ctx, record: RecordKey) -> Result<(), Failure> {
    let checked = ctx.fetch(record).await?;
    let entry = &checked.entry;
    let event_time = checked.event.event.event_time.as_ref().map(format_event_time).unwrap_or_default();
    let text = format!(
        "Record 记录 #{}: {}\n  entry hash 条目哈希: {}\n  previous 前一条目: {}\n  log 日志: {}\n  \
         logged at 记录时间: {}\n  event time 事件时间: {event_time}\n  signer 签名公钥: {}\n  \
         checks 校验: entry hash recomputed 条目哈希已重算, signature verified 签名已验证\n\
         Event 事件内容:\n{}",
        entry.seq,
        kind_label(checked.event.kind),
        checked.hash,
        entry.prev_hash,
        checked.log_id,
        format_micros_utc(entry.logged_at_micros),
        hex::encode(entry.signer),
        render::event_text(&checked.event.event, 2),
    );
    ctx.emit(render::entry_json(&checked), &text);
    Ok(())
}

pub async fn checkpoint(ctx: &mut Ctx, args: CheckpointArgs) -> Result<(), Failure> {
    let key = trusted_key(&args.trust)?;
    let client = ctx.client().await?;
    let request = pb::GetCheckpointRequest { size: args.size.unwrap_or(0), log_id: Vec::new() };
    let wire = client.get_checkpoint(request).await?.into_inner();
    let checked = verify::check_checkpoint(&wire, key.as_ref())?;
    // What the node says its key is: shown for first contact only, never
    // used to verify (that would let a node vouch for itself).
    let node_vkey = match client.get_log_info(pb::GetLogInfoRequest {}).await {
        Ok(info) => Some(info.into_inner().vkey).filter(|v| !v.is_empty()),
        Err(_) => None,
    };
    let cp = &checked.checkpoint;
    let value = json!({
        "origin": cp.origin,
        "size": cp.size,
        "root": hex::encode(cp.root),
        "note": checked.note,
        "vkey": key.as_ref().map(ToString::to_string),
        "verified": checked.signed,
        "node_vkey": node_vkey,
    });
    let mut text = format!(
        "Checkpoint 检查点 of {}\n  size 树大小: {}\n  root 根哈希: {}\n  signature 签名: {}\n",
        cp.origin,
        cp.size,
        hex::encode(cp.root),
        signature_line(&checked, key.as_ref())
    );
    if key.is_none()
        && let Some(vkey) = &node_vkey
    {
        text.push_str(&format!(
            "  the node says its verifier key is {vkey}\n  (confirm it with the log's operator before trusting it)\n"
        ));
    }
    text.push_str(&format!("Signed note 签名文本:\n{}", checked.note));
    ctx.emit(value, &text);
    Ok(())
}

pub async fn proof(ctx: &mut Ctx, args: ProofArgs) -> Result<(), Failure> {
    let key = trusted_key(&args.trust)?;
    let checked = ctx.fetch(args.record).await?;
    let seq = checked.entry.seq;
    if let Some(key) = &key {
        let log = LogId::of_key(key.public_key().as_bytes());
        if log != checked.log_id {
            return Err(Failure::Unverified(format!(
                "entry {seq} belongs to log {}, but the verifier key is the key of log {log}",
                checked.log_id
            )));
        }
    }
    let client = ctx.client().await?;
    let request = pb::GetInclusionProofRequest {
        key: Some(pb::get_inclusion_proof_request::Key::Seq(seq)),
        tree_size: args.size.unwrap_or(0),
        log_id: Vec::new(),
    };
    let response = client.get_inclusion_proof(request).await?.into_inner();
    if !response.entry_hash.is_empty() && response.entry_hash.as_slice() != checked.hash.0.as_slice() {
        return Err(CheckError::Unexpected {
            what: "the entry hash the proof is for",
            expected: format!("{} (recomputed from entry {seq})", checked.hash),
            found: hex::encode(&response.entry_hash),
        }
        .into());
    }
    let proof = response.proof.ok_or_else(|| CheckError::Missing("the node sent no inclusion proof".into()))?;
    let wire_checkpoint = match response.checkpoint {
        Some(checkpoint) => checkpoint,
        None => {
            let request = pb::GetCheckpointRequest { size: proof.tree_size, log_id: Vec::new() };
            client
                .get_checkpoint(request)
                .await
                .map_err(|status| match status.code() {
                    tonic::Code::NotFound => Failure::Unverified(format!(
                        "the node has no signed checkpoint at size {}, so the proof cannot be checked against a \
                     signed root; omit --size to use the latest",
                        proof.tree_size
                    )),
                    _ => status.into(),
                })?
                .into_inner()
        }
    };
    let checkpoint = verify::check_checkpoint(&wire_checkpoint, key.as_ref())?;
    let inclusion = verify::check_inclusion(seq, checked.hash, &proof, &checkpoint.checkpoint)?;
    let value = json!({
        "seq": seq,
        "entry_hash": checked.hash.to_hex(),
        "log_id": checked.log_id.to_hex(),
        "tree_size": inclusion.tree_size,
        "root": hex::encode(inclusion.root),
        "path": hexes(&inclusion.path),
        "verified": true,
        "checkpoint_verified": checkpoint.signed,
        "origin": checkpoint.checkpoint.origin,
    });
    let text = format!(
        "Included 已收录: entry #{seq} ({}) is in the log's tree of size {}\n  entry hash 条目哈希: {} \
         (recomputed 已重算)\n  root 根哈希: {}\n  inclusion proof 包含证明: verified 已验证 ({} hashes)\n  \
         checkpoint signature 检查点签名: {}\n",
        kind_label(checked.event.kind),
        inclusion.tree_size,
        checked.hash,
        hex::encode(inclusion.root),
        inclusion.path.len(),
        signature_line(&checkpoint, key.as_ref()),
    );
    ctx.emit(value, &text);
    Ok(())
}

pub async fn consistency(ctx: &mut Ctx, args: ConsistencyArgs) -> Result<(), Failure> {
    let key = trusted_key(&args.trust)?;
    if args.new_size != 0 && args.new_size < args.old_size {
        return Err(Failure::Usage(format!(
            "NEW_SIZE {} is smaller than OLD_SIZE {}; a log only grows",
            args.new_size, args.old_size
        )));
    }
    let client = ctx.client().await?;
    let request =
        pb::GetConsistencyProofRequest { old_size: args.old_size, new_size: args.new_size, log_id: Vec::new() };
    let response = client.get_consistency_proof(request).await?.into_inner();
    let proof = response.proof.ok_or_else(|| CheckError::Missing("the node sent no consistency proof".into()))?;
    let unexpected = |what, expected: u64, found: u64| CheckError::Unexpected {
        what,
        expected: expected.to_string(),
        found: found.to_string(),
    };
    if proof.old_size != args.old_size {
        return Err(unexpected("the proof's old size", args.old_size, proof.old_size).into());
    }
    if args.new_size != 0 && proof.new_size != args.new_size {
        return Err(unexpected("the proof's new size", args.new_size, proof.new_size).into());
    }
    let old_root = verify::root_hash("the old root's length", &response.old_root)?;
    let new_root = verify::root_hash("the new root's length", &response.new_root)?;
    let path = verify::proof_path(&proof.path)?;
    merkle::verify_consistency(proof.old_size, proof.new_size, &path, &old_root, &new_root)
        .map_err(|source| CheckError::Proof { what: "the consistency proof does not verify", source })?;

    // With the log's key, each root must also be the one the log signed at
    // that size, where the node kept a checkpoint for it.
    let mut signed = [false, false];
    if let Some(key) = &key {
        for (slot, (size, root)) in signed.iter_mut().zip([(proof.old_size, old_root), (proof.new_size, new_root)]) {
            let wire = match client.get_checkpoint(pb::GetCheckpointRequest { size, log_id: Vec::new() }).await {
                Ok(wire) => wire.into_inner(),
                Err(status) if status.code() == tonic::Code::NotFound => continue,
                Err(status) => return Err(status.into()),
            };
            let checkpoint = verify::check_checkpoint(&wire, Some(key))?;
            if checkpoint.checkpoint.root != root {
                return Err(CheckError::Unexpected {
                    what: "the root the log signed",
                    expected: format!("{} (the proof's root at size {size})", hex::encode(root)),
                    found: hex::encode(checkpoint.checkpoint.root),
                }
                .into());
            }
            *slot = true;
        }
    }
    let value = json!({
        "old_size": proof.old_size,
        "new_size": proof.new_size,
        "old_root": hex::encode(old_root),
        "new_root": hex::encode(new_root),
        "path": hexes(&path),
        "verified": true,
        "old_root_signed": signed[0],
        "new_root_signed": signed[1],
    });
    let signed_text = |is_signed: bool| {
        if is_signed {
            "matches the log's signed checkpoint 与签名检查点一致"
        } else if key.is_some() {
            "no signed checkpoint at this size 此大小无签名检查点"
        } else {
            "not checked against a signed checkpoint (give --vkey or --data)"
        }
    };
    let text = format!(
        "Consistent 一致: the log's tree of size {} extends the tree of size {}; nothing earlier was \
         changed\n  old root 旧根哈希: {} — {}\n  new root 新根哈希: {} — {}\n  consistency proof 一致性证明: \
         verified 已验证 ({} hashes)\n",
        proof.new_size,
        proof.old_size,
        hex::encode(old_root),
        signed_text(signed[0]),
        hex::encode(new_root),
        signed_text(signed[1]),
        path.len(),
    );
    ctx.emit(value, &text);
    Ok(())
}
