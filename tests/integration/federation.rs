//! Federation across real node processes: a certificate issued in Hangzhou
//! on a Shanghai lab's report, verified in Guangdong with the third
//! agency's cosignature; a mirror killed mid-catch-up converging; and a log
//! that shows two histories caught with evidence.

use qtrace_ledger::hash::LogId;
use qtrace_ledger::note::Verifier;
use qtrace_ledger::pb;
use qtrace_tests::*;

/// A client of `node`, and the factory (示例乳业) registered there with its
/// key by the node's development root authority.
async fn registered_factory(
    node: &Node,
) -> (qtrace_client::rpc::ledger_client::LedgerClient<tonic::transport::Channel>, Actor) {
    let mut client = node.client().await;
    let root = Actor { key: node.authority_key(), uscc: REGULATOR.into() };
    let factory = Actor::new(13, FACTORY);
    root.append(&mut client, register_org(FACTORY, "示例乳业", &[pb::Role::Manufacturer], &[])).await.unwrap();
    root.append(&mut client, register_key(&factory, "张伟", "首席质量官")).await.unwrap();
    (client, factory)
}

fn log_of(planned: &Planned) -> LogId {
    let vkey = Verifier::parse(&planned.vkey).unwrap();
    LogId::of_key(&vkey.public_key().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_hangzhou_on_a_shanghai_report_verified_in_guangdong() {
    let temp = tempfile::tempdir().unwrap();
    let sh = Planned::new(temp.path(), "sh", 31);
    let hz = Planned::new(temp.path(), "hz", 32);
    let gd = Planned::new(temp.path(), "gd", 33);
    let sh_node = sh.start(&[&hz, &gd], &[]);
    let hz_node = hz.start(&[&sh, &gd], &[]);
    let gd_node = gd.start(&[&sh, &hz], &["--witness-quorum", "2"]);
    let mut sh_client = sh_node.client().await;
    let mut hz_client = hz_node.client().await;
    let gd_client = gd_node.client().await;

    // Shanghai registers its lab and a factory; Hangzhou its certification body.
    let sh_root = Actor { key: sh_node.authority_key(), uscc: REGULATOR.into() };
    let hz_root = Actor { key: hz_node.authority_key(), uscc: REGULATOR.into() };
    let lab = Actor::new(11, LAB);
    let factory = Actor::new(13, FACTORY);
    let body = Actor::new(12, CERT_BODY);
    sh_root
        .append(&mut sh_client, register_org(LAB, "上海食品检验所", &[pb::Role::TestingLab], &["0952"]))
        .await
        .unwrap();
    sh_root.append(&mut sh_client, register_org(FACTORY, "示例乳业", &[pb::Role::Manufacturer], &[])).await.unwrap();
    sh_root.append(&mut sh_client, register_key(&lab, "李娜", "检验员")).await.unwrap();
    sh_root.append(&mut sh_client, register_key(&factory, "张伟", "首席质量官")).await.unwrap();
    hz_root
        .append(&mut hz_client, register_org(CERT_BODY, "杭州认证中心", &[pb::Role::CertificationBody], &["0952"]))
        .await
        .unwrap();
    hz_root.append(&mut hz_client, register_key(&body, "王强", "认证决定人")).await.unwrap();
    let produced = factory.append(&mut sh_client, production(GTIN, "SH-LOT-1")).await.unwrap();
    let mut report = inspection(GTIN, "SH-LOT-1", "SH-2026-0042", true);
    report.parents = vec![record_ref(&produced)];
    let report = lab.append(&mut sh_client, report).await.unwrap();

    // Hangzhou must have mirrored the report before it can rest a
    // certificate on it.
    let sh_log = log_of(&sh);
    let sh_size = report.seq + 1;
    eventually(60, "Hangzhou mirroring Shanghai", || {
        let mut c = hz_client.clone();
        async move { (held(&mut c, &sh_log).await >= sh_size).then_some(()) }
    })
    .await;
    let issued = body
        .append(&mut hz_client, certificate(CERT_BODY, "HZ-CQC-7", FACTORY, GTIN, vec![record_ref(&report)]))
        .await
        .expect("certificate resting on a report in another agency's log");

    // Guangdong verifies it: VALID once two witnesses cosign the checkpoints.
    let subject = pb::verdict_subject::Kind::Certificate(cert_key(CERT_BODY, "HZ-CQC-7"));
    let report = eventually(90, "a VALID verdict in Guangdong with two witnesses", || {
        let mut c = gd_client.clone();
        let subject = subject.clone();
        async move {
            let r = c
                .verify(pb::VerifyRequest {
                    subject: Some(pb::VerdictSubject { kind: Some(subject) }),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            (r.verdict == "VALID").then_some(r)
        }
    })
    .await;
    let integrity = report.checks.iter().find(|c| c.name == "integrity").unwrap();
    assert!(integrity.detail.contains("qtrace.test/sh"), "the third agency cosigned: {}", integrity.detail);
    assert!(integrity.detail.contains("qtrace.test/gd"), "{}", integrity.detail);
    let basis = report.checks.iter().find(|c| c.name == "basis").unwrap();
    assert!(basis.evidence.iter().any(|e| e.starts_with(&sh_log.to_hex())), "basis in Shanghai's log: {basis:?}");
    assert_eq!(issued.log_id, log_of(&hz).0.to_vec());

    // Hangzhou's own checkpoint carries the witnesses' cosignatures.
    let checkpoint = eventually(60, "cosignatures collected by Hangzhou", || {
        let mut c = hz_client.clone();
        async move {
            let cp = c.get_checkpoint(pb::GetCheckpointRequest::default()).await.ok()?.into_inner();
            (cp.note.contains("qtrace.test/sh") && cp.note.contains("qtrace.test/gd")).then_some(cp)
        }
    })
    .await;
    let witnesses: Vec<_> = [&sh, &gd]
        .iter()
        .map(|p| {
            qtrace_ledger::note::CosignatureVerifier::new(&p.origin, *Verifier::parse(&p.vkey).unwrap().public_key())
                .unwrap()
        })
        .collect();
    let opened =
        qtrace_ledger::note::open_checkpoint(&checkpoint.note, &Verifier::parse(&hz.vkey).unwrap(), &witnesses)
            .unwrap();
    assert_eq!(opened.cosigners.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_killed_mid_catch_up_converges_without_loss_or_duplicates() {
    let temp = tempfile::tempdir().unwrap();
    let src = Planned::new(temp.path(), "src", 41);
    let dst = Planned::new(temp.path(), "dst", 42);
    let src_node = src.start(&[], &[]);
    let (mut src_client, factory) = registered_factory(&src_node).await;
    for batch in 0..12 {
        let events = (0..1_000).map(|i| factory.sign(&production(GTIN, &format!("B{batch}-{i}")))).collect();
        let results = src_client.append_batch(pb::AppendBatchRequest { events }).await.unwrap().into_inner().results;
        assert!(results.iter().all(|r| matches!(r.outcome, Some(pb::append_result::Outcome::Receipt(_)))));
    }
    let src_log = log_of(&src);
    let total = held(&mut src_client, &src_log).await;
    assert_eq!(total, 12_003);

    // Start the mirror with small chunks and kill it part way.
    let mut dst_node = dst.start(&[&src], &["--mirror-chunk", "500"]);
    let mut dst_client = dst_node.client().await;
    let partial = eventually(120, "a partial catch-up", || {
        let mut c = dst_client.clone();
        async move {
            let n = held(&mut c, &src_log).await;
            (n > 0).then_some(n)
        }
    })
    .await;
    dst_node.kill();
    assert!(partial < total, "killed mid-catch-up ({partial} of {total})");

    let dst_node = dst.start(&[&src], &["--mirror-chunk", "500"]);
    dst_client = dst_node.client().await;
    eventually(180, "the mirror to converge", || {
        let mut c = dst_client.clone();
        async move { (held(&mut c, &src_log).await == total).then_some(()) }
    })
    .await;
    // The same entries, in the same order, once each: the mirror's signed
    // checkpoint of the source log is the source's own, and every entry
    // hash matches.
    let theirs = dst_client
        .get_checkpoint(pb::GetCheckpointRequest { size: 0, log_id: src_log.0.to_vec() })
        .await
        .unwrap()
        .into_inner();
    let ours = src_client
        .get_checkpoint(pb::GetCheckpointRequest { size: total, log_id: Vec::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((theirs.size, &theirs.root), (ours.size, &ours.root));
    use tokio_stream::StreamExt;
    let mut mirrored = dst_client
        .get_entries(pb::GetEntriesRequest { log_id: src_log.0.to_vec(), from: 0, to: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut original = src_client
        .get_entries(pb::GetEntriesRequest { log_id: Vec::new(), from: 0, to: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut count = 0u64;
    while let Some(entry) = mirrored.next().await {
        let entry = entry.unwrap();
        let expected = original.next().await.unwrap().unwrap();
        assert_eq!((entry.seq, &entry.entry_hash), (expected.seq, &expected.entry_hash));
        count += 1;
    }
    assert_eq!(count, total);
}

/// The first equivocation evidence `client`'s node keeps about `log`,
/// waited for up to `seconds`.
async fn first_evidence(
    client: &qtrace_client::rpc::ledger_client::LedgerClient<tonic::transport::Channel>,
    log: LogId,
    seconds: u64,
) -> pb::Equivocation {
    eventually(seconds, "equivocation evidence", || {
        let mut client = client.clone();
        async move {
            let list = client
                .get_equivocations(pb::GetEquivocationsRequest { log_id: log.0.to_vec() })
                .await
                .ok()?
                .into_inner();
            list.equivocations.into_iter().next()
        }
    })
    .await
}

/// The node's verdict on the genesis record of `log`.
async fn verdict_on_genesis(
    client: &mut qtrace_client::rpc::ledger_client::LedgerClient<tonic::transport::Channel>,
    log: LogId,
) -> pb::VerdictReport {
    let genesis = pb::RecordRef { log_id: log.0.to_vec(), seq: 0, entry_hash: Vec::new() };
    client
        .verify(pb::VerifyRequest {
            subject: Some(pb::VerdictSubject { kind: Some(pb::verdict_subject::Kind::Record(genesis)) }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_showing_two_histories_is_caught_with_evidence() {
    let temp = tempfile::tempdir().unwrap();
    let a = Planned::new(temp.path(), "a", 51);
    let a_fork = a.twin(temp.path(), "a-fork");
    let b = Planned::new(temp.path(), "b", 52);
    let c = Planned::new(temp.path(), "c", 53);
    // Two processes hold log A's key and each starts its own history.
    let _a1 = a.start(&[], &[]);
    let _a2 = a_fork.start(&[], &[]);
    // B is shown one history, C the other; B and C compare notes.
    let b_node = b.start(&[&a, &c], &[]);
    let _c_node = c.start(&[&a_fork, &b], &[]);
    let mut b_client = b_node.client().await;
    let a_log = log_of(&a);
    let evidence = first_evidence(&b_client, a_log, 90).await;
    let vkey = Verifier::parse(&a.vkey).unwrap();
    let conflict = qtrace_ledger::equivocation::validate(&evidence, &vkey).expect("the evidence holds up");
    assert!(conflict.starts_with("proven"), "{conflict}");

    // Every verdict on log A's records is now INVALID, with the evidence.
    let report = verdict_on_genesis(&mut b_client, a_log).await;
    assert_eq!(report.verdict, "INVALID", "{report:#?}");
    let check = report.checks.iter().find(|c| c.name == "equivocation").expect("an equivocation check");
    assert_eq!(check.evidence.len(), 2, "both signed notes are attached");
}

/// A log that serves its mirror a larger checkpoint on another history than
/// the one the mirror verified: catch-up stops, and the log's own
/// consistency proof, which rebuilds its larger signed root and another
/// root for the mirror's size, is kept as proven evidence (before, the
/// catch-up only failed and nothing was recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_larger_checkpoint_is_caught_with_evidence_at_catch_up() {
    let temp = tempfile::tempdir().unwrap();
    let a = Planned::new(temp.path(), "a", 71);
    let a_fork = a.twin(temp.path(), "a-fork");
    let b = Planned::new(temp.path(), "b", 72);
    let a_log = log_of(&a);
    // A's history: genesis and two registrations. Size 3 is not a power of
    // two, so the log's proof alone rebuilds both of its roots.
    let a_node = a.start(&[], &[]);
    let mut a_client = a_node.client().await;
    let root = Actor { key: a_node.authority_key(), uscc: REGULATOR.into() };
    for uscc in [FACTORY, LAB] {
        root.append(&mut a_client, register_org(uscc, "示例", &[pb::Role::Manufacturer], &[])).await.unwrap();
    }
    let mut b_node = b.start(&[&a], &[]);
    let b_client = b_node.client().await;
    eventually(60, "B mirroring A's 3 entries", || {
        let mut c = b_client.clone();
        let log = a_log;
        async move { (held(&mut c, &log).await == 3).then_some(()) }
    })
    .await;
    b_node.kill();
    drop(a_node);

    // The same log key, another history of 6 entries, now served to B.
    let fork_node = a_fork.start(&[], &[]);
    let mut fork_client = fork_node.client().await;
    let fork_root = Actor { key: fork_node.authority_key(), uscc: REGULATOR.into() };
    for uscc in [FACTORY, LAB, CERT_BODY, DISTRIBUTOR, FARM] {
        fork_root.append(&mut fork_client, register_org(uscc, "分叉", &[pb::Role::Manufacturer], &[])).await.unwrap();
    }
    let b_node = b.start(&[&a_fork], &[]);
    let mut b_client = b_node.client().await;
    let evidence = first_evidence(&b_client, a_log, 60).await;
    let vkey = Verifier::parse(&a.vkey).unwrap();
    let finding = qtrace_ledger::equivocation::validate(&evidence, &vkey).expect("the evidence holds up");
    assert!(finding.starts_with("proven"), "{finding}");
    assert_eq!(held(&mut b_client, &a_log).await, 3, "nothing of the other history was mirrored");
    let report = verdict_on_genesis(&mut b_client, a_log).await;
    assert_eq!(report.verdict, "INVALID", "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_record_verified_at_a_mirror_without_pinned_keys() {
    let temp = tempfile::tempdir().unwrap();
    let hz = Planned::new(temp.path(), "hz", 61);
    let gd = Planned::new(temp.path(), "gd", 62);
    let hz_node = hz.start(&[], &[]);
    let gd_node = gd.start(&[&hz], &[]);
    let (mut hz_client, factory) = registered_factory(&hz_node).await;
    let gd_client = gd_node.client().await;
    let produced = factory.append(&mut hz_client, production(GTIN, "HZ-LOT-1")).await.unwrap();
    let hz_log = log_of(&hz);
    eventually(60, "Guangdong mirroring Hangzhou", || {
        let mut c = gd_client.clone();
        async move { (held(&mut c, &hz_log).await > produced.seq).then_some(()) }
    })
    .await;
    let record = format!("{}/{}", hz_log.to_hex(), produced.seq);

    // Without --trust the keys come from Guangdong's node: its own and the
    // peers' it mirrors, marked as node-provided, and Hangzhou's record
    // verifies against Hangzhou's key.
    let Run { code, json: report, stderr } = qtrace_at(&gd.url, &["verify", &record]);
    assert_eq!(report["verdict"], "VALID", "{report:#}\n{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["trust"], "node-provided (first contact)", "{report:#}");
    assert!(!stderr.contains("trusted checkpoint"), "no obscure warning: {stderr}");
    // The text output says which keys were not pinned.
    let out = qtrace_command().args(["--node", &gd.url, "verify", &record]).output().expect("running qtrace");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT PINNED"), "{text}");
    assert!(text.contains("qtrace.test/gd") && text.contains("qtrace.test/hz"), "{text}");

    // With only Guangdong's key pinned, the answer says plainly which log's
    // key is missing and how to pin it.
    let Run { code, json: report, stderr } = qtrace_at(&gd.url, &["verify", &record, "--trust", &gd.vkey]);
    assert_eq!(code, 1, "{report:#}");
    assert_ne!(report["verdict"], "VALID", "{report:#}");
    let integrity = report["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "integrity")).cloned();
    let detail = integrity.map(|c| c["detail"].to_string()).unwrap_or_default();
    assert!(detail.contains(&hz_log.to_hex()) && detail.contains("--trust"), "{report:#}");
    assert!(stderr.contains(&format!("its log {hz_log} is not among the trusted logs")), "{stderr}");
    assert!(stderr.contains("--trust VKEY"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_hash_finds_a_peers_record_at_its_mirror() {
    let temp = tempfile::tempdir().unwrap();
    let src = Planned::new(temp.path(), "src", 43);
    let dst = Planned::new(temp.path(), "dst", 44);
    let src_node = src.start(&[], &[]);
    let (mut src_client, factory) = registered_factory(&src_node).await;
    let produced = factory.append(&mut src_client, production(GTIN, "MIRROR-LOT-1")).await.unwrap();

    let dst_node = dst.start(&[&src], &[]);
    let mut dst_client = dst_node.client().await;
    let src_log = log_of(&src);
    eventually(60, "the mirror holding the peer's record", || {
        let mut c = dst_client.clone();
        async move { (held(&mut c, &src_log).await > produced.seq).then_some(()) }
    })
    .await;

    // GetEntry by hash, no log named: found in the mirrored log.
    let by_hash = pb::GetEntryRequest {
        key: Some(pb::get_entry_request::Key::EntryHash(produced.entry_hash.clone())),
        log_id: Vec::new(),
    };
    let entry = dst_client.get_entry(by_hash).await.expect("the peer's record by hash at the mirror").into_inner();
    assert_eq!((entry.log_id.clone(), entry.seq), (src_log.0.to_vec(), produced.seq));

    // `qtrace verify <hash>` at the mirror: the record, with a verdict.
    let hash = hex::encode(&produced.entry_hash);
    let verified = qtrace(&dst_node, &["verify", &hash, "--trust", &src.vkey]);
    assert_eq!(verified.code, 0, "{} {}", verified.json, verified.stderr);
    assert_eq!(verified.json["verdict"], "VALID", "{}", verified.json);

    // A hash no log holds is still NOT_FOUND, naming every log.
    let nowhere =
        pb::GetEntryRequest { key: Some(pb::get_entry_request::Key::EntryHash(vec![0xee; 32])), log_id: Vec::new() };
    let status = dst_client.get_entry(nowhere).await.expect_err("no log holds this hash");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(status.message().contains("in any log this node holds"), "{}", status.message());
}
