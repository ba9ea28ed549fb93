//! The `qtrace` command line against a real node, every step through the
//! built binary with `--node <url> --json`, as an agency's scripts would run
//! it: keys, registration with the development authority key, a product's
//! life (produce → inspect → certify → ship → receive → sell), reading and
//! proving records, the consumer check and the regulator's verdicts (online
//! and offline from a bundle), the refusal classes, duplicates, a correction
//! and QR codes.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use qtrace_ledger::merkle;
use qtrace_tests::*;
use serde_json::Value;

/// Runs a command that must succeed and returns its JSON.
fn ok(node: &Node, args: &[&str]) -> Value {
    let run = qtrace(node, args);
    assert_eq!(run.code, 0, "qtrace {args:?}: {}\n{}", run.stderr, run.json);
    run.json
}

/// Runs a record command and returns the record's sequence number.
fn record(node: &Node, args: &[&str]) -> String {
    let value = ok(node, args);
    assert_eq!(value["duplicate"], false, "{args:?}: {value}");
    value["seq"].as_u64().unwrap_or_else(|| panic!("{args:?}: no seq in {value}")).to_string()
}

/// Runs a command the node must refuse with `code`.
fn refused(node: &Node, args: &[&str], code: &str) {
    let run = qtrace(node, args);
    assert_eq!(run.code, 1, "qtrace {args:?} should be refused: {}\n{}", run.stderr, run.json);
    assert!(run.stderr.contains(&format!("refused ({code})")), "qtrace {args:?}: stderr {}", run.stderr);
    assert_eq!(run.json["error"]["code"], code, "qtrace {args:?}: {}", run.json);
    assert_eq!(run.json["error"]["exit_code"], 1);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// The verdict and each check's name and outcome, to compare two reports.
fn shape(report: &Value) -> (String, Vec<(String, bool)>) {
    let checks = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| (c["name"].as_str().unwrap_or_default().to_owned(), c["ok"].as_bool().unwrap_or_default()))
        .collect();
    (report["verdict"].as_str().unwrap_or_default().to_owned(), checks)
}

fn check_named<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[test]
fn the_command_line_from_keys_to_verdicts() {
    let mut node = Node::start();
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let authority = node.data.join("authority.key");
    let authority = path(&authority);
    let data = path(&node.data).to_owned();
    let vkey = std::fs::read_to_string(node.data.join("log.vkey")).expect("log.vkey").trim().to_owned();
    let product = format!("{GTIN}/P-1");

    // Keys for a lab, a certification body, a manufacturer and a shop.
    let mut keys = Vec::new();
    for name in ["lab", "body", "factory", "shop"] {
        let file = dir.join(format!("{name}.key"));
        let value = ok(&node, &["keygen", "--out", path(&file)]);
        let public = value["public_key"].as_str().expect("public key").to_owned();
        keys.push((file, public));
    }
    let [(lab_key, lab_pub), (body_key, body_pub), (factory_key, factory_pub), (shop_key, shop_pub)] =
        <[_; 4]>::try_from(keys).unwrap_or_else(|_| unreachable!("four keys"));
    let (lab_key, body_key, factory_key, shop_key) =
        (path(&lab_key), path(&body_key), path(&factory_key), path(&shop_key));

    // The development authority registers the organisations and their keys.
    let accredited = |uscc: &str, name: &str, role: &str, number: &str| {
        let args = [
            "--key",
            authority,
            "org",
            "register",
            "--uscc",
            uscc,
            "--name",
            name,
            "--role",
            role,
            "--accreditation-no",
            number,
            "--scope",
            "0952",
            "--valid-from",
            "2020-01-01",
            "--valid-until",
            "2099-12-31",
        ];
        record(&node, &args);
    };
    accredited(LAB, "Shanghai Food Testing Lab (上海食品检验所)", "testing_lab", "CMA-2020-001");
    accredited(CERT_BODY, "Hangzhou Certification Centre (杭州认证中心)", "certification_body", "CNCA-R-2020-002");
    for (uscc, name, role) in
        [(FACTORY, "Example Dairy Co. (示例乳业)", "manufacturer"), (RETAILER, "Example Mart (示例超市)", "retailer")]
    {
        record(&node, &["--key", authority, "org", "register", "--uscc", uscc, "--name", name, "--role", role]);
    }
    for (uscc, public, person) in [
        (LAB, &lab_pub, "李娜"),
        (CERT_BODY, &body_pub, "王强"),
        (FACTORY, &factory_pub, "张伟"),
        (RETAILER, &shop_pub, "陈静"),
    ] {
        let args = [
            "--key",
            authority,
            "key",
            "register",
            "--uscc",
            uscc,
            "--pubkey",
            public,
            "--person",
            person,
            "--title",
            "质量负责人",
        ];
        record(&node, &args);
    }

    // A lot's life: produced, sampled and inspected, certified, shipped,
    // received and sold.
    let produced = record(
        &node,
        &[
            "--key",
            factory_key,
            "produce",
            "--gtin",
            GTIN,
            "--lot",
            "P-1",
            "--quantity",
            "1000",
            "--unit",
            "EA",
            "--production-date",
            "2026-11-01",
            "--expiry-date",
            "2028-10-31",
        ],
    );
    let inspected = record(
        &node,
        &[
            "--key",
            lab_key,
            "inspect",
            "--product",
            &format!("(01){GTIN}(10)P-1"),
            "--report-no",
            "SH-2026-0001",
            "--standard",
            "GB 19644-2010",
            "--conclusion",
            "conformant",
            "--item",
            "melamine=not detected",
            "--sample",
            &produced,
        ],
    );
    let certificate = format!("{CERT_BODY}/CQC-2026-001");
    let issue = |number: &str| {
        vec![
            "--key".to_owned(),
            body_key.to_owned(),
            "--org".to_owned(),
            CERT_BODY.to_owned(),
            "cert".to_owned(),
            "issue".to_owned(),
            "--number".to_owned(),
            number.to_owned(),
            "--holder".to_owned(),
            FACTORY.to_owned(),
            "--product".to_owned(),
            GTIN.to_owned(),
            "--standard".to_owned(),
            "GB 19644-2010".to_owned(),
            "--valid-until".to_owned(),
            "2029-12-31".to_owned(),
            "--based-on".to_owned(),
            inspected.clone(),
        ]
    };
    let issue_args = issue("CQC-2026-001");
    let issue_args: Vec<&str> = issue_args.iter().map(String::as_str).collect();
    record(&node, &issue_args);
    let shipped = record(
        &node,
        &[
            "--key",
            factory_key,
            "ship",
            "--gtin",
            GTIN,
            "--lot",
            "P-1",
            "--quantity",
            "200",
            "--unit",
            "EA",
            "--from",
            FACTORY,
            "--to",
            RETAILER,
            "--parent",
            &produced,
        ],
    );
    let received = record(
        &node,
        &[
            "--key",
            shop_key,
            "receive",
            "--gtin",
            GTIN,
            "--lot",
            "P-1",
            "--quantity",
            "200",
            "--unit",
            "EA",
            "--from",
            FACTORY,
            "--to",
            RETAILER,
            "--parent",
            &shipped,
        ],
    );
    // The shop sells from the lot it received.
    let sell = |quantity: &str| {
        let args = ["--key", shop_key, "sell", "--gtin", GTIN, "--lot", "P-1", "--quantity", quantity, "--unit", "EA"];
        record(&node, &[&args[..], &["--parent", &received]].concat())
    };
    let sold = sell("1");

    // Reading: the entry's bytes hash to its entry hash (RFC 6962 leaf).
    let entry = ok(&node, &["get", &sold]);
    let bytes = BASE64.decode(entry["entry_b64"].as_str().expect("entry_b64")).expect("base64");
    assert_eq!(hex::encode(merkle::leaf_hash(&bytes)), entry["entry_hash"], "SHA-256(0x00 || entry bytes)");
    assert_eq!(entry["kind"], "sale");
    let proof = ok(&node, &["proof", &sold, "--data", &data]);
    assert_eq!(proof["verified"], true, "{proof}");
    assert_eq!(proof["checkpoint_verified"], true, "{proof}");
    let checkpoint = ok(&node, &["checkpoint", "--data", &data]);
    assert_eq!(checkpoint["verified"], true, "{checkpoint}");
    let size = checkpoint["size"].as_u64().expect("size");
    let consistency = ok(&node, &["consistency", "1", &size.to_string(), "--data", &data]);
    assert_eq!(consistency["verified"], true, "{consistency}");
    assert_eq!(consistency["new_root_signed"], true, "{consistency}");

    // The consumer's check: VALID, exit 0, with who is responsible and the path.
    let checked = ok(&node, &["check", &product, "--data", &data]);
    assert_eq!(checked["verdict"], "VALID", "{checked}");
    assert_eq!(checked["recalled"], false);
    assert!(checked["trust"].as_str().is_some_and(|t| t.starts_with("pinned")), "{checked}");
    assert!(checked["bundle_bytes"].as_u64().is_some_and(|n| n > 0), "{checked}");
    let people: Vec<&str> =
        checked["responsible"].as_array().expect("responsible").iter().filter_map(|r| r["person"].as_str()).collect();
    for person in ["张伟", "李娜", "王强", "陈静"] {
        assert!(people.contains(&person), "{person} is not among {people:?}");
    }
    let kinds: Vec<&str> =
        checked["path"].as_array().expect("path").iter().filter_map(|s| s["kind"].as_str()).collect();
    for kind in ["production", "inspection", "shipment", "receipt", "sale"] {
        assert!(kinds.contains(&kind), "{kind} is not on the path {kinds:?}");
    }
    // Without a pinned key, the node's own key is used and the output says so.
    let first_contact = ok(&node, &["check", &format!("https://id.gs1.org/01/{GTIN}/10/P-1")]);
    assert_eq!(first_contact["trust"], "node-provided (first contact)");
    assert_eq!(shape(&first_contact), shape(&checked));

    // The regulator's verdicts on a record and on the certificate.
    let on_sale = ok(&node, &["verify", &sold, "--trust", &vkey]);
    assert_eq!(on_sale["verdict"], "VALID", "{on_sale}");
    assert_eq!(on_sale["trust"], "pinned (--trust)");
    let on_cert = ok(&node, &["verify", "--cert", &certificate, "--product", GTIN, "--data", &data]);
    assert_eq!(on_cert["verdict"], "VALID", "{on_cert}");
    assert_eq!(check_named(&on_cert, "basis")["ok"], true, "{on_cert}");

    // A record named LOGID/SEQ, and a product the ledger has never seen.
    let by_log = format!("{}/{sold}", entry["log_id"].as_str().expect("log_id"));
    assert_eq!(shape(&ok(&node, &["verify", &by_log, "--data", &data])), shape(&on_sale));
    let unknown = qtrace(&node, &["check", "04006381333931/NO-SUCH-LOT", "--data", &data]);
    assert_eq!((unknown.code, unknown.json["verdict"].as_str()), (1, Some("NOT_FOUND")), "{}", unknown.json);

    // Traces both ways through the Trace RPC.
    let down = ok(&node, &["trace", &produced, "--down"]);
    let down_kinds: Vec<&str> =
        down["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["kind"].as_str()).collect();
    for kind in ["production", "inspection", "certificate_issued", "shipment", "receipt", "sale"] {
        assert!(down_kinds.contains(&kind), "{kind} is not downstream: {down_kinds:?}");
    }
    let up = ok(&node, &["trace", &sold, "--up", "--max-depth", "10"]);
    let up_nodes = up["nodes"].as_array().expect("nodes");
    assert_eq!(up_nodes[0]["relation"], "start");
    assert!(up_nodes.iter().any(|n| n["kind"] == "production" && n["depth"].as_u64() > Some(0)), "{up}");
    assert_eq!(up["lots"][0]["lot"], "P-1", "{up}");

    // The evidence bundle of a typical product, and the same verdict from it
    // with no node.
    let bundle_file = dir.join("p-1.bundle");
    let written = ok(&node, &["bundle", &product, "--out", path(&bundle_file)]);
    let bundle_bytes = std::fs::metadata(&bundle_file).expect("bundle file").len();
    assert_eq!(written["bytes"].as_u64(), Some(bundle_bytes));
    assert_eq!(written["format"], "qtrace.v1.Bundle");
    let entries = written["logs"][0]["entries"].as_u64().expect("entries");
    println!(
        "evidence bundle of a typical product (one lot produced, inspected, certified, shipped, received and sold; \
         {entries} entries with proofs, registry records included): {bundle_bytes} bytes"
    );
    let offline = ok(&node, &["verify", "--offline", path(&bundle_file), "--trust", &vkey]);
    assert_eq!(shape(&offline), shape(&checked));
    assert_eq!(offline["bundle_bytes"].as_u64(), Some(bundle_bytes));

    // QR code of the lot's Digital Link.
    let svg = dir.join("p-1.svg");
    let qr = ok(&node, &["qr", &product, "--out", path(&svg)]);
    assert_eq!(qr["url"], format!("http://127.0.0.1:7780/01/{GTIN}/10/P-1"));
    let svg_text = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(svg_text.contains("<svg"), "{svg_text}");

    // An unparseable code is exit 2, before any node is asked.
    let bad = qtrace(&node, &["check", "09520123456789/P-1"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert_eq!(bad.json["error"]["kind"], "usage");
    assert!(bad.stderr.contains("check digit"), "{}", bad.stderr);

    // Every refusal class the command line can honestly meet: exit 1, and
    // the gRPC code named.
    refused(&node, &["--key", lab_key, "produce", "--gtin", GTIN, "--lot", "P-LAB"], "PERMISSION_DENIED");
    refused(
        &node,
        &[
            "--key",
            body_key,
            "--org",
            CERT_BODY,
            "cert",
            "restore",
            "--number",
            "CQC-2026-001",
            "--reason",
            "not suspended",
        ],
        "FAILED_PRECONDITION",
    );
    refused(
        &node,
        &["--key", body_key, "--org", CERT_BODY, "cert", "suspend", "--number", "CQC-NEVER-ISSUED", "--reason", "r"],
        "NOT_FOUND",
    );
    refused(&node, &issue_args, "ALREADY_EXISTS");
    refused(
        &node,
        &["--key", factory_key, "produce", "--gtin", GTIN, "--lot", "P-9", "--at", "2099-01-01T00:00:00+08:00"],
        "INVALID_ARGUMENT",
    );
    refused(&node, &["trace", &produced, "--down", "--max-nodes", "1"], "RESOURCE_EXHAUSTED");
    refused(&node, &["get", "100000"], "NOT_FOUND");

    // The same signed record submitted twice (by import) is a duplicate,
    // and nothing is appended.
    let original = ok(&node, &["get", &produced]);
    let line = serde_json::json!({
        "event_b64": original["event_b64"],
        "signer": original["signer"],
        "signature": original["signature"],
    })
    .to_string();
    let jsonl = dir.join("again.jsonl");
    std::fs::write(&jsonl, format!("{line}\n{line}\n")).expect("write import file");
    let imported = ok(&node, &["import", path(&jsonl)]);
    assert_eq!(imported["duplicates"], 2, "{imported}");
    assert_eq!(imported["appended"], 0, "{imported}");
    assert_eq!(imported["refused"], 0, "{imported}");

    // The shop keyed a sale that never happened and corrects it (更正):
    // nothing is deleted, the corrected view leaves the sale out, the raw
    // view still shows it, and only the signer's organisation may correct.
    let mistaken = sell("5");
    let cites_mistaken = |value: &Value| value.to_string().contains(&format!("/{mistaken}/"));
    let downstream = |node: &Node| -> Vec<String> {
        let trace = ok(node, &["trace", &produced, "--down"]);
        trace["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(|n| n["seq"].as_u64())
            .map(|s| s.to_string())
            .collect()
    };
    assert!(downstream(&node).contains(&mistaken), "the sale is downstream before its correction");
    refused(
        &node,
        &["--key", factory_key, "correct", "--record", &mistaken, "--kind", "did_not_occur", "--reason", "not ours"],
        "PERMISSION_DENIED",
    );
    record(
        &node,
        &[
            "--key",
            shop_key,
            "correct",
            "--record",
            &mistaken,
            "--kind",
            "did_not_occur",
            "--reason",
            "keyed twice (重复录入)",
        ],
    );
    assert!(!downstream(&node).contains(&mistaken), "a corrected-away sale is left out of the trace");
    assert_eq!(ok(&node, &["get", &mistaken])["kind"], "sale", "nothing is deleted");
    let on_mistaken = qtrace(&node, &["verify", &mistaken, "--data", &data]);
    assert_eq!((on_mistaken.code, on_mistaken.json["verdict"].as_str()), (1, Some("WARNING")), "{}", on_mistaken.json);
    let correction = check_named(&on_mistaken.json, "correction");
    assert!(correction["detail"].as_str().is_some_and(|d| d.contains("corrected")), "{correction}");
    let corrected_view = ok(&node, &["verify", &received, "--data", &data]);
    let raw_view = ok(&node, &["verify", &received, "--data", &data, "--raw"]);
    assert!(!cites_mistaken(check_named(&corrected_view, "destination")), "{corrected_view}");
    assert!(cites_mistaken(check_named(&raw_view, "destination")), "{raw_view}");
    let after_correction = ok(&node, &["check", &product, "--data", &data]);
    assert_eq!(after_correction["verdict"], "VALID", "{after_correction}");
    assert!(cites_mistaken(check_named(&after_correction, "correction")), "{after_correction}");

    // The certification body suspends the certificate: WARNING, exit 1,
    // with the status history; the product sold under it warns too.
    record(
        &node,
        &[
            "--key",
            body_key,
            "--org",
            CERT_BODY,
            "cert",
            "suspend",
            "--number",
            "CQC-2026-001",
            "--reason",
            "factory inspection found nonconformities (监督检查不合格)",
        ],
    );
    let suspended = qtrace(&node, &["verify", "--cert", &certificate, "--data", &data]);
    assert_eq!(suspended.code, 1, "{}", suspended.stderr);
    assert_eq!(suspended.json["verdict"], "WARNING", "{}", suspended.json);
    let history: Vec<&str> = suspended.json["certificates"][0]["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["kind"].as_str())
        .collect();
    assert_eq!(history, ["certificate_issued", "certificate_suspended"]);
    assert!(check_named(&suspended.json, "certificate")["detail"].as_str().is_some_and(|d| d.contains("suspended")));
    let warned = qtrace(&node, &["check", &product, "--data", &data]);
    assert_eq!((warned.code, warned.json["verdict"].as_str()), (1, Some("WARNING")), "{}", warned.json);

    // The manufacturer recalls the lot: the consumer's check says so, exit 1.
    record(
        &node,
        &[
            "--key",
            factory_key,
            "--org",
            FACTORY,
            "recall",
            "--gtin",
            GTIN,
            "--lot",
            "P-1",
            "--risk-class",
            "1",
            "--reason",
            "melamine above the limit (三聚氰胺超标)",
        ],
    );
    let recalled = qtrace(&node, &["check", &product, "--data", &data]);
    assert_eq!(recalled.code, 1, "{}", recalled.stderr);
    assert_eq!(recalled.json["recalled"], true, "{}", recalled.json);
    assert_eq!(recalled.json["verdict"], "INVALID", "{}", recalled.json);
    // Offline, from a fresh bundle, the same verdict.
    let recalled_file = dir.join("p-1-recalled.bundle");
    ok(&node, &["bundle", &format!("(01){GTIN}(10)P-1"), "--out", path(&recalled_file)]);
    let offline = qtrace(&node, &["verify", "--offline", path(&recalled_file), "--trust", &vkey]);
    assert_eq!(offline.code, 1, "{}", offline.stderr);
    assert_eq!(shape(&offline.json), shape(&recalled.json));
    assert_eq!(offline.json["recalled"], true);

    let status = node.stop();
    assert!(status.success(), "qtrace-node exited with {status}");
}
