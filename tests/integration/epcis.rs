//! GS1 EPCIS 2.0 interoperability against a real node, through the built
//! `qtrace` binary: the shared GS1 examples imported (each event mapped to a
//! record or refused with its reason), a product's records exported and
//! validated against the GS1 EPCIS 2.0 JSON schema (offline, the schema
//! files registered from `testdata/epcis`), and round trips that
//! must not change a byte: importing an export appends nothing (every event
//! is a duplicate of the record it came from), and exporting again gives the
//! same events with the same eventIDs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qtrace_client::keyfile;
use qtrace_ledger::pb::{self, event::Body};
use qtrace_tests::*;
use serde_json::{Value, json};

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/epcis")
}

/// Writes an actor's key where `qtrace --key` reads it.
fn key_file(dir: &Path, name: &str, actor: &Actor) -> PathBuf {
    let file = dir.join(format!("{name}.key"));
    keyfile::write_secret_key(&file, &actor.key).expect("writing a key file");
    file
}

/// Every JSON schema file of the GS1 EPCIS 2.0 schema, keyed by its `$id`.
fn schema_files() -> Vec<(String, Value)> {
    let mut files = Vec::new();
    for dir in [vectors(), vectors().join("schemas")] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        for file in names {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let id = schema["$id"].as_str().unwrap_or_else(|| panic!("{} has no $id", file.display())).to_owned();
            files.push((id, schema));
        }
    }
    files
}

/// Validation errors of `document` against the EPCIS 2.0 root schema
/// (`EPCIS-JSON-Schema-root.json`), draft 7 with formats (uri, date-time)
/// checked. The schema files `$ref` each other by relative paths, which
/// resolve against their `$id`s; all of them are registered up front and
/// retrieval is off, so no network access is ever attempted.
fn schema_errors(document: &Value) -> Vec<String> {
    let files = schema_files();
    let root = files
        .iter()
        .find(|(id, _)| id.ends_with("/EPCIS-JSON-Schema.json"))
        .map(|(_, schema)| schema.clone())
        .expect("the root schema");
    let registry = jsonschema::Registry::new()
        .extend(files)
        .and_then(|builder| builder.prepare())
        .unwrap_or_else(|e| panic!("registering the EPCIS schema files: {e}"));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .offline()
        .with_registry(&registry)
        .build(&root)
        .unwrap_or_else(|e| panic!("building the EPCIS schema validator: {e}"));
    validator.iter_errors(document).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

fn assert_valid(document: &Value, what: &str) {
    let errors = schema_errors(document);
    assert!(errors.is_empty(), "{what} does not validate against the EPCIS 2.0 schema:\n{}", errors.join("\n"));
}

fn read_json(file: &Path) -> Value {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The refusal codes and reasons of an import summary, in event order.
fn refusals(summary: &Value) -> Vec<(String, String)> {
    summary["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .map(|r| {
            (r["code"].as_str().unwrap_or_default().to_owned(), r["reason"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[test]
fn the_schema_validator_is_offline_and_strict() {
    // A GS1 example validates; the same with a required field removed, an
    // unknown business step or an event time that is not a date-time does not.
    let mut example = read_json(&vectors().join("examples/Example_9.6.2-ObjectEvent.jsonld"));
    // The example's document id "_:document1" is a JSON-LD blank node, not
    // an RFC 3986 URI, so the strict format check refuses it; without it the
    // example is valid.
    assert_eq!(schema_errors(&example), ["\"_:document1\" is not a \"uri\" at /id"]);
    if let Some(document) = example.as_object_mut() {
        document.remove("id");
    }
    assert_valid(&example, "Example_9.6.2");
    let event = "/epcisBody/eventList/0";
    type Edit = fn(&mut Value);
    let broken: [(&str, Edit); 3] = [
        ("no eventTimeZoneOffset", |e| {
            if let Some(o) = e.as_object_mut() {
                o.remove("eventTimeZoneOffset");
            }
        }),
        ("bizStep ship-it", |e| e["bizStep"] = "ship-it".into()),
        ("eventTime yesterday", |e| e["eventTime"] = "yesterday".into()),
    ];
    for (what, edit) in broken {
        let mut document = example.clone();
        edit(document.pointer_mut(event).expect("the event"));
        assert!(!schema_errors(&document).is_empty(), "{what} validated");
    }
}

#[tokio::test]
async fn shared_examples_are_mapped_or_refused_with_reasons() {
    let node = Node::start();
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let factory_key = key_file(dir, "factory", &cast.factory);
    let lab_key = key_file(dir, "lab", &cast.lab);
    let party_map = dir.join("parties.toml");
    std::fs::write(
        &party_map,
        format!("# Example 9.6.2's parties\n\"4012345000016\" = \"{FACTORY}\"\n\"urn:epc:id:pgln:0614141.00001\" = \"{RETAILER}\"\n"),
    )
    .expect("writing the party map");

    // Per file: the events mapped and appended, and the refusal codes.
    let no_kind = "no_record_kind";
    let cases: &[(&str, usize, &[&str])] = &[
        ("Example_9.6.1-ObjectEvent.jsonld", 0, &["party", "party"]),
        ("Example_9.6.1-ObjectEvent-with-pseudo-SBDH-headers.jsonld", 0, &["party", "party"]),
        ("Example_9.6.1-with-comment.jsonld", 0, &["party", "party"]),
        ("Example_9.6.2-ObjectEvent.jsonld", 1, &[]),
        ("Example_9.6.3-AggregationEvent.jsonld", 0, &[no_kind]),
        ("Example_9.6.4-TransformationEvent.jsonld", 0, &["invalid"]),
        ("WithSensorData/SensorDataExample1.jsonld", 0, &["needs_lab"]),
        ("WithSensorData/SensorDataExample1b.jsonld", 0, &["needs_lab"]),
        ("WithSensorData/SensorDataExample2.jsonld", 0, &["needs_lab"]),
        ("WithSensorData/SensorDataExample3.jsonld", 0, &["needs_lab"]),
        ("WithSensorData/SensorDataExample4.jsonld", 0, &["needs_lab"]),
        ("WithSensorData/SensorDataExample5.jsonld", 0, &["needs_lab"]),
        ("WithSensorData/SensorDataExample6.jsonld", 0, &["needs_lab"]),
        ("WithSensorData/SensorDataExample7.jsonld", 0, &["needs_lab"]),
        ("WithSensorData/SensorDataExample8.jsonld", 0, &[no_kind]),
        ("WithSensorData/SensorDataExample9.jsonld", 0, &[no_kind]),
        ("WithSensorData/SensorDataExample10.jsonld", 0, &[no_kind]),
        ("WithSensorData/SensorDataExample11.jsonld", 0, &[no_kind]),
        ("WithSensorData/SensorDataExample12.jsonld", 0, &[no_kind]),
        ("WithSensorData/SensorDataExample13.jsonld", 0, &[no_kind]),
        ("WithSensorData/SensorDataExample14.jsonld", 0, &[no_kind]),
        ("WithSensorData/SensorDataExample15.jsonld", 0, &[no_kind]),
        ("WithSensorData/SensorDataExample16.jsonld", 0, &[no_kind]),
        ("WithSensorData/SensorDataExample17.jsonld", 0, &[no_kind]),
    ];
    let mut table = Vec::new();
    for (file, appended, codes) in cases {
        let example = vectors().join("examples").join(file);
        let run = qtrace(
            &node,
            &["--key", path(&factory_key), "import", "--epcis", path(&example), "--party-map", path(&party_map)],
        );
        let summary = &run.json;
        let got: Vec<String> = refusals(summary).into_iter().map(|(code, _)| code).collect();
        assert_eq!(got, *codes, "{file}: {summary:#}");
        assert_eq!(summary["appended"], *appended, "{file}: {summary}");
        assert_eq!(summary["events"], codes.len() + appended, "{file}: {summary}");
        assert_eq!(run.code, if codes.is_empty() { 0 } else { 1 }, "{file}: {}", run.stderr);
        // Every refusal says which event (by position, type and eventID) and why.
        for result in summary["results"].as_array().expect("results") {
            assert!(result["index"].as_u64().is_some_and(|i| i >= 1), "{file}: {result}");
            assert!(result["type"].is_string(), "{file}: {result}");
            if result["outcome"] == "refused" {
                assert!(result["reason"].as_str().is_some_and(|r| !r.is_empty()), "{file}: {result}");
            }
        }
        table.push(format!(
            "{file}: {} events, {} mapped, {} appended, {} refused ({})",
            summary["events"],
            summary["mapped"],
            summary["appended"],
            summary["refused"],
            got.join(", ")
        ));
    }
    println!("EPCIS examples imported with a manufacturer's key and a party map:\n  {}", table.join("\n  "));

    // The reasons people read.
    let import = |key: &Path, file: &str, map: bool| {
        let example = vectors().join("examples").join(file);
        let mut args = vec!["--key", path(key), "import", "--epcis", path(&example)];
        if map {
            args.extend(["--party-map", path(&party_map)]);
        }
        qtrace(&node, &args).json
    };
    let reasons = |summary: &Value| refusals(summary).into_iter().map(|(_, reason)| reason).collect::<Vec<_>>();
    let first_reason = |summary: &Value| reasons(summary).first().cloned().unwrap_or_default();
    assert_eq!(
        first_reason(&import(&factory_key, "Example_9.6.3-AggregationEvent.jsonld", true)),
        "aggregation has no qtrace record kind (packing is not a quality event)"
    );
    assert_eq!(
        first_reason(&import(&factory_key, "WithSensorData/SensorDataExample1.jsonld", true)),
        "inspection needs a testing lab's key"
    );
    assert_eq!(
        first_reason(&import(&factory_key, "Example_9.6.4-TransformationEvent.jsonld", true)),
        "transformation.outputs[0].product.lot: is required"
    );
    assert!(
        first_reason(&import(&factory_key, "Example_9.6.2-ObjectEvent.jsonld", false))
            .contains("urn:epc:id:sgln:4012345.00001.0 (GLN 4012345000016) has no USCC"),
        "without the party map"
    );
    let refused_shipping = import(&factory_key, "Example_9.6.1-ObjectEvent.jsonld", true);
    assert_eq!(refused_shipping["results"][0]["type"], "ObjectEvent");
    assert_eq!(
        refused_shipping["results"][0]["event_id"],
        "ni:///sha-256;df7bb3c352fef055578554f09f5e2aa41782150ced7bd0b8af24dd3ccb30ba69?ver=CBV2.0"
    );
    assert!(first_reason(&refused_shipping).starts_with("the source party is missing"), "{refused_shipping}");

    // The lab's key (found in the log's registry) gets inspections as far
    // as the ledger's own checks: no report number, or two products.
    assert_eq!(
        first_reason(&import(&lab_key, "WithSensorData/SensorDataExample1.jsonld", false)),
        "inspection.report_number: is required"
    );
    assert!(
        first_reason(&import(&lab_key, "WithSensorData/SensorDataExample6.jsonld", false))
            .contains("an inspection is about one product; this event names 2"),
    );

    // Importing the same document again appends nothing.
    let again = import(&factory_key, "Example_9.6.2-ObjectEvent.jsonld", true);
    assert_eq!((again["appended"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(1)), "{again}");

    // The receipt carries what EPCIS said: time, places, documents, eventID.
    let entry = qtrace(&node, &["get", again["results"][0]["seq"].to_string().as_str()]).json;
    let event = &entry["event"];
    assert_eq!(event["kind"], "receipt", "{entry:#}");
    assert_eq!(event["event_time"]["rfc3339"], "2013-06-08T16:58:56.591+02:00", "{entry:#}");
    assert_eq!(event["location"]["read_point_gln"], "0614141007776");
    assert_eq!(event["location"]["business_location_gln"], "0614141008889");
    assert_eq!(event["receipt"]["items"][0]["product"]["gtin"], "04012345123456");
    assert_eq!(event["receipt"]["items"][0]["product"]["lot"], "998877");
    assert_eq!(event["receipt"]["items"][0]["quantity"]["unit"], "KGM");
    assert_eq!(event["receipt"]["source"]["uscc"], FACTORY);
    assert_eq!(event["receipt"]["source"]["location_gln"], "4012345002256");
    assert_eq!(event["receipt"]["destination"]["uscc"], RETAILER);
    assert_eq!(event["attributes"][0]["name"], "epcis:eventID");

    // The imported receipt exports to a valid EPCIS document, which imports
    // back to the same record.
    let exported = dir.join("lgtin.json");
    let written = qtrace(&node, &["export", "--epcis", "04012345123456/998877", "--out", path(&exported)]);
    assert_eq!((written.code, written.json["events"].as_u64()), (0, Some(1)), "{}", written.stderr);
    let document = read_json(&exported);
    assert_valid(&document, "the export of the imported receipt");
    let reimported = qtrace(&node, &["--key", path(&lab_key), "import", "--epcis", path(&exported)]);
    assert_eq!(reimported.code, 0, "{}", reimported.json);
    assert_eq!((reimported.json["appended"].as_u64(), reimported.json["duplicates"].as_u64()), (Some(0), Some(1)));
    assert_eq!(reimported.json["results"][0]["presigned"], true, "the factory's record, not the lab's");
}

/// A product's life recorded over gRPC by several organisations, with the
/// record kinds EPCIS has events for and some it has not.
async fn a_products_life(
    node: &Node,
    client: &mut qtrace_client::rpc::ledger_client::LedgerClient<tonic::transport::Channel>,
) -> Cast {
    let cast = Cast::register(node, client).await;
    let milk = cast.factory.append(client, production(GTIN2, "MILK-1")).await.expect("milk");
    let mut made = transformation(&[(GTIN2, "MILK-1")], (GTIN, "E-1"), vec![record_ref(&milk)]);
    made.biz_step = "commissioning".into();
    let made = cast.factory.append(client, made).await.expect("transformation");
    let plain = cast.factory.append(client, production(GTIN, "E-2")).await.expect("production");
    let report = cast.lab.append(client, inspection(GTIN, "E-1", "SH-2026-0042", true)).await.expect("inspection");
    cast.body
        .append(client, certificate(CERT_BODY, "CQC-E-1", FACTORY, GTIN, vec![record_ref(&report)]))
        .await
        .expect("certificate");
    let mut shipped = shipment(GTIN, "E-1", FACTORY, RETAILER, vec![record_ref(&made)]);
    shipped.location = Some(pb::Location {
        read_point_gln: "0614141000012".into(),
        business_location_gln: "6931234000013".into(),
        region: "310000".into(),
    });
    shipped.documents.push(pb::Document { kind: "desadv".into(), id: "DESADV-E-1".into(), sha256: vec![7; 32] });
    let shipped = cast.factory.append(client, shipped).await.expect("shipment");
    let received =
        cast.retailer.append(client, receipt(GTIN, "E-1", FACTORY, RETAILER, &shipped)).await.expect("receipt");
    let mut sold = claiming(sale(GTIN, "E-1", "0001"), CERT_BODY, "CQC-E-1");
    sold.parents = vec![record_ref(&received)];
    sold.attributes.push(pb::Attribute { name: "收银台 till".into(), value: "3".into() });
    cast.retailer.append(client, sold).await.expect("sale");
    let spot = event(
        pb::subject::Kind::Product(product(GTIN, "E-2")),
        Body::SpotCheck(pb::SpotCheck {
            plan_number: "SC-2026-7".into(),
            product: Some(product(GTIN, "E-2")),
            inspected_uscc: FACTORY.into(),
            lab_uscc: LAB.into(),
            standards: vec!["GB 19644-2010".into()],
            items: vec![pb::TestItem {
                name: "fat".into(),
                value: "3.1".into(),
                unit: "%".into(),
                ..Default::default()
            }],
            result: pb::Conclusion::Conformant as i32,
            published_on: "2026-11-20".into(),
        }),
    );
    cast.root.append(client, spot).await.expect("spot check");
    let mut recalled = recall(GTIN, &["E-2"], false, FACTORY, "fat below the label (脂肪含量不符)");
    recalled.parents = vec![record_ref(&plain)];
    recalled.disposition = "recalled".into();
    cast.factory.append(client, recalled).await.expect("recall");
    cast
}

fn event_list(document: &Value) -> Vec<Value> {
    document["epcisBody"]["eventList"].as_array().expect("eventList").clone()
}

#[tokio::test]
async fn exports_validate_and_round_trip_without_a_change() {
    let node = Node::start();
    let mut client = node.client().await;
    let cast = a_products_life(&node, &mut client).await;
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let product = format!("(01){GTIN}");

    // Export: every record about the GTIN, EPCIS events for the supply
    // chain, the certificate listed apart; valid against the GS1 schema.
    let first = dir.join("first.json");
    let written = qtrace(&node, &["export", "--epcis", &product, "--out", path(&first)]);
    assert_eq!(written.code, 0, "{}", written.stderr);
    assert_eq!((written.json["events"].as_u64(), written.json["other_records"].as_u64()), (Some(8), Some(1)));
    let document = read_json(&first);
    assert_valid(&document, "the export");
    assert_eq!(
        document["@context"],
        json!(["https://ref.gs1.org/standards/epcis/epcis-context.jsonld", {"qtrace": "https://example.invalid/qtrace/v1#"}])
    );
    assert_eq!((document["type"].as_str(), document["schemaVersion"].as_str()), (Some("EPCISDocument"), Some("2.0")));
    assert!(document["creationDate"].as_str().is_some_and(|d| d.ends_with('Z')));
    assert_eq!(document["qtrace:otherRecords"][0]["kind"], "certificate_issued");
    let events = event_list(&document);
    let by_kind: BTreeMap<String, &Value> =
        events.iter().map(|e| (e["qtrace:kind"].as_str().unwrap_or_default().to_owned(), e)).collect();
    let steps: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default(),
                e["bizStep"].as_str().unwrap_or_default(),
                e["disposition"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("TransformationEvent", "commissioning", "active"),
            ("ObjectEvent", "commissioning", "active"),
            ("ObjectEvent", "sampling", "conformant"),
            ("ObjectEvent", "shipping", "in_transit"),
            ("ObjectEvent", "receiving", "in_progress"),
            ("ObjectEvent", "retail_selling", "retail_sold"),
            ("ObjectEvent", "inspecting", "conformant"),
            ("ObjectEvent", "", "recalled"),
        ]
    );
    let shipping = by_kind["shipment"];
    assert_eq!(shipping["sourceList"], json!(null), "the factory's location is not on record");
    assert_eq!(shipping["qtrace:sourceUSCC"], FACTORY);
    assert_eq!(shipping["readPoint"]["id"], "https://id.gs1.org/414/0614141000012");
    assert_eq!(shipping["quantityList"][0]["epcClass"], format!("https://id.gs1.org/01/{GTIN}/10/E-1"));
    assert_eq!(by_kind["sale"]["certificationInfo"], json!([format!("qtrace:certificate/{CERT_BODY}%2FCQC-E-1")]));
    assert_eq!(by_kind["sale"]["epcList"], json!([format!("https://id.gs1.org/01/{GTIN}/10/E-1/21/0001")]));
    let id = by_kind["inspection"]["eventID"].as_str().expect("eventID");
    assert!(id.starts_with("ni:///sha-256;") && id.ends_with("?ver=CBV2.0") && id.len() == 14 + 64 + 11, "{id}");

    // The same document on stdout, and the same again read in pages of three.
    let stdout = qtrace(&node, &["export", "--epcis", &product]);
    assert_eq!(stdout.code, 0, "{}", stdout.stderr);
    assert_eq!(event_list(&stdout.json), events);
    let paged = qtrace(&node, &["export", "--epcis", &product, "--page-size", "3"]);
    assert_eq!(event_list(&paged.json), events, "read in pages of three");

    // Imported with the retailer's key: every event is the record it came
    // from (the others' under their own signatures), so nothing is appended.
    let size_before = client.get_log_info(pb::GetLogInfoRequest {}).await.expect("log info").into_inner().size;
    let retailer_key = key_file(dir, "retailer", &cast.retailer);
    let imported = qtrace(&node, &["--key", path(&retailer_key), "import", "--epcis", path(&first)]);
    assert_eq!(imported.code, 0, "{}\n{}", imported.stderr, imported.json);
    let summary = &imported.json;
    assert_eq!(
        (
            summary["events"].as_u64(),
            summary["duplicates"].as_u64(),
            summary["appended"].as_u64(),
            summary["refused"].as_u64()
        ),
        (Some(8), Some(8), Some(0), Some(0)),
        "{summary:#}"
    );
    let presigned: Vec<bool> =
        summary["results"].as_array().expect("results").iter().map(|r| r["presigned"] == true).collect();
    assert_eq!(presigned.iter().filter(|p| !**p).count(), 2, "the retailer's own receipt and sale are signed again");
    let size_after = client.get_log_info(pb::GetLogInfoRequest {}).await.expect("log info").into_inner().size;
    assert_eq!(size_after, size_before, "an import of an export appended records");

    // Exported again: the same events, the same eventIDs.
    let second = dir.join("second.json");
    qtrace(&node, &["export", "--epcis", &product, "--out", path(&second)]);
    assert_eq!(event_list(&read_json(&second)), events);

    // An edited export is refused: its signature no longer matches.
    let mut edited = document.clone();
    edited["epcisBody"]["eventList"][0]["eventTime"] = "2026-01-01T00:00:00+08:00".into();
    let edited_file = dir.join("edited.json");
    std::fs::write(&edited_file, edited.to_string()).expect("writing");
    let refused = qtrace(&node, &["--key", path(&retailer_key), "import", "--epcis", path(&edited_file)]);
    assert_eq!(refused.code, 1);
    assert_eq!(refusals(&refused.json)[0].0, "signature", "{}", refused.json);

    // Another agency's node with the same organisations and keys takes the
    // export as the very same signed records; those whose parents or signer
    // it does not know are refused by that node, each with its reason.
    let other = Node::start();
    let mut other_client = other.client().await;
    Cast::register(&other, &mut other_client).await;
    let moved = qtrace(&other, &["--key", path(&retailer_key), "import", "--epcis", path(&first)]);
    let results = moved.json["results"].as_array().expect("results");
    assert!(moved.json["appended"].as_u64().is_some_and(|n| n >= 1), "{}", moved.json);
    for result in results.iter().filter(|r| r["outcome"] == "refused") {
        assert_eq!(result["stage"], "node", "{result}");
        assert!(result["reason"].as_str().is_some_and(|r| !r.is_empty()), "{result}");
    }
}
