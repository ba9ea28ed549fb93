//! Arguments of each command. Identifiers parse into their types here (a
//! `Uscc` that exists is valid), so bad input is refused by clap with exit
//! code 2 before anything is signed or sent.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Subcommand, ValueEnum};
use qtrace_client::ids::{Date, Gln, Gtin, Lot, ProductCode, Uscc};
use qtrace_client::input::{self, RecordKey};
use qtrace_client::pb;
use qtrace_client::records::Header;
use qtrace_client::registry;
use qtrace_client::signing::PublicKey;
use qtrace_client::time;

/// Every role, in the order of the protobuf enum.
const ROLES: [pb::Role; 6] = [
    pb::Role::Regulator,
    pb::Role::CertificationBody,
    pb::Role::TestingLab,
    pb::Role::Manufacturer,
    pb::Role::Distributor,
    pb::Role::Retailer,
];

/// Parses a role by its CLI name (`registry::role_name`), listing the names in `--help`.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = pb::Role> {
    PossibleValuesParser::new(ROLES.map(registry::role_name))
        .try_map(|name| registry::parse_role(&name).ok_or_else(|| format!("{name:?} is not a role")))
}

/// When a record happened, and its nonce.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Record time 事件时间")]
pub struct Stamp {
    /// When it happened, RFC 3339 with zone offset, e.g. 2026-11-21T10:00:00+08:00 [default: now].
    #[arg(long, value_name = "TIME", value_parser = time::parse_rfc3339)]
    pub at: Option<pb::EventTime>,
    /// Zone offset recorded with the default time (now); China Standard Time is +08:00. Ignored
    /// with --at, which carries its own offset.
    #[arg(
        long,
        value_name = "±HH:MM",
        default_value = time::DEFAULT_OFFSET,
        value_parser = time::parse_offset,
        allow_hyphen_values = true
    )]
    pub tz_offset: i32,
    /// A number that tells apart two otherwise identical records by one signer. Submitting the
    /// same signed record twice is harmless (the node answers with the original); with --at
    /// and the same nonce a retried command signs the same record again.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub nonce: u64,
}

impl Stamp {
    pub fn header(&self) -> Header {
        let time = self.at.unwrap_or(pb::EventTime { unix_millis: time::now_millis(), offset_minutes: self.tz_offset });
        Header { time, nonce: self.nonce }
    }
}

/// An amount of goods.
#[derive(Debug, Clone, Args)]
pub struct Amount {
    /// Amount of goods (give with --unit).
    #[arg(long, value_name = "N", value_parser = input::parse_amount, requires = "unit")]
    pub quantity: Option<f64>,
    /// Unit of measure: a UN/CEFACT code (KGM, LTR, EA) or a plain unit such as "can".
    #[arg(long, value_name = "U", requires = "quantity")]
    pub unit: Option<String>,
}

impl Amount {
    pub fn to_pb(&self) -> Option<pb::Quantity> {
        match (self.quantity, &self.unit) {
            (Some(value), Some(unit)) => Some(pb::Quantity { value, unit: unit.clone() }),
            _ => None,
        }
    }
}

/// How to trust a log's checkpoints.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Trust 信任")]
pub struct Trust {
    /// The log's C2SP verifier key (<origin>+<hash>+<base64>), obtained out of band; the
    /// checkpoint's signature must verify with it.
    #[arg(long, env = "QTRACE_VKEY", value_name = "VKEY")]
    pub vkey: Option<String>,
    /// A node's data directory on this machine: its log.vkey file is the verifier key.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ConclusionArg {
    /// 合格
    Conformant,
    /// 不合格
    NonConformant,
}

impl ConclusionArg {
    pub fn to_pb(self) -> pb::Conclusion {
        match self {
            ConclusionArg::Conformant => pb::Conclusion::Conformant,
            ConclusionArg::NonConformant => pb::Conclusion::NonConformant,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum CorrectionKindArg {
    /// The event never happened (未发生).
    DidNotOccur,
    /// The event happened but the record's data is wrong (数据有误); name the correct records with --corrective.
    IncorrectData,
}

impl CorrectionKindArg {
    pub fn to_pb(self) -> pb::CorrectionKind {
        match self {
            CorrectionKindArg::DidNotOccur => pb::CorrectionKind::DidNotOccur,
            CorrectionKindArg::IncorrectData => pb::CorrectionKind::IncorrectData,
        }
    }
}

// ---------------------------------------------------------------------------
// Organisations and keys
// ---------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Register an organisation (机构登记).
    Register(OrgArgs),
    /// Replace an organisation's registration as a whole (机构变更): give every field again.
    Update(OrgArgs),
}

#[derive(Debug, Clone, Args)]
pub struct OrgArgs {
    /// Unified social credit code (统一社会信用代码) of the organisation.
    #[arg(long, value_name = "CODE")]
    pub uscc: Uscc,
    /// Registered name.
    #[arg(long)]
    pub name: String,
    /// A role (repeat for several).
    #[arg(long = "role", value_name = "ROLE", required = true, value_parser = role_parser())]
    pub roles: Vec<pb::Role>,
    /// Registered address.
    #[arg(long, value_name = "TEXT")]
    pub address: Option<String>,
    /// Administrative division code (行政区划代码, 6 digits), e.g. 310000.
    #[arg(long, value_name = "CODE", value_parser = input::parse_region)]
    pub region: Option<String>,
    #[command(flatten)]
    pub accreditation: AccreditationArgs,
    #[command(flatten)]
    pub stamp: Stamp,
}

/// The accreditation of a lab (资质认定) or certification body (认证机构批准): all of
/// --accreditation-no, --scope and --valid-until, or none.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Accreditation 资质 (testing labs and certification bodies)")]
pub struct AccreditationArgs {
    /// Accreditation certificate number.
    #[arg(long, value_name = "N", requires_all = ["scopes", "valid_until"])]
    pub accreditation_no: Option<String>,
    /// GTIN prefix the accreditation covers (digits of the 14-digit form, or a whole GTIN); repeat for several.
    #[arg(
        long = "scope",
        value_name = "GTIN_PREFIX",
        value_parser = input::parse_gtin_prefix,
        requires = "accreditation_no"
    )]
    pub scopes: Vec<String>,
    /// Standard the accreditation covers, e.g. "GB 19644"; repeat for several; none means any.
    #[arg(long = "standard", value_name = "STD", requires = "accreditation_no")]
    pub standards: Vec<String>,
    /// First day of validity, YYYY-MM-DD [default: the record's date].
    #[arg(long, value_name = "DATE", requires = "accreditation_no")]
    pub valid_from: Option<Date>,
    /// Last day of validity, YYYY-MM-DD.
    #[arg(long, value_name = "DATE", requires = "accreditation_no")]
    pub valid_until: Option<Date>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Bind a public key to an organisation and a named, accountable person (密钥登记).
    Register {
        /// USCC of the organisation the key acts for.
        #[arg(long, value_name = "CODE")]
        uscc: Uscc,
        /// The Ed25519 public key, 64 hex digits (as `qtrace keygen` prints it).
        #[arg(long, value_name = "HEX", value_parser = PublicKey::from_hex)]
        pubkey: PublicKey,
        /// Name of the accountable person, e.g. 张伟.
        #[arg(long, value_name = "NAME")]
        person: String,
        /// Their title, e.g. 首席质量官.
        #[arg(long, value_name = "TITLE")]
        title: String,
        /// An admin key may register and revoke other keys of its organisation.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        stamp: Stamp,
    },
    /// Revoke a key (密钥撤销): it signs nothing new from this record on.
    Revoke {
        /// The public key to revoke, 64 hex digits.
        #[arg(long, value_name = "HEX", value_parser = PublicKey::from_hex)]
        pubkey: PublicKey,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// USCC of the organisation the key acts for (the record's subject) [default: --org].
        #[arg(long, value_name = "CODE")]
        uscc: Option<Uscc>,
        #[command(flatten)]
        stamp: Stamp,
    },
}

// ---------------------------------------------------------------------------
// Production and movements
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// GTIN of the product made (8, 12, 13 or 14 digits).
    #[arg(long, value_name = "G")]
    pub gtin: Gtin,
    /// Lot number (批号) of the new lot.
    #[arg(long, value_name = "L")]
    pub lot: Lot,
    #[command(flatten)]
    pub amount: Amount,
    /// A record whose lots went into this one (a production, transformation, shipment or
    /// receipt); repeat for several. Makes the record a transformation (加工) naming them as parents.
    #[arg(long = "input", value_name = "RECORD")]
    pub inputs: Vec<RecordKey>,
    /// Production date (生产日期), YYYY-MM-DD.
    #[arg(long, value_name = "D")]
    pub production_date: Option<Date>,
    /// Expiry date (保质期至), YYYY-MM-DD.
    #[arg(long, value_name = "D")]
    pub expiry_date: Option<Date>,
    /// GLN of the factory.
    #[arg(long, value_name = "GLN")]
    pub factory: Option<Gln>,
    #[command(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Clone, Args)]
pub struct MoveArgs {
    /// GTIN of the goods.
    #[arg(long, value_name = "G")]
    pub gtin: Gtin,
    /// Lot number (批号).
    #[arg(long, value_name = "L")]
    pub lot: Lot,
    #[command(flatten)]
    pub amount: Amount,
    /// USCC of the party the goods leave (发货方).
    #[arg(long, value_name = "USCC")]
    pub from: Uscc,
    /// GLN of the location the goods leave.
    #[arg(long, value_name = "GLN")]
    pub from_gln: Option<Gln>,
    /// USCC of the party the goods go to (收货方).
    #[arg(long, value_name = "USCC")]
    pub to: Uscc,
    /// GLN of the location the goods arrive at.
    #[arg(long, value_name = "GLN")]
    pub to_gln: Option<Gln>,
    /// Shipping document number (发货单号), e.g. the despatch advice.
    #[arg(long, value_name = "N")]
    pub shipment_no: Option<String>,
    /// An upstream record (a receipt names its shipment; a shipment its production); repeat for several.
    #[arg(long = "parent", value_name = "RECORD")]
    pub parents: Vec<RecordKey>,
    #[command(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Clone, Args)]
pub struct SellArgs {
    /// GTIN of the goods.
    #[arg(long, value_name = "G")]
    pub gtin: Gtin,
    /// Lot number (批号).
    #[arg(long, value_name = "L")]
    pub lot: Lot,
    #[command(flatten)]
    pub amount: Amount,
    /// GLN of the shop.
    #[arg(long, value_name = "GLN")]
    pub store: Option<Gln>,
    /// An upstream record, e.g. the shop's receipt; repeat for several.
    #[arg(long = "parent", value_name = "RECORD")]
    pub parents: Vec<RecordKey>,
    #[command(flatten)]
    pub stamp: Stamp,
}

// ---------------------------------------------------------------------------
// Inspections and spot checks
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The product sampled: a GS1 Digital Link URI, an element string such as
    /// (01)09520123456788(10)ABC1, or a bare GTIN.
    #[arg(long, value_name = "CODE")]
    pub product: ProductCode,
    /// Report number (报告编号).
    #[arg(long, value_name = "N")]
    pub report_no: String,
    /// Standard applied, e.g. "GB 19644-2010"; repeat for several.
    #[arg(long = "standard", value_name = "STD", required = true)]
    pub standards: Vec<String>,
    /// Overall conclusion (结论): conformant 合格 or non_conformant 不合格.
    #[arg(long, value_name = "CONCLUSION")]
    pub conclusion: ConclusionArg,
    /// A test item NAME=VALUE[UNIT], e.g. melamine=0.05mg/kg, fat=3.1%, appearance=normal; repeat.
    #[arg(long = "item", value_name = "NAME=VALUE[UNIT]", value_parser = input::parse_test_item)]
    pub items: Vec<pb::TestItem>,
    /// The record of the lot sampled (it becomes a parent).
    #[arg(long, value_name = "RECORD")]
    pub sample: Option<RecordKey>,
    /// Sampling was destructive (破坏性抽样), not a non-destructive inspection.
    #[arg(long)]
    pub destructive: bool,
    /// USCC of the client who commissioned the test (委托方).
    #[arg(long, value_name = "USCC")]
    pub client: Option<Uscc>,
    #[command(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Clone, Args)]
pub struct SpotCheckArgs {
    /// Number of the spot-check plan or notice (抽查计划编号).
    #[arg(long, value_name = "N")]
    pub plan: String,
    /// The product checked: Digital Link URI, element string or bare GTIN.
    #[arg(long, value_name = "CODE")]
    pub product: ProductCode,
    /// USCC of the producer whose product was checked (被抽查企业).
    #[arg(long, value_name = "USCC")]
    pub inspected: Uscc,
    /// USCC of the lab that tested the sample.
    #[arg(long, value_name = "USCC")]
    pub lab: Option<Uscc>,
    /// Result (结果): conformant 合格 or non_conformant 不合格.
    #[arg(long, value_name = "RESULT")]
    pub result: ConclusionArg,
    /// A test item NAME=VALUE[UNIT]; repeat.
    #[arg(long = "item", value_name = "NAME=VALUE[UNIT]", value_parser = input::parse_test_item)]
    pub items: Vec<pb::TestItem>,
    /// Standard applied; repeat for several.
    #[arg(long = "standard", value_name = "STD")]
    pub standards: Vec<String>,
    /// Date the result was published, YYYY-MM-DD [default: the record's date].
    #[arg(long, value_name = "DATE")]
    pub published_on: Option<Date>,
    #[command(flatten)]
    pub stamp: Stamp,
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a certificate (发证); the issuer is --org.
    Issue(CertIssueArgs),
    /// Suspend a certificate (暂停).
    Suspend(CertSuspendArgs),
    /// Restore a suspended certificate (恢复).
    Restore(CertReasonArgs),
    /// Withdraw a certificate for cause (撤销); terminal.
    Withdraw(CertReasonArgs),
    /// Cancel a certificate, usually at the holder's request (注销); terminal.
    Cancel(CertReasonArgs),
    /// Reduce a certificate's scope (缩小范围): the listed products are no longer covered.
    Reduce(CertReduceArgs),
    /// Extend a certificate's validity (延续).
    Renew(CertRenewArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CertIssueArgs {
    /// Certificate number (证书编号), as printed.
    #[arg(long, value_name = "N")]
    pub number: String,
    /// USCC of the holder (持证人/委托人).
    #[arg(long, value_name = "USCC")]
    pub holder: Uscc,
    /// A product covered: Digital Link URI, element string or GTIN; repeat for several.
    #[arg(long = "product", value_name = "CODE", required = true)]
    pub products: Vec<ProductCode>,
    /// Standard certified against; repeat for several.
    #[arg(long = "standard", value_name = "STD", required = true)]
    pub standards: Vec<String>,
    /// Last day of validity, YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub valid_until: Date,
    /// Issue date, YYYY-MM-DD [default: the record's date].
    #[arg(long, value_name = "DATE")]
    pub issued_on: Option<Date>,
    /// An inspection report record the certificate rests on; repeat for several.
    #[arg(long = "based-on", value_name = "RECORD")]
    pub based_on: Vec<RecordKey>,
    /// Certification mode (认证模式), e.g. 型式试验+初始工厂检查+获证后监督.
    #[arg(long, value_name = "TEXT")]
    pub mode: Option<String>,
    /// Scope in words (认证范围).
    #[arg(long, value_name = "TEXT")]
    pub scope: Option<String>,
    /// USCC of the manufacturer (生产者), if not the holder.
    #[arg(long, value_name = "USCC")]
    pub manufacturer: Option<Uscc>,
    /// Name of the factory (生产企业).
    #[arg(long, value_name = "TEXT")]
    pub factory_name: Option<String>,
    /// GLN of the factory.
    #[arg(long, value_name = "GLN")]
    pub factory_gln: Option<Gln>,
    #[command(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Clone, Args)]
pub struct CertReasonArgs {
    /// Certificate number (issued by --org).
    #[arg(long, value_name = "N")]
    pub number: String,
    /// Why.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    #[command(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Clone, Args)]
pub struct CertSuspendArgs {
    #[command(flatten)]
    pub change: CertReasonArgs,
    /// Date by which the holder must remedy, YYYY-MM-DD; none means open-ended.
    #[arg(long, value_name = "DATE")]
    pub until: Option<Date>,
}

#[derive(Debug, Clone, Args)]
pub struct CertReduceArgs {
    #[command(flatten)]
    pub change: CertReasonArgs,
    /// GTIN (or GTIN prefix) no longer covered; repeat for several.
    #[arg(long = "remove", value_name = "GTIN", required = true, value_parser = input::parse_gtin_prefix)]
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CertRenewArgs {
    /// Certificate number (issued by --org).
    #[arg(long, value_name = "N")]
    pub number: String,
    /// New last day of validity, YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub valid_until: Date,
    /// Why (optional).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub stamp: Stamp,
}

// ---------------------------------------------------------------------------
// Recalls, blacklist, corrections
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Args)]
pub struct RecallArgs {
    /// GTIN of the product recalled.
    #[arg(long, value_name = "G")]
    pub gtin: Gtin,
    /// A lot recalled; repeat for several; none means every lot of the GTIN.
    #[arg(long = "lot", value_name = "L")]
    pub lots: Vec<Lot>,
    /// Risk class (风险等级): 1 (most serious), 2 or 3.
    #[arg(long, value_name = "1|2|3", value_parser = clap::value_parser!(u32).range(1..=3))]
    pub risk_class: u32,
    /// Why (召回原因).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Ordered by a regulator (责令召回); without it the recall is voluntary (主动召回) and
    /// must be signed by the manufacturer.
    #[arg(long)]
    pub ordered: bool,
    /// Administrative division code where it applies; repeat; none means nationwide.
    #[arg(long = "region", value_name = "CODE", value_parser = input::parse_region)]
    pub regions: Vec<String>,
    /// USCC of the manufacturer responsible [default for a voluntary recall: --org].
    #[arg(long, value_name = "USCC")]
    pub manufacturer: Option<Uscc>,
    /// What consumers should do (补救措施).
    #[arg(long, value_name = "TEXT")]
    pub remedy: Option<String>,
    /// The recall's number [default: RECALL-<GTIN>-<YYYYMMDD of the record's date>].
    #[arg(long, value_name = "N")]
    pub number: Option<String>,
    #[command(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Clone, Args)]
pub struct BlacklistArgs {
    /// USCC of the organisation listed.
    #[arg(long, value_name = "CODE")]
    pub uscc: Uscc,
    /// Why (列入原因).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Legal basis (法律依据), e.g. the article applied.
    #[arg(long, value_name = "TEXT")]
    pub basis: String,
    /// Last day on the list, YYYY-MM-DD; none means until delisted.
    #[arg(long, value_name = "DATE")]
    pub until: Option<Date>,
    /// Date listed, YYYY-MM-DD [default: the record's date].
    #[arg(long, value_name = "DATE")]
    pub listed_on: Option<Date>,
    #[command(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Clone, Args)]
pub struct DelistArgs {
    /// USCC of the organisation removed from the list.
    #[arg(long, value_name = "CODE")]
    pub uscc: Uscc,
    /// Why (e.g. credit repaired, 信用修复).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Date delisted, YYYY-MM-DD [default: the record's date].
    #[arg(long, value_name = "DATE")]
    pub delisted_on: Option<Date>,
    #[command(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Clone, Args)]
pub struct CorrectArgs {
    /// The record being corrected (it must have been signed by your organisation).
    #[arg(long, value_name = "RECORD")]
    pub record: RecordKey,
    /// did_not_occur (未发生) or incorrect_data (数据有误).
    #[arg(long, value_name = "KIND")]
    pub kind: CorrectionKindArg,
    /// Why.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// A record that states the correct data; repeat for several.
    #[arg(long = "corrective", value_name = "RECORD")]
    pub corrective: Vec<RecordKey>,
    #[command(flatten)]
    pub stamp: Stamp,
}

// ---------------------------------------------------------------------------
// Queries and import
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// The checkpoint signed at this tree size [default: the latest].
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub trust: Trust,
}

#[derive(Debug, Clone, Args)]
pub struct ProofArgs {
    /// The record: sequence number or entry hash (64 hex digits).
    #[arg(value_name = "RECORD")]
    pub record: RecordKey,
    /// Prove against the checkpoint at this tree size [default: the latest].
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub trust: Trust,
}

#[derive(Debug, Clone, Args)]
pub struct ConsistencyArgs {
    /// The earlier tree size (at least 1).
    #[arg(value_name = "OLD_SIZE", value_parser = clap::value_parser!(u64).range(1..))]
    pub old_size: u64,
    /// The later tree size; 0 means the latest.
    #[arg(value_name = "NEW_SIZE")]
    pub new_size: u64,
    #[command(flatten)]
    pub trust: Trust,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The JSON Lines file: one object per line, {"event_b64", "signer", "signature"} (pre-signed,
    /// submitted as is; signer and signature in hex) or {"event_b64"} (signed here with --key).
    /// With --epcis: a GS1 EPCIS 2.0 JSON(-LD) file.
    #[arg(value_name = "FILE.jsonl")]
    pub file: PathBuf,
    /// Ignore FILE.jsonl.progress and start from the first line.
    #[arg(long, conflicts_with = "epcis")]
    pub from_start: bool,
    /// FILE is a GS1 EPCIS 2.0 JSON(-LD) document (EPCISDocument, EPCISQueryDocument or one
    /// event): each event is mapped to a qtrace record signed with --key, or refused with the
    /// reason. See the EPCIS section of the README for the mapping.
    #[arg(long)]
    pub epcis: bool,
    /// With --epcis: a TOML file of "<GLN, urn:epc:id:pgln:... or Digital Link /417/...>" =
    /// "<USCC>" lines naming the organisation behind each party GLN (EPCIS has no USCC).
    #[arg(long, value_name = "FILE", requires = "epcis")]
    pub party_map: Option<PathBuf>,
}
