//! The consumer resolver over HTTP: a real node, a small story recorded over
//! gRPC, then the pages, the verdict JSON, the evidence behind them and the
//! metrics, read with a plain HTTP GET.

use qtrace_client::rpc::ledger_client::LedgerClient;
use qtrace_ledger::entry::Entry;
use qtrace_ledger::hash::EntryHash;
use qtrace_ledger::merkle;
use qtrace_ledger::note;
use qtrace_ledger::pb;
use qtrace_tests::*;
use tonic::transport::Channel;

const POWDER: &str = GTIN; // 09520123456788
const RAW_MILK: &str = GTIN2; // 06931234567899
pub const CERTIFICATE: &str = "CQC-2026-0917";
/// A lot that passes every check.
pub const GOOD_LOT: &str = "L-GOOD";
/// A lot made from a raw-milk lot the regulator recalled.
pub const RECALLED_LOT: &str = "L-RECALL";
/// A lot whose production record claims a certificate never issued.
pub const FORGED_LOT: &str = "L-FAKE";
pub const GOOD_SERIAL: &str = "L-GOOD-0001";
/// A lot shipped with no production record: its source is not on record
/// (来源不明), a WARNING.
pub const UNSOURCED_LOT: &str = "L-NOSRC";

/// Resolver paths of the story's products.
pub fn lot_path(lot: &str) -> String {
    format!("/01/{POWDER}/10/{lot}")
}

/// Records the story: a certified, inspected, shipped and sold lot; a lot
/// made from a recalled raw-milk lot; and a lot sold under a forged
/// certificate; and a lot shipped that no record produced.
pub async fn record_story(node: &Node, client: &mut LedgerClient<Channel>) -> Cast {
    let cast = Cast::register(node, client).await;
    let factory = &cast.factory;

    let good = factory.append(client, claiming(production(POWDER, GOOD_LOT), CERT_BODY, CERTIFICATE)).await.unwrap();
    let mut test = inspection(POWDER, GOOD_LOT, "SH-2026-0917", true);
    test.parents = vec![record_ref(&good)];
    let test = cast.lab.append(client, test).await.unwrap();
    cast.body
        .append(client, certificate(CERT_BODY, CERTIFICATE, FACTORY, POWDER, vec![record_ref(&test)]))
        .await
        .unwrap();
    let shipped =
        factory.append(client, shipment(POWDER, GOOD_LOT, FACTORY, RETAILER, vec![record_ref(&good)])).await.unwrap();
    cast.retailer.append(client, receipt(POWDER, GOOD_LOT, FACTORY, RETAILER, &shipped)).await.unwrap();
    cast.retailer.append(client, sale(POWDER, GOOD_LOT, GOOD_SERIAL)).await.unwrap();

    // Raw milk made into powder; melamine found later, recall ordered.
    let milk = factory.append(client, production(RAW_MILK, "RM-BAD")).await.unwrap();
    factory
        .append(
            client,
            claiming(
                transformation(&[(RAW_MILK, "RM-BAD")], (POWDER, RECALLED_LOT), vec![record_ref(&milk)]),
                CERT_BODY,
                CERTIFICATE,
            ),
        )
        .await
        .unwrap();
    cast.root
        .append(client, recall(RAW_MILK, &["RM-BAD"], true, FACTORY, "melamine (三聚氰胺) found in raw milk"))
        .await
        .unwrap();

    factory.append(client, claiming(production(POWDER, FORGED_LOT), CERT_BODY, "CQC-NEVER-ISSUED")).await.unwrap();
    factory.append(client, shipment(POWDER, UNSOURCED_LOT, FACTORY, RETAILER, Vec::new())).await.unwrap();
    cast
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start:?} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_pages_json_evidence_and_metrics() {
    let node = Node::start();
    let mut client = node.client().await;
    let cast = record_story(&node, &mut client).await;
    let base = node.http_url();
    let get = |path: String, accept: Option<&'static str>| {
        let base = base.clone();
        async move { tokio::task::spawn_blocking(move || http_get(&base, &path, accept)).await.unwrap() }
    };

    // The page for a genuine lot: VALID, who is responsible, and evidence.
    let page = get(lot_path(GOOD_LOT), Some("text/html,application/xhtml+xml,*/*;q=0.8")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.header("content-security-policy").is_some_and(|p| p.contains("default-src 'none'")));
    for expected in [
        "有效",
        "VALID",
        "name=\"viewport\"",
        "Example Dairy Co. (示例乳业)",
        "Shanghai Food Testing Lab (上海食品检验所)",
        "Hangzhou Certification Centre (杭州认证中心)",
        "Example Mart (示例超市)",
        "张伟",
        "责任主体",
        "追溯路径",
        CERTIFICATE,
        "/evidence/",
    ] {
        assert!(page.body.contains(expected), "{expected:?} missing from the page:\n{}", page.body);
    }

    // The same address as JSON: the verdict the Verify RPC gives.
    let json = get(lot_path(GOOD_LOT), Some("application/json")).await;
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let value: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(value["verdict"], "VALID", "{value:#}");
    let rpc = verify(&mut client, code(&format!("https://id.gs1.org{}", lot_path(GOOD_LOT)))).await;
    let rpc_json: serde_json::Value = serde_json::from_str(&rpc.json).unwrap();
    assert_eq!(value["checks"], rpc_json["checks"], "one code path for the page and the RPC");
    let by_query = get(format!("{}?format=json", lot_path(GOOD_LOT)), None).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&by_query.body).unwrap()["verdict"], "VALID");

    // Other Digital Link forms: serial only; CPV, lot, serial and expiry.
    for path in [
        format!("/01/{POWDER}/21/{GOOD_SERIAL}"),
        format!("/01/{POWDER}/22/900G/10/{GOOD_LOT}/21/{GOOD_SERIAL}?17=281101"),
        format!("/01/9520123456788/10/{GOOD_LOT}"),
    ] {
        let response = get(path.clone(), Some("application/json")).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&response.body).unwrap()["verdict"], "VALID", "{path}");
    }

    // Recalled through an input lot, and a forged certificate: INVALID.
    let recalled = get(lot_path(RECALLED_LOT), None).await;
    assert_eq!(recalled.status, 200);
    assert!(recalled.body.contains("无效") && recalled.body.contains("已召回") && recalled.body.contains("RM-BAD"));
    let forged = get(lot_path(FORGED_LOT), None).await;
    assert!(forged.body.contains("无效") && forged.body.contains("伪造证书"), "{}", forged.body);

    // A lot with no production record: WARNING, the banner says why and
    // the traceability path, where the problem is, comes before the
    // sections that passed.
    let unsourced = get(lot_path(UNSOURCED_LOT), None).await;
    assert_eq!(unsourced.status, 200);
    assert!(unsourced.body.contains("警告<span>WARNING</span>"), "{}", unsourced.body);
    assert!(unsourced.body.contains("<p class=\"reason\">来源不明 Source not on record</p>"), "{}", unsourced.body);
    let at = |id: &str| unsourced.body.find(&format!("id=\"{id}\"")).unwrap_or(usize::MAX);
    assert!(at("path") < at("genuine") && at("path") < at("certificate"), "{}", unsourced.body);

    // A code with a wrong check digit: 400, naming the rule.
    let bad = get(format!("/01/09520123456787/10/{GOOD_LOT}"), None).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("check digit") && bad.body.contains("校验码"), "{}", bad.body);
    let bad_json = get(format!("/01/09520123456787/10/{GOOD_LOT}"), Some("application/json")).await;
    assert_eq!(bad_json.status, 400);
    assert!(bad_json.body.contains("check digit is 7, expected 8"), "{}", bad_json.body);
    let out_of_order = get(format!("/01/{POWDER}/21/S1/10/{GOOD_LOT}"), None).await;
    assert_eq!(out_of_order.status, 400);
    assert!(out_of_order.body.contains("out of order"), "{}", out_of_order.body);

    // A lot the ledger has never heard of: 404 with the page.
    let unknown = get(lot_path("NO-SUCH-LOT"), None).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("未找到") && unknown.body.contains("NOT FOUND"), "{}", unknown.body);
    let unknown_json = get(lot_path("NO-SUCH-LOT"), Some("application/json")).await;
    assert_eq!(unknown_json.status, 404);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&unknown_json.body).unwrap()["verdict"], "NOT_FOUND");
    assert_eq!(get("/02/123".into(), None).await.status, 404);

    let home = get("/".into(), None).await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("GS1") && home.body.contains(&node.log_id().to_string()));

    // Evidence: every record cited by the verdict opens with a proof that
    // verifies against the log's signed checkpoint.
    let cites: std::collections::BTreeSet<String> = value["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["evidence"].as_array().unwrap().iter().filter_map(|e| e.as_str()))
        // Citations are `<log id>/<seq>/<entry hash>`, some followed by words.
        .filter_map(|e| e.split(' ').next().map(String::from))
        .filter(|e| e.split('/').count() == 3 && e.len() > 130)
        .collect();
    assert!(cites.len() >= 6, "{cites:?}");
    let vkey = node.vkey();
    for cite in &cites {
        let mut parts = cite.split('/');
        let (log, seq, hash) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        assert!(page.body.contains(&format!("href=\"/evidence/{log}/{seq}\"")), "the page links {cite}");
        let response = get(format!("/evidence/{log}/{seq}"), None).await;
        assert_eq!(response.status, 200, "{}", response.body);
        let evidence: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(evidence["entry_hash"], hash);
        let entry = Entry::decode(&hex::decode(evidence["entry"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(entry.hash(), EntryHash::from_hex(hash).unwrap(), "the entry bytes hash to the cited hash");
        entry.verify_signature().expect("the signature verifies");
        let opened = note::open_checkpoint(evidence["checkpoint"]["note"].as_str().unwrap(), &vkey, &[])
            .expect("the checkpoint is signed by the log key");
        let inclusion = &evidence["inclusion"];
        assert_eq!(inclusion["tree_size"].as_u64(), Some(opened.checkpoint.size));
        let path: Vec<[u8; 32]> = inclusion["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hex::decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        merkle::verify_inclusion(entry.seq, opened.checkpoint.size, &entry.hash().0, &path, &opened.checkpoint.root)
            .expect("the inclusion proof verifies");
    }
    let missing = get(format!("/evidence/{}/999999", node.log_id()), None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(get("/evidence/not-hex/1".into(), None).await.status, 400);

    // Metrics: appends counted; a refused append is counted by its code.
    let before = get("/metrics".into(), None).await;
    assert_eq!(before.status, 200);
    assert!(before.header("content-type").is_some_and(|t| t.contains("openmetrics-text")));
    assert!(metric(&before.body, "qtrace_append_batch_size_count ") >= 1.0);
    assert!(metric(&before.body, "qtrace_append_flush_seconds_count ") >= 1.0);
    assert_eq!(metric(&before.body, "qtrace_append_queue_depth "), 0.0);
    assert_eq!(metric(&before.body, "qtrace_equivocations_total "), 0.0);
    let size = client.get_log_info(pb::GetLogInfoRequest {}).await.unwrap().into_inner().size;
    let own = format!("qtrace_log_entries{{log=\"{}\",own=\"true\"}} ", node.log_id());
    assert_eq!(metric(&before.body, &own), size as f64);
    // Every entry but the genesis entry (written at setup) went through the writer.
    assert_eq!(metric(&before.body, "qtrace_appends_total "), (size - 1) as f64, "{}", before.body);
    // A retailer may not record production: PERMISSION_DENIED.
    let refused = cast.retailer.append(&mut client, production(POWDER, "L-NOT-MINE")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let after = get("/metrics".into(), None).await;
    assert_eq!(metric(&after.body, "qtrace_append_refusals_total{code=\"PERMISSION_DENIED\"} "), 1.0);
    assert_eq!(metric(&after.body, "qtrace_appends_total "), metric(&before.body, "qtrace_appends_total "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_can_be_turned_off() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let node = Node::start_in(&data, &["--no-http"]);
    let _ = node.client().await;
    assert!(!data.join("http.addr").exists(), "no DATA/http.addr without HTTP");
}
