//! Writes the seed corpus of every fuzz target: real, valid inputs, so that
//! fuzzing starts from deep inside each format.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --no-default-features --bin seeds [CORPUS_DIR]
//! ```
//!
//! A small log is built in memory with fixed keys and times (registrations,
//! a production, an inspection resting on it, a certificate resting on the
//! inspection), then: its events and entries, its signed and cosigned
//! checkpoint, real inclusion and consistency proofs, evidence bundles about
//! a record, a certificate and a product code, the identifiers of
//! testdata/identifiers.tsv and the C2SP signed-note example of
//! testdata/signed-note.txt. The output is the same on every run.
//!
//! Every seed that is a valid input is also listed, with what it is, in
//! `valid.tsv` beside the targets' directories; `replay` fails when one of
//! them no longer decodes, verifies or opens (see `qtrace_fuzz::accept`).

use std::path::{Path, PathBuf};

use prost::Message;
use qtrace_fuzz::accept;
use qtrace_fuzz::{LOG_ORIGIN, log_key, log_signer, witness};
use qtrace_ledger::entry::Entry;
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::merkle::{Hash, MemTree};
use qtrace_ledger::note::{self, Checkpoint};
use qtrace_ledger::pb::{self, event::Body};
use qtrace_ledger::signing::SecretKey;

const REGULATOR: &str = "9144030071526726XG";
const LAB: &str = "91310000MA1K2Q7A5L";
const CERT_BODY: &str = "913301007042187B2H";
const FACTORY: &str = "92320900MA1N3T5C5Q";
const GTIN: &str = "09520123456788";
const LOT: &str = "SEED-LOT-1";
/// 2026-09-21T13:46:40Z: every record is a minute after the one before.
const T0_MILLIS: i64 = 1_790_000_000_000;

struct Writer {
    root: PathBuf,
    count: usize,
    /// `<target>/<file>` and kind of every valid seed written.
    valid: Vec<(String, &'static str)>,
}

impl Writer {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        self.count += 1;
    }

    /// Writes a seed that is a valid input of `kind`, checks that it is, and
    /// lists it in the manifest.
    fn put_valid(&mut self, target: &str, name: &str, kind: &'static str, bytes: &[u8]) {
        if let Err(e) = accept::check(kind, bytes) {
            panic!("seed {target}/{name} is not a valid {kind}: {e}");
        }
        self.put(target, name, bytes);
        self.valid.push((format!("{target}/{name}"), kind));
    }

    /// Writes the manifest of valid seeds, sorted.
    fn write_manifest(&mut self) {
        self.valid.sort();
        let mut text = String::from(
            "# Seeds that must stay valid inputs: <target>/<file> TAB what it is.\n\
             # Written by fuzz/src/bin/seeds.rs; checked by replay (qtrace_fuzz::accept).\n",
        );
        for (path, kind) in &self.valid {
            text.push_str(&format!("{path}\t{kind}\n"));
        }
        let path = self.root.join(accept::MANIFEST);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// Minute `i` of the seeds' day.
fn minute(i: i64) -> Option<pb::EventTime> {
    Some(pb::EventTime { unix_millis: T0_MILLIS + i * 60_000, offset_minutes: 480 })
}

fn event(i: i64, subject: Option<pb::subject::Kind>, body: Body) -> pb::Event {
    pb::Event {
        event_time: minute(i),
        subject: subject.map(|kind| pb::Subject { kind: Some(kind) }),
        body: Some(body),
        ..Default::default()
    }
}

fn org(uscc: &str) -> Option<pb::subject::Kind> {
    Some(pb::subject::Kind::OrganisationUscc(uscc.into()))
}

fn product() -> pb::ProductKey {
    pb::ProductKey { gtin: GTIN.into(), lot: LOT.into(), serial: String::new() }
}

fn cert_key() -> pb::CertificateKey {
    pb::CertificateKey { issuer_uscc: CERT_BODY.into(), number: "CQC-SEED-1".into() }
}

/// The shared registration (`testkit::register_org`), stamped at minute `i`.
fn register_org(i: i64, uscc: &str, name: &str, role: pb::Role, scope: &[&str]) -> pb::Event {
    pb::Event { event_time: minute(i), ..qtrace_ledger::testkit::register_org(uscc, name, &[role], scope) }
}

fn register_key(i: i64, uscc: &str, key: &SecretKey, person: &str) -> pb::Event {
    event(
        i,
        org(uscc),
        Body::KeyRegistered(pb::KeyRegistered {
            uscc: uscc.into(),
            public_key: key.public_key().to_bytes().to_vec(),
            person: person.into(),
            title: "首席质量官".into(),
            admin: false,
        }),
    )
}

/// The log: (signer, event) in order; parents are filled in as entries are made.
struct Log {
    log_id: LogId,
    entries: Vec<Entry>,
    events: Vec<(String, Vec<u8>)>,
    tree: MemTree,
}

impl Log {
    fn append(&mut self, name: &str, key: &SecretKey, event: &pb::Event) -> pb::RecordRef {
        let bytes = event.encode_to_vec();
        qtrace_ledger::event::decode_event(&bytes).unwrap_or_else(|e| panic!("seed event {name} is invalid: {e}"));
        let seq = self.entries.len() as u64;
        let prev_hash = self.entries.last().map(Entry::hash).unwrap_or(EntryHash(self.log_id.0));
        let entry = Entry {
            seq,
            prev_hash,
            logged_at_micros: (T0_MILLIS + seq as i64 * 60_000) * 1_000 + 500,
            signer: key.public_key().to_bytes(),
            signature: key.sign_event(&bytes),
            event: bytes.clone(),
        };
        let hash = entry.hash();
        self.tree.append(hash.0).expect("small tree");
        self.entries.push(entry);
        self.events.push((name.to_string(), bytes));
        pb::RecordRef { log_id: self.log_id.0.to_vec(), seq, entry_hash: hash.0.to_vec() }
    }
}

fn build_log() -> Log {
    let log_key = log_key();
    let log_id = LogId::of_key(&log_key.public_key().to_bytes());
    let root = SecretKey::from_seed(&[10; 32]);
    let lab = SecretKey::from_seed(&[11; 32]);
    let body = SecretKey::from_seed(&[12; 32]);
    let factory = SecretKey::from_seed(&[13; 32]);
    let mut log = Log { log_id, entries: Vec::new(), events: Vec::new(), tree: MemTree::new() };
    let genesis = pb::Event {
        event_time: Some(pb::EventTime { unix_millis: T0_MILLIS, offset_minutes: 0 }),
        body: Some(Body::Genesis(pb::LogGenesis {
            origin: LOG_ORIGIN.into(),
            operator_uscc: REGULATOR.into(),
            operator_name: "qtrace fuzz authority (模糊测试监管机构)".into(),
            root_authority_keys: vec![root.public_key().to_bytes().to_vec()],
        })),
        ..Default::default()
    };
    log.append("genesis", &log_key, &genesis);
    let orgs = [
        (LAB, "Shanghai Food Testing Lab (上海食品检验所)", pb::Role::TestingLab, &["0952"][..]),
        (CERT_BODY, "Hangzhou Certification Centre (杭州认证中心)", pb::Role::CertificationBody, &["0952"][..]),
        (FACTORY, "Example Dairy Co. (示例乳业)", pb::Role::Manufacturer, &[][..]),
    ];
    for (i, (uscc, name, role, scope)) in orgs.into_iter().enumerate() {
        log.append(&format!("org-{}", i + 1), &root, &register_org(1 + i as i64, uscc, name, role, scope));
    }
    for (i, (uscc, key, person)) in
        [(LAB, &lab, "李娜"), (CERT_BODY, &body, "王强"), (FACTORY, &factory, "张伟")].into_iter().enumerate()
    {
        log.append(&format!("key-{}", i + 1), &root, &register_key(4 + i as i64, uscc, key, person));
    }
    let production = event(
        7,
        Some(pb::subject::Kind::Product(product())),
        Body::Production(pb::Production {
            output: Some(pb::LotQuantity {
                product: Some(product()),
                quantity: Some(pb::Quantity { value: 1000.0, unit: "EA".into() }),
            }),
            production_date: "2026-09-01".into(),
            expiry_date: "2028-09-01".into(),
            factory_gln: "6931234000013".into(),
        }),
    );
    let produced = log.append("production", &factory, &production);
    let mut inspection = event(
        8,
        Some(pb::subject::Kind::Product(product())),
        Body::Inspection(pb::Inspection {
            report_number: "SH-SEED-0001".into(),
            product: Some(product()),
            standards: vec!["GB 19644-2010".into()],
            items: vec![pb::TestItem {
                name: "melamine (三聚氰胺)".into(),
                value: "not detected".into(),
                unit: "mg/kg".into(),
                limit: "<= 2.5".into(),
                result: pb::Conclusion::Conformant as i32,
            }],
            conclusion: pb::Conclusion::Conformant as i32,
            destructive: true,
            client_uscc: FACTORY.into(),
        }),
    );
    inspection.parents = vec![produced];
    let inspected = log.append("inspection", &lab, &inspection);
    let mut certificate = event(
        9,
        Some(pb::subject::Kind::Certificate(cert_key())),
        Body::CertificateIssued(pb::CertificateIssued {
            certificate: Some(cert_key()),
            holder_uscc: FACTORY.into(),
            manufacturer_uscc: FACTORY.into(),
            factory_name: "Example Dairy No. 1 Plant".into(),
            factory_gln: String::new(),
            products: vec![pb::CertifiedProduct {
                gtin: GTIN.into(),
                name: "infant formula".into(),
                model: "900 g".into(),
            }],
            standards: vec!["GB 10765-2021".into()],
            certification_mode: "型式试验+初始工厂检查+获证后监督".into(),
            issued_on: "2026-09-21".into(),
            valid_until: "2029-09-20".into(),
            scope: String::new(),
        }),
    );
    certificate.parents = vec![inspected];
    log.append("certificate", &body, &certificate);
    log
}

/// `[0, a, b, leaf, root, old root, proof…]`: the arbitrary-input mode of
/// the proof target, filled with a real proof.
fn proof_input(a: u64, b: u64, leaf: &Hash, root: &Hash, old_root: &Hash, proof: &[Hash]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(&b.to_be_bytes());
    for hash in [leaf, root, old_root].into_iter().chain(proof) {
        out.extend_from_slice(hash);
    }
    out
}

/// A file of the repository's test data (`testdata/`).
fn testdata(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let mut out = Writer { root, count: 0, valid: Vec::new() };
    let log = build_log();
    let size = log.entries.len() as u64;

    for (seq, (name, bytes)) in log.events.iter().enumerate() {
        out.put_valid("event_decode", &format!("{seq:02}-{name}"), "event", bytes);
        out.put_valid("entry_decode", &format!("{seq:02}-{name}"), "entry", &log.entries[seq].encode());
    }

    // The checkpoint, signed by the log and cosigned by the witness.
    let root_hash = log.tree.root();
    let checkpoint = Checkpoint { origin: LOG_ORIGIN.into(), size, root: root_hash, extensions: Vec::new() };
    let signed = note::sign_checkpoint(&checkpoint, &log_signer()).expect("signs");
    let line = witness().cosign(&checkpoint, 1_790_000_600).expect("cosigns");
    let cosigned = note::add_signature_lines(&signed, &format!("{line}\n")).expect("adds the cosignature");
    note::open_checkpoint(&cosigned, &log_signer().verifier(), &[witness().verifier()]).expect("the seed opens");
    out.put_valid("note_parse", "checkpoint-signed", "signed-checkpoint", signed.as_bytes());
    out.put_valid("note_parse", "checkpoint-cosigned", "cosigned-checkpoint", cosigned.as_bytes());
    out.put_valid("note_parse", "checkpoint-body", "checkpoint-body", checkpoint.to_body().as_bytes());
    let with_extension = Checkpoint { extensions: vec!["qtrace extension line".into()], ..checkpoint.clone() };
    let extended = note::sign_checkpoint(&with_extension, &log_signer()).expect("signs");
    out.put_valid("note_parse", "checkpoint-extension", "signed-checkpoint", extended.as_bytes());
    out.put_valid("note_parse", "vkey-log", "vkey", log_signer().verifier().to_string().as_bytes());
    out.put_valid("note_parse", "vkey-witness", "witness-vkey", witness().verifier().to_string().as_bytes());
    out.put_valid("note_parse", "vkey-c2sp-example", "vkey", qtrace_fuzz::EXAMPLE_VKEY.as_bytes());
    let text = testdata("signed-note.txt");
    let example = text
        .split("----- BEGIN NOTE -----\n")
        .nth(1)
        .and_then(|rest| rest.split("----- END NOTE -----").next())
        .expect("signed-note.txt holds a note between BEGIN and END lines");
    out.put_valid("note_parse", "c2sp-example-note", "example-note", example.as_bytes());

    // Real proofs, in the arbitrary-input mode, and tree seeds for the other.
    for (index, tree_size) in [(0, 1), (3, 10), (9, 10), (4, 7)] {
        let proof = log.tree.inclusion_proof(index, tree_size).expect("inclusion proof");
        let root = log.tree.root_at(tree_size).expect("root");
        let leaf = log.entries[index as usize].hash().0;
        let input = proof_input(index, tree_size, &leaf, &root, &[0; 32], &proof);
        out.put_valid("proof_verify", &format!("inclusion-{index}-of-{tree_size}"), "inclusion-proof", &input);
    }
    for (old_size, new_size) in [(1, 10), (4, 10), (7, 10), (10, 10), (3, 7)] {
        let proof = log.tree.consistency_proof(old_size, new_size).expect("consistency proof");
        let old_root = log.tree.root_at(old_size).expect("old root");
        let new_root = log.tree.root_at(new_size).expect("new root");
        let input = proof_input(old_size, new_size, &[0; 32], &new_root, &old_root, &proof);
        out.put_valid("proof_verify", &format!("consistency-{old_size}-to-{new_size}"), "consistency-proof", &input);
    }
    for (i, seed) in [[1u8, 0, 0, 0], [1, 63, 200, 7], [1, 9, 3, 250]].iter().enumerate() {
        let mut input = seed.to_vec();
        input.extend((0..56).map(|j| (j * 37 + i * 11) as u8));
        out.put_valid("proof_verify", &format!("tree-{i}"), "tree", &input);
    }

    // Identifiers: every value of the test data, valid or not; the valid
    // ones are listed as such.
    for (i, line) in testdata("identifiers.tsv").lines().skip(1).enumerate() {
        let mut fields = line.split('\t');
        let (Some(kind), Some(value), Some(valid)) = (fields.next(), fields.next(), fields.next()) else {
            panic!("identifiers.tsv line {}: not kind, value, valid", i + 2);
        };
        let name = format!("{i:02}-{kind}");
        let parsed_as = match kind {
            "uscc" => "uscc",
            "gtin" => "gtin",
            "gln" => "gln",
            "digital_link" | "element_string" => "product-code",
            other => panic!("identifiers.tsv line {}: unknown kind {other}", i + 2),
        };
        match valid {
            "yes" => out.put_valid("product_code", &name, parsed_as, value.as_bytes()),
            _ => out.put("product_code", &name, value.as_bytes()),
        }
    }
    for (name, kind, code) in [
        ("element-string-expiry", "product-code", "(01)09520123456788(17)280901(10)SEED-LOT-1(21)SN-0001"),
        (
            "digital-link-query",
            "product-code",
            "https://id.gs1.org/01/09520123456788/10/SEED%2FLOT?17=280901&linkType=gs1:pip",
        ),
        ("date-iso", "date", "2028-09-01"),
    ] {
        out.put_valid("product_code", name, kind, code.as_bytes());
    }
    // The short form `qtrace check` also reads (GTIN/lot): not a GS1 code.
    out.put_valid("product_code", "short-form", "short-product-code", b"09520123456788/SEED-LOT-1");

    // Evidence bundles: every entry with its inclusion proof into the
    // cosigned checkpoint, about a record, a certificate and a product code.
    let bundle_log = pb::BundleLog {
        log_id: log.log_id.0.to_vec(),
        checkpoint: Some(pb::Checkpoint { note: cosigned.clone(), origin: String::new(), size, root: Vec::new() }),
        entries: log
            .entries
            .iter()
            .map(|entry| pb::BundleEntry {
                entry: Some(entry.to_pb(&log.log_id)),
                inclusion_path: log
                    .tree
                    .inclusion_proof(entry.seq, size)
                    .expect("inclusion proof")
                    .iter()
                    .map(|h| h.to_vec())
                    .collect(),
            })
            .collect(),
        equivocations: Vec::new(),
    };
    let production_ref =
        pb::RecordRef { log_id: log.log_id.0.to_vec(), seq: 7, entry_hash: log.entries[7].hash().0.to_vec() };
    for (name, kind) in [
        ("record", pb::verdict_subject::Kind::Record(production_ref)),
        ("certificate", pb::verdict_subject::Kind::Certificate(cert_key())),
        ("product-code", pb::verdict_subject::Kind::ProductCode(format!("(01){GTIN}(10){LOT}"))),
    ] {
        let bundle = pb::Bundle {
            version: qtrace_ledger::bundle::BUNDLE_VERSION,
            subject: Some(pb::VerdictSubject { kind: Some(kind) }),
            logs: vec![bundle_log.clone()],
            created_at_micros: (T0_MILLIS + 3_600_000) * 1_000,
            as_of: "2026-09-22".into(),
        };
        let bytes = bundle.encode_to_vec();
        let opened = qtrace_ledger::bundle::open(
            &qtrace_ledger::bundle::decode(&bytes).expect("decodes"),
            &qtrace_ledger::verdict::Trust {
                logs: vec![log_signer().verifier()],
                witnesses: vec![witness().verifier()],
            },
            None,
        )
        .expect("the seed bundle opens");
        assert!(opened.rejected_registry.is_empty(), "seed registry records rejected: {:?}", opened.rejected_registry);
        // The verdict reaches its checks: the fuzzer starts from a bundle that verifies.
        let trust = qtrace_ledger::verdict::Trust {
            logs: vec![log_signer().verifier()],
            witnesses: vec![witness().verifier()],
        };
        let options = qtrace_ledger::verdict::Options::default();
        let report =
            qtrace_ledger::verdict::verify_subject(&opened.view, &trust, bundle.subject.as_ref(), None, None, options)
                .expect("the seed bundle's verdict computes");
        println!("seeds: bundle about the {name}: {}", report.verdict.name());
        out.put_valid("bundle_open", name, "bundle", &bytes);
    }
    out.write_manifest();
    println!("seeds: wrote {} files ({} valid seeds listed) under {}", out.count, out.valid.len(), out.root.display());
}
