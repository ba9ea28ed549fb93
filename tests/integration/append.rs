//! The append path over gRPC: receipts, proofs, refusals, duplicates,
//! restarts and live subscriptions.

use std::time::Duration;

use qtrace_client::rpc::ledger_client::LedgerClient;
use qtrace_ledger::entry::Entry;
use qtrace_ledger::merkle;
use qtrace_ledger::note;
use qtrace_ledger::pb::{self, event::Body};
use qtrace_tests::*;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

/// Checks a receipt the way a lab's client would: the checkpoint is signed
/// by the log key and the inclusion proof leads from the entry to its root.
fn check_receipt(node: &Node, receipt: &pb::AppendReceipt) {
    let checkpoint = receipt.checkpoint.as_ref().expect("receipt has a checkpoint");
    let opened = note::open_checkpoint(&checkpoint.note, &node.vkey(), &[]).expect("checkpoint signed by the log");
    let proof = receipt.inclusion.as_ref().expect("receipt has a proof");
    assert_eq!(proof.tree_size, opened.checkpoint.size);
    assert_eq!(proof.leaf_index, receipt.seq);
    let path: Vec<[u8; 32]> = proof.path.iter().map(|h| h.as_slice().try_into().expect("32-byte hash")).collect();
    let leaf: [u8; 32] = receipt.entry_hash.as_slice().try_into().expect("32-byte entry hash");
    merkle::verify_inclusion(receipt.seq, proof.tree_size, &leaf, &path, &opened.checkpoint.root)
        .expect("inclusion proof verifies");
    assert_eq!(receipt.log_id, node.log_id().0.to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_produce_inspect_certify_with_verified_receipts() {
    let node = Node::start();
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;
    let produced = cast.factory.append(&mut client, production(GTIN, "LOT-1")).await.expect("production");
    check_receipt(&node, &produced);
    let mut sample = inspection(GTIN, "LOT-1", "SH-2026-0001", true);
    sample.parents = vec![record_ref(&produced)];
    let inspected = cast.lab.append(&mut client, sample).await.expect("inspection");
    check_receipt(&node, &inspected);
    let issued = cast
        .body
        .append(&mut client, certificate(CERT_BODY, "CQC-001", FACTORY, GTIN, vec![record_ref(&inspected)]))
        .await
        .expect("certificate");
    check_receipt(&node, &issued);
    assert_eq!(issued.seq, inspected.seq + 1);

    // The entry read back is the same bytes, hash and signature.
    let entry = client
        .get_entry(pb::GetEntryRequest { key: Some(pb::get_entry_request::Key::Seq(issued.seq)), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let decoded = Entry::from_pb(&entry).unwrap();
    assert_eq!(decoded.hash().0.to_vec(), issued.entry_hash);
    decoded.verify_signature().unwrap();

    // Queries find the records by lot, certificate and organisation, and
    // children of the inspection include the certificate.
    let by_lot = client
        .query(pb::QueryRequest {
            key: Some(pb::query_request::Key::ProductCode(format!("(01){GTIN}(10)LOT-1"))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let seqs: Vec<u64> = by_lot.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![produced.seq, inspected.seq]);
    let by_cert = client
        .query(pb::QueryRequest {
            key: Some(pb::query_request::Key::Certificate(cert_key(CERT_BODY, "CQC-001"))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_cert.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![issued.seq]);
    let children = client
        .query(pb::QueryRequest {
            key: Some(pb::query_request::Key::ChildrenOf(record_ref(&inspected))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(children.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![issued.seq]);

    // Pagination walks every organisation record page by page.
    let mut token = String::new();
    let mut all = Vec::new();
    loop {
        let page = client
            .query(pb::QueryRequest {
                key: Some(pb::query_request::Key::OrganisationUscc(FACTORY.into())),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        all.extend(page.entries.iter().map(|e| e.seq));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(all, sorted, "pages are ascending and disjoint");
    assert!(all.contains(&issued.seq) && all.len() >= 3, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_class_writes_nothing() {
    let mut node = Node::start();
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;
    let produced = cast.factory.append(&mut client, production(GTIN, "LOT-9")).await.unwrap();
    let issued = cast.body.append(&mut client, certificate(CERT_BODY, "CQC-9", FACTORY, GTIN, vec![])).await.unwrap();
    let size_before = client.get_log_info(pb::GetLogInfoRequest {}).await.unwrap().into_inner().size;
    assert_eq!(size_before, issued.seq + 1);

    let mut bad_signature = cast.factory.sign(&production(GTIN, "LOT-10"));
    bad_signature.signature[0] ^= 1;
    let unknown_parent = {
        let mut e = inspection(GTIN, "LOT-9", "R-2", true);
        let mut parent = record_ref(&produced);
        parent.seq = 9_999;
        e.parents = vec![parent];
        e
    };
    let wrong_parent_hash = {
        let mut e = inspection(GTIN, "LOT-9", "R-3", true);
        let mut parent = record_ref(&produced);
        parent.entry_hash = vec![0; 32];
        e.parents = vec![parent];
        e
    };
    let restore_active = cert_change(
        CERT_BODY,
        "CQC-9",
        Body::CertificateRestored(pb::CertificateRestored {
            certificate: Some(cert_key(CERT_BODY, "CQC-9")),
            reason: "x".into(),
        }),
    );
    let far_future = {
        let mut e = production(GTIN, "LOT-11");
        e.event_time = Some(pb::EventTime { unix_millis: now_millis() + 3 * 86_400_000, offset_minutes: 480 });
        e
    };
    let stranger = Actor::new(99, FACTORY);
    let cases: Vec<(&str, pb::SignedEvent, Code, &str)> = vec![
        (
            "bad GTIN check digit",
            cast.factory.sign(&production("09520123456789", "L")),
            Code::InvalidArgument,
            "check digit",
        ),
        (
            "garbage bytes",
            pb::SignedEvent { event: vec![0xff; 10], ..cast.factory.sign(&production(GTIN, "L")) },
            Code::InvalidArgument,
            "event",
        ),
        ("bad signature", bad_signature, Code::Unauthenticated, "signature"),
        ("unregistered key", stranger.sign(&production(GTIN, "LOT-12")), Code::PermissionDenied, "not registered"),
        (
            "manufacturer inspects",
            cast.factory.sign(&inspection(GTIN, "LOT-9", "R-1", true)),
            Code::PermissionDenied,
            "testing lab",
        ),
        (
            "lab out of scope",
            cast.lab.sign(&inspection("04006381333931", "L1", "R-4", true)),
            Code::PermissionDenied,
            "scope",
        ),
        ("unknown parent", cast.lab.sign(&unknown_parent), Code::NotFound, "not in the ledger"),
        ("wrong parent hash", cast.lab.sign(&wrong_parent_hash), Code::InvalidArgument, "entry hash"),
        ("restore an active certificate", cast.body.sign(&restore_active), Code::FailedPrecondition, "not allowed"),
        (
            "duplicate certificate number",
            cast.body.sign(&certificate(CERT_BODY, "CQC-9", FACTORY, GTIN, vec![])),
            Code::AlreadyExists,
            "already exists",
        ),
        ("event 3 days in the future", cast.factory.sign(&far_future), Code::InvalidArgument, "24 hours"),
    ];
    for (name, signed, code, needle) in cases {
        let status = client.append(pb::AppendRequest { event: Some(signed) }).await.expect_err(name);
        assert_eq!(status.code(), code, "{name}: {}", status.message());
        assert!(status.message().contains(needle), "{name}: {:?} lacks {needle:?}", status.message());
    }
    let missing = client.append(pb::AppendRequest { event: None }).await.expect_err("no event");
    assert_eq!(missing.code(), Code::InvalidArgument);

    // Blacklisting: the regulator lists the manufacturer, whose production
    // is then refused; after delisting it is accepted again.
    let listing = blacklisting(FACTORY);
    cast.root.append(&mut client, listing).await.unwrap();
    let status = cast.factory.append(&mut client, production(GTIN, "LOT-13")).await.expect_err("blacklisted");
    assert_eq!(status.code(), Code::FailedPrecondition, "{}", status.message());
    assert!(status.message().contains("blacklist"), "{}", status.message());
    let size_after = client.get_log_info(pb::GetLogInfoRequest {}).await.unwrap().into_inner().size;
    assert_eq!(size_after, size_before + 1, "only the blacklisting was written");

    // An oversize batch is refused whole.
    let events: Vec<pb::SignedEvent> =
        (0..1_001).map(|i| cast.factory.sign(&production(GTIN, &format!("B{i}")))).collect();
    let status = client.append_batch(pb::AppendBatchRequest { events }).await.expect_err("oversize batch");
    assert_eq!(status.code(), Code::InvalidArgument);

    // What was written is whole: the stopped node's store passes the audit.
    drop(client);
    assert!(node.stop().success(), "SIGTERM exits 0");
    let (passed, output) = audit(&node.data);
    assert!(passed, "the store audits clean after the refusals:\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_idempotent_and_batches_report_each_event() {
    let node = Node::start();
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;
    let signed = cast.factory.sign(&production(GTIN, "DUP-1"));
    let first = client.append(pb::AppendRequest { event: Some(signed.clone()) }).await.unwrap().into_inner();
    let again = client.append(pb::AppendRequest { event: Some(signed.clone()) }).await.unwrap().into_inner();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!((again.seq, &again.entry_hash), (first.seq, &first.entry_hash));
    check_receipt(&node, &again);

    // In one batch: new events, a duplicate of an earlier one, a duplicate
    // within the batch, and a refused one.
    let fresh: Vec<pb::SignedEvent> =
        (0..5).map(|i| cast.factory.sign(&production(GTIN, &format!("BATCH-{i}")))).collect();
    let mut events = fresh.clone();
    events.push(signed);
    events.push(fresh[0].clone());
    events.push(cast.lab.sign(&production(GTIN, "NOT-A-LAB-JOB")));
    let results = client.append_batch(pb::AppendBatchRequest { events }).await.unwrap().into_inner().results;
    assert_eq!(results.len(), 8);
    let receipts: Vec<Option<&pb::AppendReceipt>> = results
        .iter()
        .map(|r| match &r.outcome {
            Some(pb::append_result::Outcome::Receipt(receipt)) => Some(receipt),
            _ => None,
        })
        .collect();
    for (i, receipt) in receipts.iter().take(5).enumerate() {
        let receipt = receipt.expect("fresh event appended");
        assert!(!receipt.duplicate);
        assert_eq!(receipt.seq, first.seq + 1 + i as u64);
        check_receipt(&node, receipt);
    }
    assert_eq!(receipts[5].map(|r| (r.seq, r.duplicate)), Some((first.seq, true)));
    assert_eq!(receipts[6].map(|r| (r.seq, r.duplicate)), Some((first.seq + 1, true)));
    match &results[7].outcome {
        Some(pb::append_result::Outcome::Refusal(refusal)) => {
            assert_eq!(refusal.code, Code::PermissionDenied as i32, "{}", refusal.message)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let size = client.get_log_info(pb::GetLogInfoRequest {}).await.unwrap().into_inner().size;
    assert_eq!(size, first.seq + 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_continues_the_same_log_consistently() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut node = Node::start_in(&data, &[]);
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;
    let signed_before = cast.factory.sign(&production(GTIN, "R-1"));
    let before = client.append(pb::AppendRequest { event: Some(signed_before.clone()) }).await.unwrap().into_inner();
    let old_checkpoint = before.checkpoint.clone().unwrap();
    let vkey = node.vkey();
    assert!(node.stop().success(), "SIGTERM exits 0");

    let node = Node::start_in(&data, &[]);
    assert_eq!(node.vkey().to_string(), vkey.to_string(), "same log key");
    let mut client = node.client().await;
    let latest =
        client.get_checkpoint(pb::GetCheckpointRequest { size: 0, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(latest.note, old_checkpoint.note, "the last checkpoint survives the restart");
    let after = cast.factory.append(&mut client, production(GTIN, "R-2")).await.unwrap();
    assert_eq!(after.seq, before.seq + 1, "sequence continues");
    let entry = client
        .get_entry(pb::GetEntryRequest { key: Some(pb::get_entry_request::Key::Seq(after.seq)), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entry.prev_hash, before.entry_hash, "chain continues");
    check_receipt(&node, &after);

    // The new checkpoint is consistent with the one before the restart.
    let new_cp = note::open_checkpoint(&after.checkpoint.unwrap().note, &vkey, &[]).unwrap().checkpoint;
    let old_cp = note::open_checkpoint(&old_checkpoint.note, &vkey, &[]).unwrap().checkpoint;
    let proof = client
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            old_size: old_cp.size,
            new_size: new_cp.size,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<[u8; 32]> = proof.proof.unwrap().path.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
    merkle::verify_consistency(old_cp.size, new_cp.size, &path, &old_cp.root, &new_cp.root).unwrap();

    // The same signed event submitted again after the restart is recognised
    // as the record from before it.
    let again = client.append(pb::AppendRequest { event: Some(signed_before) }).await.unwrap().into_inner();
    assert!(again.duplicate);
    assert_eq!((again.seq, again.entry_hash), (before.seq, before.entry_hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_catches_up_then_follows_live() {
    let node = Node::start();
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;
    let size = client.get_log_info(pb::GetLogInfoRequest {}).await.unwrap().into_inner().size;
    let mut stream = client.clone().subscribe(pb::SubscribeRequest { from_seq: 0 }).await.unwrap().into_inner();
    for seq in 0..size {
        let entry = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(entry.seq, seq);
    }
    for i in 0..3 {
        let receipt = cast.factory.append(&mut client, production(GTIN, &format!("LIVE-{i}"))).await.unwrap();
        let entry = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        assert_eq!((entry.seq, entry.entry_hash), (receipt.seq, receipt.entry_hash));
    }
}

/// Submits `signed` and expects the refusal `code` with `needle` in its message.
async fn refused(client: &mut LedgerClient<Channel>, what: &str, signed: &pb::SignedEvent, code: Code, needle: &str) {
    let status = client.append(pb::AppendRequest { event: Some(signed.clone()) }).await.expect_err(what);
    assert_eq!(status.code(), code, "{what}: {}", status.message());
    assert!(status.message().contains(needle), "{what}: {:?} lacks {needle:?}", status.message());
}

/// Submits `signed`, refused before, and expects a new entry at the end of
/// the log: not a duplicate of anything. Submitted again, it is the
/// duplicate of that entry.
async fn appends_as_new(client: &mut LedgerClient<Channel>, what: &str, signed: &pb::SignedEvent) {
    let size = client.get_log_info(pb::GetLogInfoRequest {}).await.unwrap().into_inner().size;
    let receipt = client
        .append(pb::AppendRequest { event: Some(signed.clone()) })
        .await
        .unwrap_or_else(|e| panic!("{what}: refused again: {}", e.message()))
        .into_inner();
    assert!(!receipt.duplicate, "{what}: answered as a duplicate of entry {}", receipt.seq);
    assert_eq!(receipt.seq, size, "{what}: not appended at the end of the log");
    let again = client.append(pb::AppendRequest { event: Some(signed.clone()) }).await.unwrap().into_inner();
    assert!(again.duplicate, "{what}: the resubmission is not a duplicate");
    assert_eq!((again.seq, again.entry_hash), (receipt.seq, receipt.entry_hash), "{what}");
}

/// Refused input writes nothing, not even a trace that would make the same
/// signed bytes a duplicate later: once the cause of each refusal is
/// removed (a delisting, a registration, a suspension), the very event that
/// was refused appends as a new entry. The store then passes the audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_appends_as_new_once_its_cause_is_removed() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut node = Node::start_in(&data, &[]);
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;

    // Blacklisted (质量失信黑名单), then delisted (信用修复).
    let listing = blacklisting(FACTORY);
    cast.root.append(&mut client, listing).await.unwrap();
    let blacklisted = cast.factory.sign(&production(GTIN, "REFUSED-1"));
    refused(&mut client, "blacklisted", &blacklisted, Code::FailedPrecondition, "blacklist").await;
    let delisting = event(
        org_subject(FACTORY),
        Body::Delisted(pb::Delisted {
            uscc: FACTORY.into(),
            reason: "信用修复 credit repaired".into(),
            delisted_on: "2026-11-30".into(),
        }),
    );
    cast.root.append(&mut client, delisting).await.unwrap();
    appends_as_new(&mut client, "after delisting", &blacklisted).await;

    // A key of a registered organisation, signing before it is registered.
    let newcomer = Actor::new(21, FACTORY);
    let unregistered_key = newcomer.sign(&production(GTIN, "REFUSED-2"));
    refused(&mut client, "unregistered key", &unregistered_key, Code::PermissionDenied, "not registered").await;
    cast.root.append(&mut client, register_key(&newcomer, "赵敏", "质量经理")).await.unwrap();
    appends_as_new(&mut client, "after registering the key", &unregistered_key).await;

    // A key registration for an organisation not yet registered.
    let distributor = Actor::new(22, DISTRIBUTOR);
    let key_of_unknown_org = cast.root.sign(&register_key(&distributor, "孙丽", "物流主管"));
    refused(&mut client, "unknown organisation", &key_of_unknown_org, Code::NotFound, "is not registered").await;
    let org = register_org(DISTRIBUTOR, "Example Logistics (示例物流)", &[pb::Role::Distributor], &[]);
    cast.root.append(&mut client, org).await.unwrap();
    appends_as_new(&mut client, "after registering the organisation", &key_of_unknown_org).await;

    // Restoring (恢复) an active certificate, then the same restoration
    // after the certificate was suspended (暂停).
    cast.body.append(&mut client, certificate(CERT_BODY, "CQC-R1", FACTORY, GTIN, vec![])).await.unwrap();
    let restore = cast.body.sign(&cert_change(
        CERT_BODY,
        "CQC-R1",
        Body::CertificateRestored(pb::CertificateRestored {
            certificate: Some(cert_key(CERT_BODY, "CQC-R1")),
            reason: "corrective actions verified".into(),
        }),
    ));
    refused(&mut client, "restore an active certificate", &restore, Code::FailedPrecondition, "not allowed").await;
    cast.body.append(&mut client, suspend(CERT_BODY, "CQC-R1", "supervision audit failed")).await.unwrap();
    appends_as_new(&mut client, "after suspending the certificate", &restore).await;

    drop(client);
    assert!(node.stop().success(), "SIGTERM exits 0");
    let (passed, output) = audit(&data);
    assert!(passed, "the store audits clean after the refusals:\n{output}");
}
