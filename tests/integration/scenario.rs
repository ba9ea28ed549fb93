//! The milk-powder story: raw milk from a dairy farm, powder made from it
//! at a factory, tested by a lab, certified, shipped through a distributor
//! and sold by a retailer; then melamine is found in one raw-milk lot and
//! the regulator orders a recall.

use prost::Message;
use qtrace_ledger::bundle;
use qtrace_ledger::pb::{self, event::Body};
use qtrace_ledger::verdict::{self, Trust};
use qtrace_tests::*;

const RAW_MILK: &str = GTIN2; // 06931234567899
const POWDER: &str = GTIN; // 09520123456788

fn check<'a>(report: &'a pb::VerdictReport, name: &str) -> &'a pb::VerdictCheck {
    report.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no {name} check in {report:#?}"))
}

/// Verifies offline from the node's bundle and returns the offline report.
async fn offline(
    client: &mut qtrace_client::rpc::ledger_client::LedgerClient<tonic::transport::Channel>,
    node: &Node,
    subject: pb::verdict_subject::Kind,
) -> (verdict::Report, usize) {
    let bundle = client
        .get_bundle(pb::VerifyRequest {
            subject: Some(pb::VerdictSubject { kind: Some(subject.clone()) }),
            ..Default::default()
        })
        .await
        .expect("bundle")
        .into_inner();
    let bytes = bundle.encode_to_vec();
    let decoded = bundle::decode(&bytes).expect("bundle decodes");
    let trust = Trust { logs: vec![node.vkey()], witnesses: Vec::new() };
    let opened = bundle::open(&decoded, &trust, None).expect("bundle opens");
    assert!(opened.rejected_registry.is_empty(), "{:?}", opened.rejected_registry);
    let report = verdict::verify_subject(
        &opened.view,
        &trust,
        Some(&pb::VerdictSubject { kind: Some(subject) }),
        None,
        None,
        Default::default(),
    )
    .expect("offline verdict");
    (report, bytes.len())
}

/// What a subject is, for the node's Verify RPC and for the `qtrace`
/// command line (`check CODE`, `verify --cert USCC/NUMBER`, `verify
/// LOGID/SEQ`; `bundle` takes the same words).
struct Asked {
    subject: pb::verdict_subject::Kind,
    command: &'static str,
    words: Vec<String>,
    /// For a certificate: the product it is shown for (`--product`,
    /// `for_product`).
    product: Option<String>,
    /// For a certificate: the day its status is also asked for (`--at`,
    /// `at`). A bundle does not record it, and `verify --offline --at`
    /// means "as of that day" instead, so only the node and the online
    /// `qtrace` are compared for it.
    at: Option<String>,
}

fn asked_product(text: &str) -> Asked {
    Asked { subject: code(text), command: "check", words: vec![text.to_string()], product: None, at: None }
}

fn asked_certificate(issuer: &str, number: &str) -> Asked {
    Asked {
        subject: pb::verdict_subject::Kind::Certificate(cert_key(issuer, number)),
        command: "verify",
        words: vec!["--cert".into(), format!("{issuer}/{number}")],
        product: None,
        at: None,
    }
}

/// A certificate shown for `product` and/or asked about on `at`.
fn asked_certificate_for(issuer: &str, number: &str, product: Option<&str>, at: Option<&str>) -> Asked {
    Asked { product: product.map(String::from), at: at.map(String::from), ..asked_certificate(issuer, number) }
}

fn asked_record(node: &Node, receipt: &pb::AppendReceipt) -> Asked {
    Asked {
        subject: pb::verdict_subject::Kind::Record(record_ref(receipt)),
        command: "verify",
        words: vec![format!("{}/{}", node.log_id(), receipt.seq)],
        product: None,
        at: None,
    }
}

/// Online equals offline, in full: the node's Verify JSON, `qtrace` (which
/// fetches the bundle and computes the verdict itself) and `qtrace verify
/// --offline` of the saved bundle give the same object — verdict, subject,
/// every check's severity, detail and evidence, the responsible parties,
/// the path and the certificates. The command line adds only how it got
/// there (`trust`, `bundle_bytes`). Returns the node's report.
async fn same_online_and_offline(
    client: &mut qtrace_client::rpc::ledger_client::LedgerClient<tonic::transport::Channel>,
    node: &Node,
    dir: &std::path::Path,
    asked: &Asked,
) -> serde_json::Value {
    let vkey = std::fs::read_to_string(node.data.join("log.vkey")).expect("log.vkey").trim().to_owned();
    let request = pb::VerifyRequest {
        subject: Some(pb::VerdictSubject { kind: Some(asked.subject.clone()) }),
        at: asked.at.clone().unwrap_or_default(),
        for_product: asked.product.clone().unwrap_or_default(),
        ..Default::default()
    };
    let report = client.verify(request).await.expect("verify").into_inner();
    let from_node: serde_json::Value = serde_json::from_str(&report.json).expect("the node's JSON");
    let mut words: Vec<&str> = asked.words.iter().map(String::as_str).collect();
    let product: Vec<&str> = asked.product.iter().flat_map(|p| ["--product", p.as_str()]).collect();
    let at: Vec<&str> = asked.at.iter().flat_map(|d| ["--at", d.as_str()]).collect();
    words.extend(&product);
    let without_how = |run: Run, what: &str| {
        let mut json = run.json;
        let map = json.as_object_mut().unwrap_or_else(|| panic!("{what}: {}", run.stderr));
        assert!(map.remove("trust").is_some(), "{what}: no trust field in {map:?}\n{}", run.stderr);
        assert!(map.remove("bundle_bytes").is_some(), "{what}: no bundle_bytes field in {map:?}");
        json
    };
    let mut args = vec![asked.command];
    args.extend(&words);
    args.extend(&at);
    args.extend(["--trust", &vkey]);
    let from_cli = without_how(qtrace(node, &args), &format!("qtrace {args:?}"));
    assert_eq!(from_cli, from_node, "qtrace {args:?} differs from the node's Verify");
    if asked.at.is_some() {
        return from_node;
    }
    let file = dir.join(format!("{}.bundle", words.join("_").replace(['/', '(', ')', ':'], "-")));
    let file = file.to_str().expect("UTF-8 path");
    let mut args = vec!["bundle"];
    args.extend(&words);
    args.extend(["--out", file]);
    let written = qtrace(node, &args);
    assert_eq!(written.code, 0, "qtrace {args:?}: {}", written.stderr);
    let mut args = vec!["verify", "--offline", file, "--trust", &vkey];
    args.extend(&product);
    let from_bundle = without_how(qtrace(node, &args), &format!("qtrace {args:?}"));
    assert_eq!(from_bundle, from_node, "verify --offline of the bundle of {words:?} differs from the node's Verify");
    from_node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milk_powder_recall_story() {
    let node = Node::start();
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;
    let farm = Actor::new(21, FARM);
    let distributor = Actor::new(22, DISTRIBUTOR);
    let root = cast.root.clone();
    root.append(&mut client, register_org(FARM, "Green Pasture Dairy Farm (绿野牧场)", &[pb::Role::Manufacturer], &[]))
        .await
        .unwrap();
    root.append(
        &mut client,
        register_org(DISTRIBUTOR, "South China Food Distribution (华南食品配送)", &[pb::Role::Distributor], &[]),
    )
    .await
    .unwrap();
    root.append(&mut client, register_key(&farm, "刘芳", "牧场场长")).await.unwrap();
    root.append(&mut client, register_key(&distributor, "黄磊", "物流经理")).await.unwrap();

    // Raw milk, tested conformant on collection.
    let rm1 = farm.append(&mut client, production(RAW_MILK, "RM-1")).await.unwrap();
    let rm2 = farm.append(&mut client, production(RAW_MILK, "RM-2")).await.unwrap();
    for (lot, produced) in [("RM-1", &rm1), ("RM-2", &rm2)] {
        let mut e = inspection(RAW_MILK, lot, &format!("SH-RM-{lot}"), true);
        e.parents = vec![record_ref(produced)];
        cast.lab.append(&mut client, e).await.unwrap();
    }
    // Powder lots, each made from one raw-milk lot, sold under a certificate.
    let p1 = cast
        .factory
        .append(
            &mut client,
            claiming(
                transformation(&[(RAW_MILK, "RM-1")], (POWDER, "P-1"), vec![record_ref(&rm1)]),
                CERT_BODY,
                "CQC-MP-1",
            ),
        )
        .await
        .unwrap();
    let p2 = cast
        .factory
        .append(
            &mut client,
            claiming(
                transformation(&[(RAW_MILK, "RM-2")], (POWDER, "P-2"), vec![record_ref(&rm2)]),
                CERT_BODY,
                "CQC-MP-1",
            ),
        )
        .await
        .unwrap();
    let mut type_test = inspection(POWDER, "P-1", "SH-P-0001", true);
    type_test.parents = vec![record_ref(&p1)];
    let type_test = cast.lab.append(&mut client, type_test).await.unwrap();
    let issued = cast
        .body
        .append(&mut client, certificate(CERT_BODY, "CQC-MP-1", FACTORY, POWDER, vec![record_ref(&type_test)]))
        .await
        .unwrap();
    // Through the distributor to the retailer, and sold.
    for (lot, made) in [("P-1", &p1), ("P-2", &p2)] {
        let s1 = cast
            .factory
            .append(&mut client, shipment(POWDER, lot, FACTORY, DISTRIBUTOR, vec![record_ref(made)]))
            .await
            .unwrap();
        let r1 = distributor.append(&mut client, receipt(POWDER, lot, FACTORY, DISTRIBUTOR, &s1)).await.unwrap();
        let s2 = distributor
            .append(&mut client, shipment(POWDER, lot, DISTRIBUTOR, RETAILER, vec![record_ref(&r1)]))
            .await
            .unwrap();
        cast.retailer.append(&mut client, receipt(POWDER, lot, DISTRIBUTOR, RETAILER, &s2)).await.unwrap();
        cast.retailer.append(&mut client, sale(POWDER, lot, &format!("{lot}-0001"))).await.unwrap();
    }

    // Before anything goes wrong, both cans check VALID.
    for lot in ["P-1", "P-2"] {
        let report = verify(&mut client, code(&format!("https://id.gs1.org/01/{POWDER}/10/{lot}"))).await;
        assert_eq!(report.verdict, "VALID", "{lot}: {report:#?}");
        assert!(check(&report, "certificate").detail.contains("CQC-MP-1"));
        assert!(check(&report, "source").detail.contains("RM-"), "{}", check(&report, "source").detail);
        assert!(
            check(&report, "destination").detail.contains("2 shipment(s)"),
            "{}",
            check(&report, "destination").detail
        );
    }
    // A serial printed on a can finds its lot.
    let by_serial = verify(&mut client, code(&format!("(01){POWDER}(21)P-2-0001"))).await;
    assert_eq!(by_serial.verdict, "VALID", "{by_serial:#?}");
    assert!(by_serial.subject.contains("lot P-2"), "{}", by_serial.subject);

    // Another registered manufacturer, the farm, records a lot of the
    // certified powder: the factory's certificate covers the GTIN but is
    // not the farm's, so the farm's lot is not certified.
    farm.append(&mut client, production(POWDER, "FARM-P-1")).await.unwrap();
    let rival = verify(&mut client, code(&format!("{POWDER}/FARM-P-1"))).await;
    assert_eq!(rival.verdict, "VALID", "{rival:#?}");
    let rival_certificate = check(&rival, "certificate");
    assert!(
        rival_certificate.detail.contains("not certified") && !rival_certificate.detail.contains("已认证"),
        "{}",
        rival_certificate.detail
    );
    // A farm lot that claims the factory's certificate is misuse (冒用),
    // and the report names both organisations.
    farm.append(&mut client, claiming(production(POWDER, "FARM-P-2"), CERT_BODY, "CQC-MP-1")).await.unwrap();
    let misused = verify(&mut client, code(&format!("{POWDER}/FARM-P-2"))).await;
    assert_eq!(misused.verdict, "INVALID", "{misused:#?}");
    let misuse = check(&misused, "certificate");
    assert!(
        misuse.detail.contains("冒用") && misuse.detail.contains(FARM) && misuse.detail.contains(FACTORY),
        "{}",
        misuse.detail
    );

    // The lab finds melamine in raw-milk lot RM-1 and the regulator orders
    // a recall of it.
    let mut finding = inspection(RAW_MILK, "RM-1", "SH-RM-1-RETEST", false);
    finding.parents = vec![record_ref(&rm1)];
    cast.lab.append(&mut client, finding).await.unwrap();
    root.append(&mut client, recall(RAW_MILK, &["RM-1"], true, FARM, "melamine (三聚氰胺) found in raw milk"))
        .await
        .unwrap();

    // A can made from RM-1: recalled, and the report shows the path.
    let affected = verify(&mut client, code(&format!("(01){POWDER}(10)P-1"))).await;
    assert_eq!(affected.verdict, "INVALID", "{affected:#?}");
    let recall_check = check(&affected, "recall");
    assert!(!recall_check.ok);
    assert!(
        recall_check.detail.contains("RECALLED") && recall_check.detail.contains("RM-1"),
        "{}",
        recall_check.detail
    );
    assert!(!check(&affected, "spot_check").ok, "the failed inspection upstream is reported");
    let json: serde_json::Value = serde_json::from_str(&affected.json).unwrap();
    assert_eq!(json["recalled"], true);
    let path: Vec<String> =
        json["path"].as_array().unwrap().iter().map(|s| s["what"].as_str().unwrap().to_string()).collect();
    assert!(path.iter().any(|w| w.contains("lot RM-1")), "{path:?}");
    assert!(path.iter().any(|w| w.contains("made") && w.contains("P-1")), "{path:?}");

    // A can from the unaffected lot stays VALID.
    let unaffected = verify(&mut client, code(&format!("{POWDER}/P-2"))).await;
    assert_eq!(unaffected.verdict, "VALID", "{unaffected:#?}");

    // Offline: the bundle reproduces the same verdict with only the log key.
    let (report, size) = offline(&mut client, &node, code(&format!("(01){POWDER}(10)P-1"))).await;
    assert_eq!(report.verdict.name(), "INVALID");
    let online_checks: Vec<(&str, bool)> = affected.checks.iter().map(|c| (c.name.as_str(), c.ok)).collect();
    let offline_checks: Vec<(&str, bool)> =
        report.checks.iter().map(|c| (c.name, c.severity == verdict::Severity::Ok)).collect();
    assert_eq!(online_checks, offline_checks);
    assert!(size < 256 * 1024, "bundle of a typical product is small: {size} bytes");

    // The certification body suspends the certificate: WARNING with history.
    let suspended = cast
        .body
        .append(&mut client, suspend(CERT_BODY, "CQC-MP-1", "raw-milk supplier under investigation"))
        .await
        .unwrap();
    let cert = verify(&mut client, pb::verdict_subject::Kind::Certificate(cert_key(CERT_BODY, "CQC-MP-1"))).await;
    assert_eq!(cert.verdict, "WARNING", "{cert:#?}");
    let status = check(&cert, "certificate");
    assert!(status.detail.contains("suspended") && status.detail.contains("certificate_issued"), "{}", status.detail);
    let p2_now = verify(&mut client, code(&format!("{POWDER}/P-2"))).await;
    assert_eq!(p2_now.verdict, "WARNING", "a product sold under a suspended certificate: {p2_now:#?}");

    // A forged certificate (never issued) claimed by a product: INVALID.
    cast.factory
        .append(&mut client, claiming(production(POWDER, "P-FAKE"), CERT_BODY, "CQC-NEVER-ISSUED"))
        .await
        .unwrap();
    let forged = verify(&mut client, code(&format!("{POWDER}/P-FAKE"))).await;
    assert_eq!(forged.verdict, "INVALID");
    assert!(
        check(&forged, "certificate").detail.contains("not in the ledger"),
        "{}",
        check(&forged, "certificate").detail
    );

    // The genuine certificate copied onto another product (冒用): INVALID.
    cast.factory
        .append(&mut client, claiming(production("04006381333931", "OTHER-1"), CERT_BODY, "CQC-MP-1"))
        .await
        .unwrap();
    let copied = verify(&mut client, code("04006381333931/OTHER-1")).await;
    assert_eq!(copied.verdict, "INVALID", "{copied:#?}");
    assert!(check(&copied, "certificate").detail.contains("冒用"));
    let shown_for = client
        .verify(pb::VerifyRequest {
            subject: Some(pb::VerdictSubject {
                kind: Some(pb::verdict_subject::Kind::Certificate(cert_key(CERT_BODY, "CQC-MP-1"))),
            }),
            for_product: "04006381333931".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown_for.verdict, "INVALID");

    // Every subject of the story, online and offline: VALID, WARNING and
    // INVALID lots, the product line, the certificate (also shown for a
    // product, and on a day), records, and subjects the ledger does not know.
    let temp = tempfile::tempdir().expect("temp dir");
    let subjects = [
        (asked_product(&format!("{POWDER}/P-1")), "INVALID"),
        (asked_product(&format!("https://id.gs1.org/01/{POWDER}/10/P-2")), "WARNING"),
        (asked_product(&format!("(01){POWDER}(21)P-2-0001")), "WARNING"),
        (asked_product(&format!("{POWDER}/FARM-P-1")), "VALID"),
        (asked_product(&format!("{POWDER}/FARM-P-2")), "INVALID"),
        (asked_product(&format!("{POWDER}/P-FAKE")), "INVALID"),
        (asked_product("04006381333931/OTHER-1"), "INVALID"),
        (asked_product(&format!("(01){POWDER}")), "WARNING"),
        (asked_certificate(CERT_BODY, "CQC-MP-1"), "WARNING"),
        (asked_certificate_for(CERT_BODY, "CQC-MP-1", Some(POWDER), None), "WARNING"),
        (asked_certificate_for(CERT_BODY, "CQC-MP-1", Some("04006381333931"), None), "INVALID"),
        (asked_certificate_for(CERT_BODY, "CQC-MP-1", None, Some("2026-06-30")), "WARNING"),
        (asked_certificate_for(CERT_BODY, "CQC-MP-1", Some("04006381333931"), Some("2026-06-30")), "INVALID"),
        (asked_certificate(CERT_BODY, "CQC-NO-SUCH"), "NOT_FOUND"),
        (asked_product(&format!("{POWDER}/NO-SUCH-LOT")), "NOT_FOUND"),
        (asked_product("(01)09506000134352"), "NOT_FOUND"),
        (asked_record(&node, &rm1), "INVALID"),
        (asked_record(&node, &rm2), "VALID"),
        (asked_record(&node, &type_test), "INVALID"),
        (asked_record(&node, &issued), "INVALID"),
        (asked_record(&node, &suspended), "WARNING"),
    ];
    for (asked, verdict) in &subjects {
        let report = same_online_and_offline(&mut client, &node, temp.path(), asked).await;
        assert_eq!(report["verdict"], *verdict, "{:?}: {report:#}", asked.words);
    }

    // Altered bytes in a bundle are caught offline.
    let mut bundle = client
        .get_bundle(pb::VerifyRequest {
            subject: Some(pb::VerdictSubject { kind: Some(code(&format!("{POWDER}/P-2"))) }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let trust = Trust { logs: vec![node.vkey()], witnesses: Vec::new() };
    for section in &mut bundle.logs {
        for bundled in &mut section.entries {
            let entry = bundled.entry.as_mut().unwrap();
            let event = pb::Event::decode(entry.signed.as_ref().unwrap().event.as_slice()).unwrap();
            if let Some(Body::CertificateIssued(mut c)) = event.body.clone() {
                c.valid_until = "2099-12-31".into();
                let mut forged_event = event.clone();
                forged_event.body = Some(Body::CertificateIssued(c));
                entry.signed.as_mut().unwrap().event = forged_event.encode_to_vec();
            }
        }
    }
    let opened = bundle::open(&bundle, &trust, None).unwrap();
    let report = verdict::verify_product(
        &opened.view,
        &trust,
        &verdict::product_code(&format!("{POWDER}/P-2")).unwrap(),
        Default::default(),
    )
    .unwrap();
    assert_eq!(report.verdict.name(), "INVALID");
    assert!(report.check("certificate").is_some_and(|c| c.detail.contains("signature")), "{report:#?}");
}
