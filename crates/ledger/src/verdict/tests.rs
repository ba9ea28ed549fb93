//! The verdict rules, one table: each row builds a world on a [`TestLog`]
//! (a produced, tested, certified, shipped, received and sold lot of infant
//! formula, plus what the row adds), opens it as a [`MemView`] with signed
//! checkpoints and inclusion proofs, asks [`verify_subject`] about a subject
//! and checks the verdict and the severity (and a part of the detail) of the
//! check the row is about.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;

use super::*;
use crate::event::EventKind as K;
use crate::merkle::MemTree;
use crate::note::{self, Checkpoint, Cosigner, Signer};
use crate::pb::event::Body;
use crate::testkit::*;
use crate::view::{MemView, Proven, Record};

/// The origin and key the world's checkpoints are signed with: the log key
/// ([`Who::Log`], seed 1), so the log id matches.
fn log_signer() -> Signer {
    Signer::new("qtrace.test/verdict", SigningKey::from_bytes(&[1; 32])).unwrap_or_else(|e| panic!("{e}"))
}

fn witness() -> Cosigner {
    Cosigner::new("witness.test/w1", SigningKey::from_bytes(&[77; 32])).unwrap_or_else(|e| panic!("{e}"))
}

/// What a row verifies.
#[derive(Clone, Copy)]
enum Subject {
    /// A product code as printed ("GTIN/LOT", a Digital Link, a bare GTIN).
    Code(&'static str),
    /// The world's certificate (CERT_BODY / CERT_NUMBER).
    Certificate,
    /// A record the world named.
    Record(&'static str),
    /// A record by sequence number.
    Seq(u64),
}

/// A log and how the verifier sees it.
struct World {
    log: TestLog,
    /// Records by name, for subjects and later references.
    named: BTreeMap<&'static str, pb::RecordRef>,
    today: &'static str,
    /// Records whose signature is altered after they were logged.
    tampered: Vec<&'static str>,
    /// Records shown without an inclusion proof.
    unproven: Vec<&'static str>,
    /// The log showed a second, different tree of the same size.
    forked: bool,
    /// Different-size evidence about an honest log, with no proof.
    reported: bool,
    /// Trusted witness cosigns the checkpoint.
    cosigned: bool,
    quorum: usize,
    at: Option<&'static str>,
    product: Option<&'static str>,
    include_corrected: bool,
}

impl World {
    /// The standard cast, then the story every row starts from.
    fn base() -> World {
        World::story(true)
    }

    /// The story, its certificate resting on a conformant report or not.
    fn story(conformant_basis: bool) -> World {
        let mut world = World {
            log: TestLog::standard(),
            named: BTreeMap::new(),
            today: "2025-09-01",
            tampered: Vec::new(),
            unproven: Vec::new(),
            forked: false,
            reported: false,
            cosigned: false,
            quorum: 0,
            at: None,
            product: None,
            include_corrected: false,
        };
        let produced = world.add("production", Who::Manufacturer, example(K::Production));
        let mut test = example(K::Inspection);
        if let Some(Body::Inspection(i)) = test.body.as_mut()
            && conformant_basis
        {
            i.conclusion = pb::Conclusion::Conformant.into();
        }
        let tested = world.add("inspection", Who::Lab, test);
        world.add("certificate", Who::CertBody, with_refs(example(K::CertificateIssued), &tested));
        let shipped = world.add("shipment", Who::Manufacturer, with_refs(example(K::Shipment), &produced));
        world.add("receipt", Who::Distributor, with_refs(example(K::Receipt), &shipped));
        world.add("sale", Who::Retailer, example(K::Sale));
        world
    }

    /// Appends `event` as the node would (authorised first) under `name`.
    fn add(&mut self, name: &'static str, who: Who, event: pb::Event) -> pb::RecordRef {
        let reference = self.log.accept(who, &event);
        self.named.insert(name, reference.clone());
        reference
    }

    /// Appends `event` without asking the registry: a record the node would
    /// have refused, as a lying or buggy log could still show it.
    fn force(&mut self, name: &'static str, who: Who, event: pb::Event) {
        let entry = self.log.sign(who, &event);
        self.log.entries.push(entry);
        let reference = self.log.record_ref(self.log.next_seq() - 1);
        self.named.insert(name, reference);
    }

    fn seq(&self, name: &str) -> u64 {
        self.named.get(name).unwrap_or_else(|| panic!("no record named {name}")).seq
    }

    /// The view a verifier gets: every entry with its inclusion proof in one
    /// signed checkpoint of the whole log, and the trust it needs.
    fn open(&self) -> (MemView, Trust, Options) {
        let signer = log_signer();
        let mut entries = self.log.entries.clone();
        for name in &self.tampered {
            let seq = self.seq(name);
            let entry = entries.iter_mut().find(|e| e.seq == seq).unwrap_or_else(|| panic!("{name}"));
            entry.signature[0] ^= 1;
        }
        let tree =
            MemTree::from_leaf_hashes(self.log.entries.iter().map(|e| e.hash().0)).unwrap_or_else(|e| panic!("{e}"));
        let size = tree.size();
        let checkpoint =
            Checkpoint { origin: "qtrace.test/verdict".into(), size, root: tree.root(), extensions: vec![] };
        let mut checkpoint_note = note::sign_checkpoint(&checkpoint, &signer).unwrap_or_else(|e| panic!("{e}"));
        if self.cosigned {
            let line = witness().cosign(&checkpoint, 1_756_700_000).unwrap_or_else(|e| panic!("{e}"));
            checkpoint_note =
                note::add_signature_lines(&checkpoint_note, &format!("{line}\n")).unwrap_or_else(|e| panic!("{e}"));
        }
        let today = Date::parse_iso(self.today).unwrap_or_else(|e| panic!("{e}"));
        let mut view = MemView::new(self.log.registry.clone(), today);
        let unproven: Vec<u64> = self.unproven.iter().map(|n| self.seq(n)).collect();
        for entry in entries {
            let proof = (!unproven.contains(&entry.seq)).then(|| Proven {
                checkpoint_note: checkpoint_note.clone(),
                tree_size: size,
                path: tree.inclusion_proof(entry.seq, size).unwrap_or_else(|e| panic!("{e}")),
            });
            view.insert(Record::new(self.log.log_id, entry), proof);
        }
        if self.forked {
            let other = Checkpoint { root: [0x42; 32], ..checkpoint.clone() };
            view.add_equivocation(pb::Equivocation {
                log_id: self.log.log_id.0.to_vec(),
                note_a: note::sign_checkpoint(&checkpoint, &signer).unwrap_or_else(|e| panic!("{e}")),
                note_b: note::sign_checkpoint(&other, &signer).unwrap_or_else(|e| panic!("{e}")),
                detail: "two roots for one size".into(),
                detected_at_micros: 0,
                source: "a peer".into(),
                proof: Vec::new(),
            });
        }
        if self.reported {
            // A peer claims the honest log's smaller checkpoint conflicts
            // with its larger one, with no proof: an alarm, not proof.
            let smaller = size - 1;
            let root = tree.root_at(smaller).unwrap_or_else(|e| panic!("{e}"));
            let earlier = Checkpoint { size: smaller, root, ..checkpoint.clone() };
            view.add_equivocation(pb::Equivocation {
                log_id: self.log.log_id.0.to_vec(),
                note_a: note::sign_checkpoint(&earlier, &signer).unwrap_or_else(|e| panic!("{e}")),
                note_b: note::sign_checkpoint(&checkpoint, &signer).unwrap_or_else(|e| panic!("{e}")),
                detail: "a peer's consistency proof did not verify".into(),
                detected_at_micros: 0,
                source: "a peer".into(),
                proof: Vec::new(),
            });
        }
        let trust = Trust { logs: vec![signer.verifier()], witnesses: vec![witness().verifier()] };
        let options =
            Options { witness_quorum: self.quorum, include_corrected: self.include_corrected, ..Options::default() };
        (view, trust, options)
    }

    fn verify(&self, subject: Subject) -> Report {
        let (view, trust, options) = self.open();
        let kind = match subject {
            Subject::Code(text) => pb::verdict_subject::Kind::ProductCode(text.into()),
            Subject::Certificate => pb::verdict_subject::Kind::Certificate(cert_key(CERT_BODY, CERT_NUMBER)),
            Subject::Record(name) => pb::verdict_subject::Kind::Record(
                self.named.get(name).unwrap_or_else(|| panic!("no record named {name}")).clone(),
            ),
            Subject::Seq(seq) => pb::verdict_subject::Kind::Record(pb::RecordRef {
                log_id: self.log.log_id.0.to_vec(),
                seq,
                entry_hash: Vec::new(),
            }),
        };
        let at = self.at.map(|d| Date::parse_iso(d).unwrap_or_else(|e| panic!("{e}")));
        let product = self.product.map(|g| Gtin::parse(g).unwrap_or_else(|e| panic!("{e}")));
        let subject = pb::VerdictSubject { kind: Some(kind) };
        verify_subject(&view, &trust, Some(&subject), at, product.as_ref(), options).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A status change of the world's certificate, by its body, on `date`.
fn certificate_change(kind: K, date: &str) -> pb::Event {
    on(example(kind), date)
}

/// A production of `lot` of the formula, optionally claiming the world's
/// certificate and naming a factory.
fn lot_made(lot: &str, claims: bool, factory_gln: &str) -> pb::Event {
    let mut event = example(K::Production);
    if let Some(pb::Subject { kind: Some(pb::subject::Kind::Product(p)) }) = event.subject.as_mut() {
        p.lot = lot.into();
    }
    if let Some(Body::Production(p)) = event.body.as_mut() {
        if let Some(product) = p.output.as_mut().and_then(|o| o.product.as_mut()) {
            product.lot = lot.into();
        }
        p.factory_gln = factory_gln.into();
    }
    if claims {
        event.documents.push(pb::Document {
            kind: "certificate".into(),
            id: format!("{CERT_BODY}/{CERT_NUMBER}"),
            sha256: Vec::new(),
        });
    }
    event
}

struct Row {
    name: &'static str,
    world: fn(&mut World),
    subject: Subject,
    verdict: Overall,
    /// The check the row is about and its severity; `None` when the check
    /// must be absent.
    check: &'static str,
    severity: Option<Severity>,
    /// A part of that check's detail ("" for any).
    detail: &'static str,
}

const LOT_CODE: &str = "09520123456788/L20250615A";

fn nothing(_: &mut World) {}

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use Overall::{Invalid as INVALID, NotFound as NOT_FOUND, Valid as VALID, Warning as WARNING};
    use Severity::{Invalid, Ok, Warning};
    let row = |name, world, subject, verdict, check, severity, detail| Row { name, world, subject, verdict, check, severity, detail };
    vec![
        // Integrity: signatures and inclusion in the signed checkpoint.
        row("the story's lot", nothing, Subject::Code(LOT_CODE), VALID, "integrity", Some(Ok), "unaltered"),
        row("a record altered after logging", |w| w.tampered.push("production"), Subject::Code(LOT_CODE), INVALID, "integrity", Some(Invalid), "signature does not verify"),
        row("a record without an inclusion proof", |w| w.unproven.push("shipment"), Subject::Code(LOT_CODE), INVALID, "integrity", Some(Invalid), "no inclusion proof"),
        // Accountability: who signed, and whether they may.
        row("the story's signers", nothing, Subject::Code(LOT_CODE), VALID, "accountability", Some(Ok), "张伟"),
        row("a lot made with an unregistered key", |w| w.force("rogue", Who::Newcomer, lot_made("L-ROGUE", false, "")), Subject::Code("09520123456788/L-ROGUE"), INVALID, "accountability", Some(Invalid), "未登记密钥"),
        row("a lot made by a retailer", |w| w.force("rogue", Who::Retailer, lot_made("L-SHOP", false, "")), Subject::Code("09520123456788/L-SHOP"), INVALID, "accountability", Some(Invalid), "may not be signed"),
        // Source and destination.
        row("source traced from the production", nothing, Subject::Code(LOT_CODE), VALID, "source", Some(Ok), "来源可查"),
        row("a lot nobody produced", nothing, Subject::Code("06931234567899/B7"), WARNING, "source", Some(Warning), "来源不明"),
        row("destination counts", nothing, Subject::Code(LOT_CODE), VALID, "destination", Some(Ok), "1 shipment(s), 1 receipt(s), 1 sale(s)"),
        row("a whole product line", nothing, Subject::Code("09520123456788"), WARNING, "source", Some(Warning), "no lot given"),
        // Certificate states, for the certificate and for the product.
        row("an active certificate", nothing, Subject::Certificate, VALID, "certificate", Some(Ok), "valid (有效)"),
        row("a suspended certificate", |w| { w.add("suspended", Who::CertBody, certificate_change(K::CertificateSuspended, "2025-07-10")); }, Subject::Certificate, WARNING, "certificate", Some(Warning), "suspended (暂停)"),
        row("a product under a suspended certificate", |w| { w.add("suspended", Who::CertBody, certificate_change(K::CertificateSuspended, "2025-07-10")); }, Subject::Code(LOT_CODE), WARNING, "certificate", Some(Warning), "suspended (暂停)"),
        row("a withdrawn certificate", |w| { w.add("withdrawn", Who::CertBody, certificate_change(K::CertificateWithdrawn, "2025-07-10")); }, Subject::Certificate, INVALID, "certificate", Some(Invalid), "withdrawn (撤销)"),
        row("a cancelled certificate", |w| { w.add("cancelled", Who::CertBody, certificate_change(K::CertificateCancelled, "2025-07-10")); }, Subject::Certificate, INVALID, "certificate", Some(Invalid), "cancelled (注销)"),
        row("an expired certificate", |w| w.today = "2028-07-01", Subject::Certificate, INVALID, "certificate", Some(Invalid), "expired (过期)"),
        row("a renewed certificate past its first validity", |w| { w.add("renewed", Who::CertBody, certificate_change(K::CertificateRenewed, "2025-07-10")); w.today = "2028-07-01"; }, Subject::Certificate, VALID, "certificate", Some(Ok), "valid until 2031-06-14"),
        row("--at a day it was suspended", |w| {
            w.add("suspended", Who::CertBody, certificate_change(K::CertificateSuspended, "2025-07-10"));
            w.add("restored", Who::CertBody, certificate_change(K::CertificateRestored, "2025-08-01"));
            w.at = Some("2025-07-15");
        }, Subject::Certificate, VALID, "certificate", Some(Ok), "on 2025-07-15 it was suspended (暂停)"),
        row("--at a day before it was issued", |w| w.at = Some("2025-06-01"), Subject::Certificate, VALID, "certificate", Some(Ok), "on 2025-06-01 it was expired (过期)"),
        // Basis and scope.
        row("a certificate resting on a conformant report", nothing, Subject::Certificate, VALID, "basis", Some(Ok), "1 verified record"),
        row("a certificate resting on a failed report", |w| *w = World::story(false), Subject::Certificate, WARNING, "basis", Some(Warning), "non-conformant"),
        row("a certificate shown for its product", |w| w.product = Some(GTIN_FORMULA), Subject::Certificate, VALID, "scope", Some(Ok), "covers GTIN"),
        row("a certificate shown for another product", |w| w.product = Some(GTIN_OUT_OF_SCOPE), Subject::Certificate, INVALID, "scope", Some(Invalid), "冒用"),
        // Whose lot a certificate covers (defect 7).
        row("the holder's lot is certified", nothing, Subject::Code(LOT_CODE), VALID, "certificate", Some(Ok), "certified (已认证)"),
        row("a rival's lot of the same GTIN is not certified", |w| { w.add("rival", Who::Manufacturer2, lot_made("L-RIVAL", false, "")); }, Subject::Code("09520123456788/L-RIVAL"), VALID, "certificate", Some(Ok), "not certified (未认证)"),
        row("a rival's lot claiming the certificate is misuse", |w| { w.add("rival", Who::Manufacturer2, lot_made("L-RIVAL", true, "")); }, Subject::Code("09520123456788/L-RIVAL"), INVALID, "certificate", Some(Invalid), "北京禾丰乳业有限公司 (91110108MA01C4RB6J) claims certificate"),
        row("the holder's claim names the holder", |w| { w.add("rival", Who::Manufacturer2, lot_made("L-RIVAL", true, "")); }, Subject::Code("09520123456788/L-RIVAL"), INVALID, "certificate", Some(Invalid), "held by 深圳市乳源食品有限公司 (9144030071526726XG) — a certificate used by another organisation (冒用)"),
        row("the holder's own claim", |w| { w.add("own", Who::Manufacturer, lot_made("L-OWN", true, GLN_FACTORY)); }, Subject::Code("09520123456788/L-OWN"), VALID, "certificate", Some(Ok), "certified (已认证)"),
        row("the holder's claim for a lot of another factory", |w| { w.add("elsewhere", Who::Manufacturer, lot_made("L-ELSEWHERE", true, GLN_WAREHOUSE)); }, Subject::Code("09520123456788/L-ELSEWHERE"), INVALID, "certificate", Some(Invalid), "冒用"),
        row("a product line is covered by its certificate", nothing, Subject::Code("09520123456788"), WARNING, "certificate", Some(Ok), "certified (已认证)"),
        // Recalls, of the lot and of an input lot.
        row("a recalled lot", |w| { w.add("recall", Who::Manufacturer, example(K::Recall)); }, Subject::Code(LOT_CODE), INVALID, "recall", Some(Invalid), "RECALLED"),
        row("a lot made from a recalled input lot", |w| {
            let powder = w.add("powder", Who::Manufacturer, pb::Event {
                subject: Some(pb::Subject { kind: Some(pb::subject::Kind::Product(product(GTIN_POWDER, "RM-0611", ""))) }),
                body: Some(Body::Production(pb::Production {
                    output: Some(lot_quantity(GTIN_POWDER, "RM-0611", 500.0, "KGM")),
                    production_date: "2025-06-11".into(),
                    expiry_date: "2026-06-10".into(),
                    factory_gln: GLN_FACTORY.into(),
                })),
                ..example(K::Production)
            });
            let mut made = with_refs(example(K::Transformation), &powder);
            if let Some(Body::Transformation(t)) = made.body.as_mut() {
                t.outputs = vec![lot_quantity(GTIN_FORMULA, "L-MIX", 1200.0, "EA")];
            }
            made.subject = Some(pb::Subject { kind: Some(pb::subject::Kind::Product(product(GTIN_FORMULA, "L-MIX", ""))) });
            w.add("mixed", Who::Manufacturer, made);
            let mut recall = example(K::Recall);
            if let Some(Body::Recall(r)) = recall.body.as_mut() {
                r.gtin = GTIN_POWDER.into();
                r.lots = vec!["RM-0611".into()];
            }
            recall.subject = Some(pb::Subject { kind: Some(pb::subject::Kind::Product(product(GTIN_POWDER, "", ""))) });
            w.add("recall", Who::Manufacturer, recall);
        }, Subject::Code("09520123456788/L-MIX"), INVALID, "recall", Some(Invalid), "input lot 06931234567899 RM-0611"),
        row("no recall", nothing, Subject::Code(LOT_CODE), VALID, "recall", Some(Ok), "未召回"),
        // Spot checks and inspections.
        row("a failed spot check", |w| { w.add("spot", Who::Regulator, example(K::SpotCheck)); }, Subject::Code(LOT_CODE), INVALID, "spot_check", Some(Invalid), "监督抽查"),
        row("a failed inspection", |w| { w.add("failed", Who::Lab, pb::Event { nonce: 3, ..example(K::Inspection) }); }, Subject::Code(LOT_CODE), INVALID, "spot_check", Some(Invalid), "NON-CONFORMANT"),
        row("no failed test", nothing, Subject::Code(LOT_CODE), VALID, "spot_check", Some(Ok), "non-conformant"),
        // Blacklist on the day of the verdict.
        row("a producer on the blacklist", |w| {
            w.add("rival", Who::Manufacturer2, lot_made("L-RIVAL", false, ""));
            w.add("listed", Who::Regulator, on(example(K::Blacklisted), "2025-07-01"));
        }, Subject::Code("09520123456788/L-RIVAL"), WARNING, "blacklist", Some(Warning), "质量失信黑名单"),
        row("a listing that ended before the day", |w| {
            w.add("rival", Who::Manufacturer2, lot_made("L-RIVAL", false, ""));
            let mut listed = on(example(K::Blacklisted), "2025-07-01");
            if let Some(Body::Blacklisted(b)) = listed.body.as_mut() {
                b.listed_on = "2025-07-01".into();
                b.until = "2025-07-31".into();
            }
            w.add("listed", Who::Regulator, listed);
        }, Subject::Code("09520123456788/L-RIVAL"), VALID, "blacklist", Some(Ok), "未列入黑名单"),
        row("a delisted producer", |w| {
            w.add("rival", Who::Manufacturer2, lot_made("L-RIVAL", false, ""));
            w.add("listed", Who::Regulator, on(example(K::Blacklisted), "2025-07-01"));
            w.add("delisted", Who::Regulator, on(example(K::Delisted), "2025-08-01"));
        }, Subject::Code("09520123456788/L-RIVAL"), VALID, "blacklist", Some(Ok), "未列入黑名单"),
        // Equivocation (same-size fork only) and witnesses.
        row("a log that signed two trees of one size", |w| w.forked = true, Subject::Code(LOT_CODE), INVALID, "equivocation", Some(Invalid), "分叉"),
        row("a peer's unproven claim about an honest log", |w| w.reported = true, Subject::Code(LOT_CODE), WARNING, "equivocation", Some(Warning), "reported"),
        row("an honest log", nothing, Subject::Code(LOT_CODE), VALID, "equivocation", None, ""),
        row("a checkpoint short of the witness quorum", |w| w.quorum = 1, Subject::Code(LOT_CODE), WARNING, "witnesses", Some(Warning), "cosigned by 0 of the 1"),
        row("a checkpoint the witness cosigned", |w| { w.quorum = 1; w.cosigned = true; }, Subject::Code(LOT_CODE), VALID, "witnesses", None, ""),
        row("the cosignature is reported", |w| { w.quorum = 1; w.cosigned = true; }, Subject::Code(LOT_CODE), VALID, "integrity", Some(Ok), "witness.test/w1"),
        // Corrections.
        row("a record its signer corrected", |w| {
            let shipped = w.named["shipment"].clone();
            w.add("correction", Who::Manufacturer, with_refs(example(K::Correction), &shipped));
        }, Subject::Record("shipment"), WARNING, "correction", Some(Warning), "the signer corrected this record"),
        row("a lot with a corrected record", |w| {
            let shipped = w.named["shipment"].clone();
            w.add("correction", Who::Manufacturer, with_refs(example(K::Correction), &shipped));
        }, Subject::Code(LOT_CODE), VALID, "correction", Some(Ok), "left out"),
        row("including corrected records keeps them", |w| {
            let shipped = w.named["shipment"].clone();
            w.add("correction", Who::Manufacturer, with_refs(example(K::Correction), &shipped));
            w.include_corrected = true;
        }, Subject::Code(LOT_CODE), VALID, "correction", None, ""),
        // Records.
        row("a record", nothing, Subject::Record("receipt"), VALID, "source", Some(Ok), "2 upstream record(s)"),
        row("a recalled lot's record", |w| { w.add("recall", Who::Manufacturer, example(K::Recall)); }, Subject::Record("production"), INVALID, "recall", Some(Invalid), "RECALLED"),
        row("a certificate's record", nothing, Subject::Record("certificate"), VALID, "certificate", Some(Ok), "valid (有效)"),
        // NOT_FOUND.
        row("an unknown lot", nothing, Subject::Code("09520123456788/NO-SUCH"), NOT_FOUND, "found", Some(Invalid), "查无此产品"),
        row("an unknown product", nothing, Subject::Code(GTIN_OUT_OF_SCOPE), NOT_FOUND, "found", Some(Invalid), "查无此产品"),
        row("an unknown certificate", |w| w.log = TestLog::standard(), Subject::Certificate, NOT_FOUND, "found", Some(Invalid), "查无此证书"),
        row("an unknown record", nothing, Subject::Seq(9_999), NOT_FOUND, "found", Some(Invalid), "not in the ledger"),
    ]
}

#[test]
fn verdict_rules() {
    let mut failures = Vec::new();
    for row in rows() {
        let mut world = World::base();
        (row.world)(&mut world);
        let report = world.verify(row.subject);
        let check = report.check(row.check);
        let severity = check.map(|c| c.severity);
        let detail_ok = check.is_none_or(|c| c.detail.contains(row.detail));
        if report.verdict != row.verdict || severity != row.severity || !detail_ok {
            failures.push(format!(
                "{}: expected {} with {} {:?} containing {:?}; got {} with {:?}\n  {}",
                row.name,
                row.verdict.name(),
                row.check,
                row.severity,
                row.detail,
                report.verdict.name(),
                check,
                report
                    .checks
                    .iter()
                    .map(|c| format!("{} {}: {}", c.name, c.severity.name(), c.detail))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{} row(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn malformed_subjects_name_the_field() {
    let world = World::base();
    let (view, trust, options) = world.open();
    let cases: Vec<(Option<pb::VerdictSubject>, &str)> = vec![
        (None, "subject: give a record"),
        (Some(pb::VerdictSubject { kind: None }), "subject: give a record"),
        (
            Some(pb::VerdictSubject {
                kind: Some(pb::verdict_subject::Kind::Record(pb::RecordRef {
                    log_id: vec![1; 3],
                    ..Default::default()
                })),
            }),
            "subject.record.log_id",
        ),
        (
            Some(pb::VerdictSubject {
                kind: Some(pb::verdict_subject::Kind::Certificate(cert_key("not a code", CERT_NUMBER))),
            }),
            "subject.certificate.issuer_uscc",
        ),
        (
            Some(pb::VerdictSubject { kind: Some(pb::verdict_subject::Kind::ProductCode("09520123456789/L".into())) }),
            "subject.product_code",
        ),
    ];
    for (subject, expected) in cases {
        let result = verify_subject(&view, &trust, subject.as_ref(), None, None, options);
        match result {
            Err(e @ (SubjectError::Missing | SubjectError::Invalid { .. })) => {
                assert!(e.to_string().starts_with(expected), "{subject:?}: {e}")
            }
            other => panic!("{subject:?}: expected a refusal naming {expected}, got {other:?}"),
        }
    }
}

/// The shared tail of every subject's verdict counts a record used twice
/// (a certificate reached as a claim and as a basis, a lot reached up- and
/// downstream) once: in the path it leaves, the integrity count, its
/// evidence and the responsible parties.
#[test]
fn conclude_counts_each_record_once() {
    let world = World::base();
    let (view, trust, options) = world.open();
    let ctx = checks::Ctx::new(&view, &trust, options);
    let record = |name: &&str| {
        let id = RecordId { log: world.log.log_id, seq: world.seq(name) };
        ctx.record(id).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("{name} not in the view"))
    };
    // (case, records used in order, the records counted in order)
    let cases: [(&str, &[&str], &[&str]); 3] = [
        ("nothing used", &[], &[]),
        ("no repeats", &["production", "inspection"], &["production", "inspection"]),
        (
            "repeats keep the first",
            &["certificate", "production", "certificate", "production", "sale"],
            &["certificate", "production", "sale"],
        ),
    ];
    for (case, given, counted) in cases {
        let mut used: Vec<Record> = given.iter().map(record).collect();
        let report = checks::conclude(&ctx, case.to_string(), &mut used, Vec::new());
        let seqs: Vec<u64> = used.iter().map(|r| r.id.seq).collect();
        let want: Vec<u64> = counted.iter().map(|n| world.seq(n)).collect();
        assert_eq!(seqs, want, "{case}: path");
        let integrity = report.check("integrity").unwrap_or_else(|| panic!("{case}: no integrity check"));
        assert!(
            integrity.detail.starts_with(&format!("all {} records", counted.len())),
            "{case}: {}",
            integrity.detail
        );
        let cited: Vec<&String> = integrity.evidence.iter().filter(|e| !e.starts_with("checkpoint ")).collect();
        assert_eq!(cited.len(), counted.len(), "{case}: {cited:?}");
        assert_eq!(report.responsible.len(), counted.len(), "{case}");
        assert_eq!(report.verdict, Overall::Valid, "{case}");
    }
}
