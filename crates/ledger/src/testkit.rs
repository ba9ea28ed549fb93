//! Builders shared by the unit tests: a valid example event of every body
//! kind, the cast of organisations and keys a log needs, and [`TestLog`], an
//! in-memory log that signs events, chains entries and keeps a [`Registry`]
//! up to date the way the node does (authorize, then apply).
//!
//! The values are realistic on purpose: the first five USCCs and the GTINs
//! and GLNs come from `testdata/identifiers.tsv`; the other USCCs were
//! computed with the GB 32100-2015 and GB 11714 check rules, and
//! `cast_codes_are_valid` proves they parse.

use prost::Message;

use crate::entry::Entry;
use crate::event::{self, EventKind, ValidEvent};
use crate::hash::{EntryHash, LogId};
use crate::ids::Date;
use crate::pb::{self, event::Body, subject::Kind};
use crate::registry::{AuthError, Authority, Records, Registry};
use crate::signing::SecretKey;

/// The market regulator that operates the log (上海市市场监督管理局).
pub const REGULATOR: &str = "91310000MA1K2Q7A5L";
/// A certification body (认证机构).
pub const CERT_BODY: &str = "913301007042187B2H";
/// A testing lab (检验检测机构).
pub const LAB: &str = "914403007152672A21";
/// A manufacturer of infant formula (生产企业).
pub const MANUFACTURER: &str = "9144030071526726XG";
/// A retailer; `92…` is an individual business (个体工商户), a corner shop.
pub const RETAILER: &str = "92320900MA1N3T5C5Q";
/// A distributor (经销商).
pub const DISTRIBUTOR: &str = "91320500MA1PQ8TN85";
/// A second manufacturer, a competitor of the first.
pub const MANUFACTURER_2: &str = "91110108MA01C4RB6J";
/// A second certification body.
pub const CERT_BODY_2: &str = "91330100MA2H3K6D1P";
/// A valid code that no record registers.
pub const UNREGISTERED: &str = "91510100MA6CB7NE9L";

/// Infant formula, in the scope of the lab and both certification bodies.
pub const GTIN_FORMULA: &str = "09520123456788";
/// Milk powder, the formula's raw material; also in scope.
pub const GTIN_POWDER: &str = "06931234567899";
/// A GTIN-13 (stored as 14 digits) outside every accreditation's scope.
pub const GTIN_OUT_OF_SCOPE: &str = "04006381333931";
/// The manufacturer's factory.
pub const GLN_FACTORY: &str = "6931234000013";
/// The distributor's warehouse.
pub const GLN_WAREHOUSE: &str = "0614141000012";
/// The lot produced on the example date.
pub const LOT: &str = "L20250615A";
/// The certificate of the examples.
pub const CERT_NUMBER: &str = "CQC2025010801234567";
/// The day every example event happens, at 10:00 China Standard Time.
pub const EVENT_DATE: &str = "2025-06-15";
/// GTIN prefixes (of the 14-digit form) the accreditations cover.
pub const SCOPE_PREFIXES: [&str; 2] = ["0952012", "0693123"];

/// The keys of the tests, each from a fixed seed, and the organisation each
/// acts for once [`TestLog::standard`] has registered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The log's own key: signs genesis and checkpoints.
    Log,
    /// The root authority named in genesis, acting for the regulator.
    Regulator,
    CertBody,
    Lab,
    Manufacturer,
    Distributor,
    Retailer,
    Manufacturer2,
    CertBody2,
    /// A non-admin key of the manufacturer (a quality clerk).
    Staff,
    /// A key nobody has registered yet.
    Newcomer,
}

impl Who {
    /// Every key that [`TestLog::standard`] registers as an admin key of its
    /// organisation, with that organisation.
    pub const ADMINS: [(Who, &'static str); 7] = [
        (Who::CertBody, CERT_BODY),
        (Who::Lab, LAB),
        (Who::Manufacturer, MANUFACTURER),
        (Who::Distributor, DISTRIBUTOR),
        (Who::Retailer, RETAILER),
        (Who::Manufacturer2, MANUFACTURER_2),
        (Who::CertBody2, CERT_BODY_2),
    ];

    fn seed(self) -> u8 {
        match self {
            Who::Log => 1,
            Who::Regulator => 2,
            Who::CertBody => 3,
            Who::Lab => 4,
            Who::Manufacturer => 5,
            Who::Distributor => 6,
            Who::Retailer => 7,
            Who::Manufacturer2 => 8,
            Who::CertBody2 => 9,
            Who::Staff => 10,
            Who::Newcomer => 11,
        }
    }

    pub fn secret(self) -> SecretKey {
        SecretKey::from_seed(&[self.seed(); 32])
    }

    pub fn public(self) -> [u8; 32] {
        self.secret().public_key().to_bytes()
    }
}

/// The log id of the log signed by [`Who::Log`].
pub fn log_id() -> LogId {
    LogId::of_key(&Who::Log.public())
}

/// The canonical encoding: what a client signs and the node stores.
pub fn encode(event: &pb::Event) -> Vec<u8> {
    event.encode_to_vec()
}

/// Decodes an event the test built, failing the test with the field path if
/// it is not valid.
pub fn valid(event: &pb::Event) -> ValidEvent {
    event::decode_event(&encode(event)).unwrap_or_else(|e| panic!("test event is invalid: {e}"))
}

/// 10:00 China Standard Time (+08:00) on `date` ("YYYY-MM-DD").
pub fn time_on(date: &str) -> pb::EventTime {
    let day = Date::parse_iso(date).unwrap_or_else(|e| panic!("test date {date:?}: {e}"));
    pb::EventTime { unix_millis: day.days_since_epoch() * 86_400_000 + 2 * 3_600_000, offset_minutes: 480 }
}

/// `event` moved to 10:00 CST on `date`.
pub fn on(mut event: pb::Event, date: &str) -> pb::Event {
    event.event_time = Some(time_on(date));
    event
}

pub fn record_ref(log: LogId, seq: u64, hash: EntryHash) -> pb::RecordRef {
    pb::RecordRef { log_id: log.0.to_vec(), seq, entry_hash: hash.0.to_vec() }
}

/// A well-formed reference to a record of some other log; the examples use
/// it wherever a body names an earlier record.
pub fn placeholder_ref() -> pb::RecordRef {
    record_ref(LogId([0x5a; 32]), 41, EntryHash([0xa5; 32]))
}

/// `event` with every record reference it holds (parents and the references
/// inside recall progress, recall closed and correction bodies) set to `to`.
pub fn with_refs(mut event: pb::Event, to: &pb::RecordRef) -> pb::Event {
    for parent in &mut event.parents {
        *parent = to.clone();
    }
    match event.body.as_mut() {
        Some(Body::RecallProgress(p)) => p.recall = Some(to.clone()),
        Some(Body::RecallClosed(c)) => c.recall = Some(to.clone()),
        Some(Body::Correction(c)) => {
            c.target = Some(to.clone());
            for corrective in &mut c.corrective {
                *corrective = to.clone();
            }
        }
        _ => {}
    }
    event
}

pub fn product(gtin: &str, lot: &str, serial: &str) -> pb::ProductKey {
    pb::ProductKey { gtin: gtin.into(), lot: lot.into(), serial: serial.into() }
}

pub fn lot_quantity(gtin: &str, lot: &str, value: f64, unit: &str) -> pb::LotQuantity {
    pb::LotQuantity { product: Some(product(gtin, lot, "")), quantity: Some(pb::Quantity { value, unit: unit.into() }) }
}

pub fn cert_key(issuer: &str, number: &str) -> pb::CertificateKey {
    pb::CertificateKey { issuer_uscc: issuer.into(), number: number.into() }
}

fn subject(kind: Kind) -> Option<pb::Subject> {
    Some(pb::Subject { kind: Some(kind) })
}

fn product_subject(gtin: &str, lot: &str, serial: &str) -> Option<pb::Subject> {
    subject(Kind::Product(product(gtin, lot, serial)))
}

fn org_subject(uscc: &str) -> Option<pb::Subject> {
    subject(Kind::OrganisationUscc(uscc.into()))
}

fn cert_subject() -> Option<pb::Subject> {
    subject(Kind::Certificate(cert_key(CERT_BODY, CERT_NUMBER)))
}

fn event(subject: Option<pb::Subject>, body: Body) -> pb::Event {
    pb::Event { event_time: Some(time_on(EVENT_DATE)), subject, body: Some(body), ..Default::default() }
}

fn test_items() -> Vec<pb::TestItem> {
    vec![
        pb::TestItem {
            name: "三聚氰胺 melamine".into(),
            value: "未检出 not detected".into(),
            unit: "mg/kg".into(),
            limit: "≤ 2.5".into(),
            result: pb::Conclusion::Conformant.into(),
        },
        pb::TestItem {
            name: "蛋白质 protein".into(),
            value: "0.38".into(),
            unit: "g/100kJ".into(),
            limit: "0.45–0.70".into(),
            result: pb::Conclusion::NonConformant.into(),
        },
    ]
}

/// The accreditation of a certification body (认证机构批准): any standard,
/// the scope prefixes, March 2023 to February 2028.
pub fn cert_body_accreditation(number: &str) -> pb::Accreditation {
    pb::Accreditation {
        number: number.into(),
        gtin_prefixes: SCOPE_PREFIXES.map(String::from).to_vec(),
        standards: Vec::new(),
        valid_from: "2023-03-01".into(),
        valid_until: "2028-02-28".into(),
    }
}

/// The lab's accreditation (资质认定, CMA): three standards, the scope
/// prefixes, 2024 to 2027.
pub fn lab_accreditation() -> pb::Accreditation {
    pb::Accreditation {
        number: "CMA 201919000123".into(),
        gtin_prefixes: SCOPE_PREFIXES.map(String::from).to_vec(),
        standards: vec!["GB 10766".into(), "GB 19644".into(), "GB 5009".into()],
        valid_from: "2024-01-01".into(),
        valid_until: "2027-12-31".into(),
    }
}

/// A regulator's registration of an organisation.
pub fn org_registered(
    uscc: &str,
    name: &str,
    roles: &[pb::Role],
    accreditations: Vec<pb::Accreditation>,
    region: &str,
) -> pb::Event {
    event(
        org_subject(uscc),
        Body::OrgRegistered(pb::OrgRegistered {
            uscc: uscc.into(),
            name: name.into(),
            roles: roles.iter().map(|r| i32::from(*r)).collect(),
            accreditations,
            address: format!("{name}注册地址 registered address"),
            region: region.into(),
        }),
    )
}

/// A regulator's registration of `uscc` as the workloads outside this crate
/// write it: the node and store benchmarks, the fuzz seeds and the
/// integration tests. Accredited for the GTIN prefixes in `scope` from 2020
/// to 2099 (no accreditation when `scope` is empty), in Shanghai (310000),
/// with no address and no event time: each caller stamps the time its
/// workload runs at. The fuzz corpus holds these bytes, so a change here
/// means regenerating it (`cargo run --bin seeds`).
pub fn register_org(uscc: &str, name: &str, roles: &[pb::Role], scope: &[&str]) -> pb::Event {
    let accreditations = if scope.is_empty() {
        Vec::new()
    } else {
        vec![pb::Accreditation {
            number: format!("ACC-{uscc}"),
            gtin_prefixes: scope.iter().map(|s| s.to_string()).collect(),
            standards: Vec::new(),
            valid_from: "2020-01-01".into(),
            valid_until: "2099-12-31".into(),
        }]
    };
    pb::Event {
        subject: org_subject(uscc),
        body: Some(Body::OrgRegistered(pb::OrgRegistered {
            uscc: uscc.into(),
            name: name.into(),
            roles: roles.iter().map(|r| i32::from(*r)).collect(),
            accreditations,
            address: String::new(),
            region: "310000".into(),
        })),
        ..Default::default()
    }
}

/// A key registration for `uscc`.
pub fn key_registered(uscc: &str, key: Who, person: &str, title: &str, admin: bool) -> pb::Event {
    event(
        org_subject(uscc),
        Body::KeyRegistered(pb::KeyRegistered {
            uscc: uscc.into(),
            public_key: key.public().to_vec(),
            person: person.into(),
            title: title.into(),
            admin,
        }),
    )
}

/// The registrations [`TestLog::standard`] replays after genesis: the
/// organisations with their roles, then their admin keys and the
/// manufacturer's clerk.
pub fn standard_registrations() -> Vec<pb::Event> {
    use pb::Role;
    let mut events = vec![
        org_registered(
            CERT_BODY,
            "杭州万泰认证有限公司",
            &[Role::CertificationBody],
            vec![cert_body_accreditation("CNCA-R-2017-301")],
            "330100",
        ),
        org_registered(LAB, "深圳市计量质量检测研究院", &[Role::TestingLab], vec![lab_accreditation()], "440300"),
        org_registered(MANUFACTURER, "深圳市乳源食品有限公司", &[Role::Manufacturer], Vec::new(), "440300"),
        org_registered(DISTRIBUTOR, "苏州市恒通商贸有限公司", &[Role::Distributor], Vec::new(), "320500"),
        org_registered(RETAILER, "盐城市亭湖区惠民便利店", &[Role::Retailer], Vec::new(), "320900"),
        org_registered(MANUFACTURER_2, "北京禾丰乳业有限公司", &[Role::Manufacturer], Vec::new(), "110108"),
        org_registered(
            CERT_BODY_2,
            "浙江公信认证有限公司",
            &[Role::CertificationBody],
            vec![cert_body_accreditation("CNCA-R-2019-412")],
            "330100",
        ),
    ];
    for (who, uscc) in Who::ADMINS {
        events.push(key_registered(uscc, who, "张伟", "首席质量官 chief quality officer", true));
    }
    events.push(key_registered(MANUFACTURER, Who::Staff, "李娜", "质检员 quality clerk", false));
    events
}

/// A valid example event of `kind`, dated [`EVENT_DATE`]. Bodies that name
/// earlier records name [`placeholder_ref`]; see [`with_refs`].
pub fn example(kind: EventKind) -> pb::Event {
    use pb::Role;
    let cert = || Some(cert_key(CERT_BODY, CERT_NUMBER));
    match kind {
        EventKind::Genesis => pb::Event {
            event_time: Some(time_on(EVENT_DATE)),
            body: Some(Body::Genesis(pb::LogGenesis {
                origin: "qtrace.example/sh-amr".into(),
                operator_uscc: REGULATOR.into(),
                operator_name: "上海市市场监督管理局".into(),
                root_authority_keys: vec![Who::Regulator.public().to_vec()],
            })),
            ..Default::default()
        },
        EventKind::OrgRegistered => {
            org_registered(LAB, "深圳市计量质量检测研究院", &[Role::TestingLab], vec![lab_accreditation()], "440300")
        }
        EventKind::OrgUpdated => event(
            org_subject(MANUFACTURER),
            Body::OrgUpdated(pb::OrgUpdated {
                uscc: MANUFACTURER.into(),
                name: "深圳市乳源食品有限公司".into(),
                roles: vec![Role::Manufacturer.into()],
                accreditations: Vec::new(),
                address: "深圳市光明区光明街道华夏路 18 号".into(),
                region: "440311".into(),
            }),
        ),
        EventKind::KeyRegistered => {
            key_registered(MANUFACTURER, Who::Newcomer, "王芳", "生产经理 production manager", false)
        }
        EventKind::KeyRevoked => event(
            org_subject(MANUFACTURER),
            Body::KeyRevoked(pb::KeyRevoked {
                public_key: Who::Staff.public().to_vec(),
                reason: "员工离职 the clerk left the company".into(),
            }),
        ),
        EventKind::Production => pb::Event {
            biz_step: "commissioning".into(),
            disposition: "active".into(),
            location: Some(pb::Location {
                read_point_gln: GLN_FACTORY.into(),
                business_location_gln: GLN_FACTORY.into(),
                region: "440311".into(),
            }),
            ..event(
                product_subject(GTIN_FORMULA, LOT, ""),
                Body::Production(pb::Production {
                    output: Some(lot_quantity(GTIN_FORMULA, LOT, 1200.0, "EA")),
                    production_date: "2025-06-15".into(),
                    expiry_date: "2026-12-14".into(),
                    factory_gln: GLN_FACTORY.into(),
                }),
            )
        },
        EventKind::Transformation => pb::Event {
            parents: vec![placeholder_ref()],
            biz_step: "commissioning".into(),
            ..event(
                product_subject(GTIN_FORMULA, LOT, ""),
                Body::Transformation(pb::Transformation {
                    inputs: vec![lot_quantity(GTIN_POWDER, "RM-0611", 500.0, "KGM")],
                    outputs: vec![lot_quantity(GTIN_FORMULA, LOT, 1200.0, "EA")],
                    production_date: "2025-06-15".into(),
                    expiry_date: "2026-12-14".into(),
                    factory_gln: GLN_FACTORY.into(),
                }),
            )
        },
        EventKind::Shipment => pb::Event {
            parents: vec![placeholder_ref()],
            biz_step: "shipping".into(),
            disposition: "in_transit".into(),
            documents: vec![pb::Document {
                kind: "desadv".into(),
                id: "DESADV-20250615-001".into(),
                sha256: vec![0x3c; 32],
            }],
            attributes: vec![pb::Attribute { name: "温度 temperature".into(), value: "4 °C".into() }],
            ..event(
                product_subject(GTIN_FORMULA, LOT, ""),
                Body::Shipment(pb::Shipment {
                    items: vec![
                        lot_quantity(GTIN_FORMULA, LOT, 600.0, "EA"),
                        lot_quantity(GTIN_POWDER, "B7", 20.0, "KGM"),
                    ],
                    source: Some(pb::Party { uscc: MANUFACTURER.into(), location_gln: GLN_FACTORY.into() }),
                    destination: Some(pb::Party { uscc: DISTRIBUTOR.into(), location_gln: GLN_WAREHOUSE.into() }),
                    shipment_number: "DESADV-20250615-001".into(),
                }),
            )
        },
        EventKind::Receipt => pb::Event {
            parents: vec![placeholder_ref()],
            biz_step: "receiving".into(),
            disposition: "in_progress".into(),
            ..event(
                product_subject(GTIN_FORMULA, LOT, ""),
                Body::Receipt(pb::Receipt {
                    items: vec![lot_quantity(GTIN_FORMULA, LOT, 600.0, "EA")],
                    source: Some(pb::Party { uscc: MANUFACTURER.into(), location_gln: GLN_FACTORY.into() }),
                    destination: Some(pb::Party { uscc: DISTRIBUTOR.into(), location_gln: GLN_WAREHOUSE.into() }),
                    shipment_number: "DESADV-20250615-001".into(),
                }),
            )
        },
        EventKind::Sale => pb::Event {
            biz_step: "retail_selling".into(),
            disposition: "retail_sold".into(),
            ..event(
                product_subject(GTIN_FORMULA, LOT, "12345"),
                Body::Sale(pb::Sale {
                    items: vec![pb::LotQuantity {
                        product: Some(product(GTIN_FORMULA, LOT, "12345")),
                        quantity: Some(pb::Quantity { value: 1.0, unit: "EA".into() }),
                    }],
                    store_gln: GLN_WAREHOUSE.into(),
                }),
            )
        },
        EventKind::Inspection => event(
            product_subject(GTIN_FORMULA, LOT, ""),
            Body::Inspection(pb::Inspection {
                report_number: "SZJ2025-061501".into(),
                product: Some(product(GTIN_FORMULA, LOT, "")),
                standards: vec!["GB 10766-2021".into()],
                items: test_items(),
                conclusion: pb::Conclusion::NonConformant.into(),
                destructive: true,
                client_uscc: MANUFACTURER.into(),
            }),
        ),
        EventKind::SpotCheck => event(
            product_subject(GTIN_FORMULA, LOT, ""),
            Body::SpotCheck(pb::SpotCheck {
                plan_number: "国市监抽〔2025〕12号".into(),
                product: Some(product(GTIN_FORMULA, LOT, "")),
                inspected_uscc: MANUFACTURER.into(),
                lab_uscc: LAB.into(),
                standards: vec!["GB 10766-2021".into()],
                items: test_items(),
                result: pb::Conclusion::NonConformant.into(),
                published_on: "2025-07-01".into(),
            }),
        ),
        EventKind::CertificateIssued => pb::Event {
            parents: vec![placeholder_ref()],
            ..event(
                cert_subject(),
                Body::CertificateIssued(pb::CertificateIssued {
                    certificate: cert(),
                    holder_uscc: MANUFACTURER.into(),
                    manufacturer_uscc: MANUFACTURER.into(),
                    factory_name: "深圳市乳源食品有限公司光明工厂".into(),
                    factory_gln: GLN_FACTORY.into(),
                    products: vec![pb::CertifiedProduct {
                        gtin: GTIN_FORMULA.into(),
                        name: "较大婴儿配方乳粉 follow-on formula".into(),
                        model: "900 g 罐装".into(),
                    }],
                    standards: vec!["GB 10766-2021".into()],
                    certification_mode: "型式试验+初始工厂检查+获证后监督".into(),
                    issued_on: "2025-06-15".into(),
                    valid_until: "2028-06-14".into(),
                    scope: "较大婴儿配方乳粉（900 g 罐装）的生产".into(),
                }),
            )
        },
        EventKind::CertificateSuspended => event(
            cert_subject(),
            Body::CertificateSuspended(pb::CertificateSuspended {
                certificate: cert(),
                reason: "获证后监督抽样不合格 surveillance sample failed".into(),
                until: "2025-09-30".into(),
            }),
        ),
        EventKind::CertificateRestored => event(
            cert_subject(),
            Body::CertificateRestored(pb::CertificateRestored {
                certificate: cert(),
                reason: "整改验证通过 corrective actions verified".into(),
            }),
        ),
        EventKind::CertificateScopeReduced => event(
            cert_subject(),
            Body::CertificateScopeReduced(pb::CertificateScopeReduced {
                certificate: cert(),
                removed_gtins: vec![GTIN_POWDER.into(), "0693124".into()],
                reason: "停产 product discontinued".into(),
            }),
        ),
        EventKind::CertificateWithdrawn => event(
            cert_subject(),
            Body::CertificateWithdrawn(pb::CertificateWithdrawn {
                certificate: cert(),
                reason: "暂停期满未整改 not remedied within the suspension".into(),
            }),
        ),
        EventKind::CertificateCancelled => event(
            cert_subject(),
            Body::CertificateCancelled(pb::CertificateCancelled {
                certificate: cert(),
                reason: "持证人申请注销 cancelled at the holder's request".into(),
            }),
        ),
        EventKind::CertificateRenewed => event(
            cert_subject(),
            Body::CertificateRenewed(pb::CertificateRenewed {
                certificate: cert(),
                valid_until: "2031-06-14".into(),
                reason: "再认证 recertified".into(),
            }),
        ),
        EventKind::Recall => event(
            product_subject(GTIN_FORMULA, "", ""),
            Body::Recall(pb::Recall {
                recall_number: "ZDZH-2025-0042".into(),
                gtin: GTIN_FORMULA.into(),
                lots: vec![LOT.into(), "L20250616B".into()],
                serial_from: String::new(),
                serial_to: String::new(),
                dates: None,
                regions: vec!["440300".into(), "310000".into()],
                risk_class: 2,
                reason: "检出阪崎肠杆菌 Cronobacter sakazakii detected".into(),
                initiator: pb::RecallInitiator::Voluntary.into(),
                manufacturer_uscc: MANUFACTURER.into(),
                remedy: "立即停止食用，凭购买凭证退货 stop feeding and return for a refund".into(),
            }),
        ),
        EventKind::RecallProgress => pb::Event {
            parents: vec![placeholder_ref()],
            ..event(
                product_subject(GTIN_FORMULA, "", ""),
                Body::RecallProgress(pb::RecallProgress {
                    recall: Some(placeholder_ref()),
                    parties_notified: 12,
                    quantity_recovered: Some(pb::Quantity { value: 480.0, unit: "EA".into() }),
                    quantity_sold: Some(pb::Quantity { value: 1200.0, unit: "EA".into() }),
                    note: "已通知全部经销商 every distributor notified".into(),
                }),
            )
        },
        EventKind::RecallClosed => pb::Event {
            parents: vec![placeholder_ref()],
            ..event(
                product_subject(GTIN_FORMULA, "", ""),
                Body::RecallClosed(pb::RecallClosed {
                    recall: Some(placeholder_ref()),
                    closeout: "召回产品已全部销毁 all recovered product destroyed".into(),
                    quantity_recovered: Some(pb::Quantity { value: 1150.0, unit: "EA".into() }),
                }),
            )
        },
        EventKind::Blacklisted => event(
            org_subject(MANUFACTURER_2),
            Body::Blacklisted(pb::Blacklisted {
                uscc: MANUFACTURER_2.into(),
                reason: "生产销售不合格婴幼儿配方乳粉 sold non-conforming infant formula".into(),
                legal_basis: "《市场监督管理严重违法失信名单管理办法》第九条".into(),
                authority_uscc: REGULATOR.into(),
                listed_on: "2025-06-15".into(),
                until: String::new(),
            }),
        ),
        EventKind::Delisted => event(
            org_subject(MANUFACTURER_2),
            Body::Delisted(pb::Delisted {
                uscc: MANUFACTURER_2.into(),
                reason: "信用修复 credit repaired".into(),
                delisted_on: "2025-06-15".into(),
            }),
        ),
        EventKind::Correction => event(
            product_subject(GTIN_FORMULA, LOT, ""),
            Body::Correction(pb::Correction {
                target: Some(placeholder_ref()),
                kind: pb::CorrectionKind::IncorrectData.into(),
                reason: "数量录入错误 quantity keyed wrong".into(),
                corrective: vec![placeholder_ref()],
            }),
        ),
    }
}

/// An in-memory log: entries signed by the test keys and chained from the
/// log id, and the registry the node would derive from them.
#[derive(Debug)]
pub struct TestLog {
    pub log_id: LogId,
    pub entries: Vec<Entry>,
    pub registry: Registry,
}

impl TestLog {
    /// A log with no entries.
    pub fn empty() -> Self {
        TestLog { log_id: log_id(), entries: Vec::new(), registry: Registry::new(Who::Log.public()) }
    }

    /// Genesis (root authority [`Who::Regulator`]), then
    /// [`standard_registrations`], each authorised and applied.
    pub fn standard() -> Self {
        let mut log = Self::empty();
        log.append(Who::Log, &example(EventKind::Genesis)).unwrap_or_else(|e| panic!("genesis: {e}"));
        for event in standard_registrations() {
            log.append(Who::Regulator, &event).unwrap_or_else(|e| panic!("registration: {e}"));
        }
        log
    }

    pub fn next_seq(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The entry `who` would append next for `event`, signed and chained.
    pub fn sign(&self, who: Who, event: &pb::Event) -> Entry {
        let bytes = encode(event);
        let millis = event.event_time.as_ref().map_or(0, |t| t.unix_millis);
        Entry {
            seq: self.next_seq(),
            prev_hash: self.entries.last().map_or(EntryHash(self.log_id.0), Entry::hash),
            logged_at_micros: millis * 1_000 + 250_000,
            signer: who.public(),
            signature: who.secret().sign_event(&bytes),
            event: bytes,
        }
    }

    /// Whether `who` may append `event` now.
    pub fn authorize(&self, who: Who, event: &pb::Event) -> Result<Authority, AuthError> {
        self.registry.authorize(self.next_seq(), &who.public(), &valid(event), self)
    }

    /// Authorises `event`, then appends it and applies it to the registry,
    /// as the node does; returns the reference to the new record.
    pub fn append(&mut self, who: Who, event: &pb::Event) -> Result<pb::RecordRef, AuthError> {
        self.authorize(who, event)?;
        let entry = self.sign(who, event);
        self.registry.apply(entry.seq, &entry.signer, &valid(event));
        self.entries.push(entry);
        Ok(self.record_ref(self.next_seq() - 1))
    }

    /// [`TestLog::append`] for an event the test expects to be accepted.
    pub fn accept(&mut self, who: Who, event: &pb::Event) -> pb::RecordRef {
        self.append(who, event).unwrap_or_else(|e| panic!("{who:?} was refused: {e}"))
    }

    /// The reference to entry `seq`.
    pub fn record_ref(&self, seq: u64) -> pb::RecordRef {
        let entry = usize::try_from(seq).ok().and_then(|i| self.entries.get(i));
        let entry = entry.unwrap_or_else(|| panic!("entry {seq} is not in the test log"));
        record_ref(self.log_id, seq, entry.hash())
    }
}

impl Records for TestLog {
    fn record(
        &self,
        log: &LogId,
        seq: u64,
    ) -> Result<Option<crate::registry::RecordInfo>, crate::registry::RecordsError> {
        if *log != self.log_id {
            return Ok(None);
        }
        let Some(entry) = usize::try_from(seq).ok().and_then(|i| self.entries.get(i)) else { return Ok(None) };
        Ok(Some(crate::registry::RecordInfo {
            hash: entry.hash(),
            signer: entry.signer,
            kind: crate::event::decode_event(&entry.event).ok().map(|e| e.kind),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Gln, Gtin, Uscc};

    #[test]
    fn cast_codes_are_valid() {
        let usccs =
            [REGULATOR, CERT_BODY, LAB, MANUFACTURER, RETAILER, DISTRIBUTOR, MANUFACTURER_2, CERT_BODY_2, UNREGISTERED];
        for code in usccs {
            assert_eq!(Uscc::parse(code).map(|u| u.to_string()), Ok(code.to_string()), "{code}");
        }
        for code in [GTIN_FORMULA, GTIN_POWDER, GTIN_OUT_OF_SCOPE] {
            assert_eq!(Gtin::parse(code).map(|g| g.to_string()), Ok(code.to_string()), "{code}");
        }
        for code in [GLN_FACTORY, GLN_WAREHOUSE] {
            assert!(Gln::parse(code).is_ok(), "{code}");
        }
    }

    #[test]
    fn register_org_is_accepted_with_its_scope() {
        // (uscc, roles, scope)
        let cases: [(&str, &[pb::Role], &[&str]); 3] = [
            (DISTRIBUTOR, &[pb::Role::Distributor], &[]),
            (LAB, &[pb::Role::TestingLab], &["0952", "0693"]),
            (MANUFACTURER, &[pb::Role::Manufacturer, pb::Role::Retailer], &[]),
        ];
        for (uscc, roles, scope) in cases {
            let mut log = TestLog::empty();
            log.accept(Who::Log, &example(EventKind::Genesis));
            log.accept(Who::Regulator, &on(register_org(uscc, "名称 name", roles, scope), EVENT_DATE));
            let parsed = Uscc::parse(uscc).unwrap_or_else(|e| panic!("{uscc}: {e}"));
            let org = log.registry.organisation(&parsed).unwrap_or_else(|| panic!("{uscc} not registered"));
            assert_eq!(org.roles, roles, "{uscc}");
            let prefixes: Vec<&str> =
                org.accreditations.iter().flat_map(|a| a.gtin_prefixes.iter().map(String::as_str)).collect();
            assert_eq!(prefixes, scope, "{uscc}");
        }
    }

    #[test]
    fn standard_log_is_chained_and_signed() {
        let log = TestLog::standard();
        assert_eq!(log.entries.len(), 1 + standard_registrations().len());
        let mut prev = None;
        for entry in &log.entries {
            assert_eq!(entry.check_link(&log.log_id, prev.as_ref()), Ok(()), "entry {}", entry.seq);
            assert!(entry.verify_signature().is_ok(), "entry {}", entry.seq);
            prev = Some(entry.hash());
        }
    }
}
