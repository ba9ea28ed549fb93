//! The verdict commands: `verify` (a record or a certificate, the
//! regulator's view), `check` (a product code, the consumer's view),
//! `bundle` (the evidence behind a verdict, written to a file) and
//! `verify --offline` (a verdict from such a file, with no node).
//!
//! The node is never asked for its verdict. It is asked for the evidence
//! bundle (`GetBundle`), and the verdict is computed here with the ledger's
//! own verdict code and the log keys the user trusts, exactly as `verify
//! --offline` computes it from a file. A node can withhold or alter
//! evidence, which shows as a failed check, but it cannot hand us its own
//! answer.

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args};
use prost::Message as _;
use qtrace_client::bundle;
use qtrace_client::event::EventKind;
use qtrace_client::hash::LogId;
use qtrace_client::ids::{Date, Gtin, ProductCode};
use qtrace_client::note::Verifier;
use qtrace_client::pb::{self, verdict_subject::Kind};
use qtrace_client::subject::{self, CertificateId, RecordTarget, Target};
use qtrace_client::time;
use qtrace_client::trace::Limits;
use qtrace_client::verdict::{self, Overall, Report, Severity, Trust};
use qtrace_client::verify::{self, CheckError};
use serde_json::{Value, json};

use super::{Ctx, Failure};

/// What `"trust"` says when the log key came from the node itself.
pub const NODE_PROVIDED: &str = "node-provided (first contact)";

/// The log keys a verdict trusts.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Trust 信任")]
pub struct TrustArgs {
    /// A trusted log's C2SP verifier key (<origin>+<hash>+<base64>, the log's DATA/log.vkey),
    /// obtained out of band; repeat for the logs of other agencies. Without --trust or --data the
    /// node's own key is used, and the output says the key was not pinned.
    #[arg(long = "trust", env = "QTRACE_TRUST", value_delimiter = ',', value_name = "VKEY")]
    pub keys: Vec<String>,
    /// A node's data directory on this machine: its log.vkey is trusted.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Witness policy: how many of the trusted logs (as witnesses, 见证) must
    /// cosign the checkpoint that proves a record; fewer is a WARNING.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub witness_quorum: usize,
}

/// Every trusted log is also a trusted witness: in a qtrace federation a
/// node cosigns its peers' checkpoints with its log key.
fn witnesses_of(logs: &[Verifier]) -> Vec<qtrace_client::note::CosignatureVerifier> {
    logs.iter()
        .filter_map(|v| qtrace_client::note::CosignatureVerifier::new(v.name().as_str(), *v.public_key()).ok())
        .collect()
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["record", "cert", "offline"])))]
pub struct VerifyArgs {
    /// The record: its sequence number or entry hash in the node's log, or LOGID/SEQ for a log the
    /// node mirrors.
    #[arg(value_name = "RECORD")]
    pub record: Option<RecordTarget>,
    /// A certificate instead: the issuer's USCC and the certificate number, e.g.
    /// 913301007042187B2H/CQC-2026-001.
    #[arg(long, value_name = "USCC/NUMBER")]
    pub cert: Option<CertificateId>,
    /// For a certificate: also check that it covers this product (GTIN or product code); a
    /// certificate shown for a product it does not cover is INVALID (冒用).
    #[arg(long, value_name = "CODE", value_parser = subject::parse_product, conflicts_with = "record")]
    pub product: Option<ProductCode>,
    /// For a certificate: also report its status on this day (YYYY-MM-DD). With --offline: compute
    /// the whole verdict as of this day instead of the day the bundle was made.
    #[arg(long, value_name = "DATE", conflicts_with = "record")]
    pub at: Option<Date>,
    /// Include records their signers corrected away (the raw view).
    #[arg(long = "raw")]
    pub include_corrected: bool,
    /// Verify an evidence bundle written by `qtrace bundle`, with no node: the bundle says what it
    /// is about. Needs --trust or --data.
    #[arg(long, value_name = "FILE")]
    pub offline: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The code on the package: the GS1 Digital Link in its QR code, an element string such as
    /// (01)09520123456788(10)P-1, a GTIN, or GTIN/LOT.
    #[arg(value_name = "PRODUCT_CODE")]
    pub code: String,
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["target", "cert"])))]
pub struct BundleArgs {
    /// A product code (Digital Link, element string or GTIN/LOT; a whole product line as (01)GTIN)
    /// or a record (sequence number, entry hash, or LOGID/SEQ). A bare number is a record.
    #[arg(value_name = "CODE|RECORD")]
    pub target: Option<Target>,
    /// A certificate instead, USCC/NUMBER.
    #[arg(long, value_name = "USCC/NUMBER")]
    pub cert: Option<CertificateId>,
    /// For a certificate: the product it is shown for (see `verify --product`).
    #[arg(long, value_name = "CODE", value_parser = subject::parse_product, requires = "cert")]
    pub product: Option<ProductCode>,
    /// For a certificate: the day to report its status on, YYYY-MM-DD.
    #[arg(long, value_name = "DATE", requires = "cert")]
    pub at: Option<Date>,
    /// Where to write the bundle (qtrace.v1.Bundle protobuf bytes).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// The trusted keys and how they were obtained.
struct Trusted {
    trust: Trust,
    /// The `"trust"` field: "pinned (...)" or [`NODE_PROVIDED`].
    label: String,
    pinned: bool,
    /// Witness policy (k of the trusted logs).
    quorum: usize,
}

/// The keys the user pinned with --trust / QTRACE_TRUST and --data, if any.
/// Read before the node is contacted, so a bad key is exit 2.
fn pinned_trust(args: &TrustArgs) -> Result<Option<Trusted>, Failure> {
    let mut logs = Vec::new();
    let mut sources = Vec::new();
    for text in args.keys.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
        let key = Verifier::parse(text)
            .map_err(|e| Failure::Usage(format!("--trust {text:?}: not a C2SP verifier key: {e}")))?;
        logs.push(key);
    }
    if !logs.is_empty() {
        sources.push("--trust".to_owned());
    }
    if let Some(dir) = &args.data {
        let path = dir.join("log.vkey");
        let text = std::fs::read_to_string(&path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        let key = Verifier::parse(text.trim())
            .map_err(|e| Failure::Usage(format!("{}: not a C2SP verifier key: {e}", path.display())))?;
        logs.push(key);
        sources.push(path.display().to_string());
    }
    if logs.is_empty() {
        return Ok(None);
    }
    let witnesses = witnesses_of(&logs);
    Ok(Some(Trusted {
        trust: Trust { logs, witnesses },
        label: format!("pinned ({})", sources.join(", ")),
        pinned: true,
        quorum: args.witness_quorum,
    }))
}

/// The pinned keys, or else the keys the node states (first contact): its
/// own log's and those of the peers' logs it mirrors, so a peer's record
/// verified at a mirroring node is checked against its own log's key.
async fn trust_or_node(ctx: &mut Ctx, pinned: Option<Trusted>, quorum: usize) -> Result<Trusted, Failure> {
    if let Some(pinned) = pinned {
        return Ok(pinned);
    }
    let info = ctx.client().await?.get_log_info(pb::GetLogInfoRequest {}).await?.into_inner();
    let logs = node_provided_keys(&info)?;
    let witnesses = witnesses_of(&logs);
    Ok(Trusted { trust: Trust { logs, witnesses }, label: NODE_PROVIDED.to_owned(), pinned: false, quorum })
}

/// The verifier keys a node states in `GetLogInfo`: its own first (which
/// must hash to the log id it names), then its peers'. A key that does not
/// parse is evidence that does not verify (exit 1), never skipped.
fn node_provided_keys(info: &pb::LogInfo) -> Result<Vec<Verifier>, Failure> {
    let key = Verifier::parse(info.vkey.trim())
        .map_err(|e| Failure::Unverified(format!("the node's verifier key {:?} does not parse: {e}", info.vkey)))?;
    let log = LogId::of_key(key.public_key().as_bytes());
    if log.0.as_slice() != info.log_id.as_slice() {
        return Err(CheckError::Unexpected {
            what: "the node's log id",
            expected: format!("{log} (the hash of its verifier key)"),
            found: hex::encode(&info.log_id),
        }
        .into());
    }
    let mut logs = vec![key];
    for text in &info.peer_vkeys {
        let peer = Verifier::parse(text.trim()).map_err(|e| {
            Failure::Unverified(format!("the verifier key {text:?} the node gives for a peer does not parse: {e}"))
        })?;
        if !logs.contains(&peer) {
            logs.push(peer);
        }
    }
    Ok(logs)
}

/// Names the logs whose keys came from the node, for the NOT PINNED lines.
fn node_provided_names(trusted: &Trusted) -> String {
    let names: Vec<String> = trusted.trust.logs.iter().map(|v| v.name().as_str().to_owned()).collect();
    names.join(", ")
}

/// Looks the record up (checking what the node sends) and names it as a
/// verdict subject: log id, sequence number and entry hash.
pub(super) async fn record_subject(ctx: &mut Ctx, target: RecordTarget) -> Result<pb::VerdictSubject, Failure> {
    let reference = match target {
        RecordTarget::Own(key) => ctx.fetch(key).await?.reference(),
        RecordTarget::Other { log, seq } => {
            let request =
                pb::GetEntryRequest { key: Some(pb::get_entry_request::Key::Seq(seq)), log_id: log.0.to_vec() };
            let wire = ctx.client().await?.get_entry(request).await?.into_inner();
            let checked = verify::check_entry(&wire)?;
            if checked.log_id != log || checked.entry.seq != seq {
                return Err(CheckError::Unexpected {
                    what: "the entry the node sent",
                    expected: format!("{log}/{seq}"),
                    found: format!("{}/{}", checked.log_id, checked.entry.seq),
                }
                .into());
            }
            checked.reference()
        }
    };
    Ok(pb::VerdictSubject { kind: Some(Kind::Record(reference.to_pb())) })
}

/// Asks the node for the evidence bundle of `request`, refusing one about
/// another subject.
async fn fetch_bundle(ctx: &mut Ctx, request: &pb::VerifyRequest) -> Result<pb::Bundle, Failure> {
    let bundle = ctx.client().await?.get_bundle(request.clone()).await?.into_inner();
    if bundle.subject != request.subject {
        return Err(CheckError::Unexpected {
            what: "the subject of the node's evidence bundle",
            expected: subject::describe_subject(request.subject.as_ref()),
            found: subject::describe_subject(bundle.subject.as_ref()),
        }
        .into());
    }
    Ok(bundle)
}

/// What a verdict asks beyond its subject.
#[derive(Debug, Clone, Default)]
struct Question {
    /// Include records corrected away (`--raw`).
    include_corrected: bool,
    /// Witness policy when the node's own key is used.
    quorum: usize,
    /// For a certificate: its status on this day too.
    at: Option<Date>,
    /// For a certificate: the product it is shown for.
    product: Option<Gtin>,
    /// Compute as of this day instead of the bundle's.
    today: Option<Date>,
}

/// A verdict computed here, with how it was reached.
struct Computed {
    report: Report,
    trusted: Trusted,
    bundle_bytes: usize,
    bundle_as_of: String,
}

/// Decodes and opens bundle bytes with the trusted keys and computes the
/// verdict on the bundle's subject. Evidence that does not hold together is
/// "does not verify" (exit 1).
fn compute(bytes: &[u8], trusted: Trusted, question: &Question, ctx: &Ctx) -> Result<Computed, Failure> {
    let unverified = |what: &str, e: &dyn std::fmt::Display| Failure::Unverified(format!("{what}: {e}"));
    let decoded = bundle::decode(bytes).map_err(|e| unverified("the evidence bundle", &e))?;
    let opened =
        bundle::open(&decoded, &trusted.trust, question.today).map_err(|e| unverified("the evidence bundle", &e))?;
    for rejected in &opened.rejected_registry {
        ctx.warn(&format!("evidence bundle: {rejected}"));
    }
    let kind = opened
        .subject
        .as_ref()
        .and_then(|s| s.kind.as_ref())
        .ok_or_else(|| Failure::Unverified("the evidence bundle does not say what it is about".to_owned()))?;
    let options = verdict::Options {
        limits: Limits::default(),
        include_corrected: question.include_corrected,
        witness_quorum: trusted.quorum,
    };
    if question.product.is_some() && !matches!(kind, Kind::Certificate(_)) {
        return Err(Failure::Usage(format!(
            "--product applies to a certificate; this bundle is about {}",
            subject::describe_subject(opened.subject.as_ref())
        )));
    }
    let report = verdict::verify_subject(
        &opened.view,
        &trusted.trust,
        opened.subject.as_ref(),
        question.at,
        question.product.as_ref(),
        options,
    )
    .map_err(|e| match e {
        verdict::SubjectError::Verdict(e) => Failure::Failed(format!("the verdict could not be computed: {e}")),
        invalid => unverified("the bundle's subject", &invalid),
    })?;
    Ok(Computed { report, trusted, bundle_bytes: bytes.len(), bundle_as_of: decoded.as_of })
}

/// Today at China Standard Time, for noticing a node whose clock is off.
fn local_today() -> Date {
    time::local_date(&pb::EventTime { unix_millis: time::now_millis(), offset_minutes: 8 * 60 })
}

/// Fetches the bundle of `request` and computes its verdict here.
async fn online(
    ctx: &mut Ctx,
    request: pb::VerifyRequest,
    pinned: Option<Trusted>,
    question: &Question,
) -> Result<Computed, Failure> {
    let trusted = trust_or_node(ctx, pinned, question.quorum).await?;
    let bundle = fetch_bundle(ctx, &request).await?;
    let computed = compute(&bundle.encode_to_vec(), trusted, question, ctx)?;
    // The verdict is as of the node's date; a node far off our calendar
    // could make an expired certificate look valid, so say so.
    if let Ok(as_of) = Date::parse_iso(&computed.bundle_as_of) {
        let today = local_today();
        if (as_of.days_since_epoch() - today.days_since_epoch()).abs() > 1 {
            ctx.warn(&format!(
                "the node computed its evidence as of {as_of}, but today is {today}; the verdict is as of the \
                 node's date (verify a saved bundle with --offline FILE --at DATE to choose the day)"
            ));
        }
    }
    Ok(computed)
}

/// Exit 0 only for VALID; a verdict that is not VALID has been printed and
/// exits 1.
fn outcome(verdict: Overall) -> Result<(), Failure> {
    match verdict {
        Overall::Valid => Ok(()),
        Overall::Warning | Overall::Invalid | Overall::NotFound => Err(Failure::Reported),
    }
}

/// The documented `--json` object: `verdict::to_json_value` plus `trust`
/// and `bundle_bytes`.
fn verdict_json(computed: &Computed) -> Value {
    let mut value = verdict::to_json_value(&computed.report);
    if let Value::Object(map) = &mut value {
        map.insert("trust".to_owned(), Value::from(computed.trusted.label.clone()));
        map.insert("bundle_bytes".to_owned(), Value::from(computed.bundle_bytes));
    }
    value
}

pub async fn verify(ctx: &mut Ctx, args: VerifyArgs) -> Result<(), Failure> {
    let pinned = pinned_trust(&args.trust)?;
    if let Some(path) = &args.offline {
        return verify_offline(ctx, &args, path, pinned);
    }
    let subject = match (&args.record, &args.cert) {
        (Some(target), _) => record_subject(ctx, *target).await?,
        (None, Some(cert)) => pb::VerdictSubject { kind: Some(Kind::Certificate(cert.to_pb())) },
        (None, None) => return Err(Failure::Usage("give a RECORD, --cert USCC/NUMBER or --offline FILE".to_owned())),
    };
    let request = pb::VerifyRequest {
        subject: Some(subject),
        raw: args.include_corrected,
        at: args.at.map(|d| d.to_string()).unwrap_or_default(),
        for_product: args.product.as_ref().map(ProductCode::to_element_string).unwrap_or_default(),
    };
    let question = Question {
        include_corrected: args.include_corrected,
        quorum: args.trust.witness_quorum,
        at: args.at,
        product: args.product.map(|p| p.gtin),
        today: None,
    };
    let computed = online(ctx, request, pinned, &question).await?;
    ctx.emit(verdict_json(&computed), &regulator_text(&computed, "computed here from the node's evidence bundle"));
    outcome(computed.report.verdict)
}

fn verify_offline(ctx: &Ctx, args: &VerifyArgs, path: &Path, pinned: Option<Trusted>) -> Result<(), Failure> {
    let Some(trusted) = pinned else {
        return Err(Failure::Usage(
            "an offline verdict needs the trusted log keys: give --trust VKEY (or QTRACE_TRUST) or --data DIR"
                .to_owned(),
        ));
    };
    let bytes = std::fs::read(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let question = Question {
        include_corrected: args.include_corrected,
        quorum: args.trust.witness_quorum,
        at: None,
        product: args.product.clone().map(|p| p.gtin),
        today: args.at,
    };
    let computed = compute(&bytes, trusted, &question, ctx)?;
    let how = format!("computed offline from {}", path.display());
    ctx.emit(verdict_json(&computed), &regulator_text(&computed, &how));
    outcome(computed.report.verdict)
}

pub async fn check(ctx: &mut Ctx, args: CheckArgs) -> Result<(), Failure> {
    // The code is checked before anything else, so a misread label is
    // exit 2 with no node contacted.
    let code = subject::parse_product(&args.code).map_err(|e| Failure::Usage(e.to_string()))?;
    let pinned = pinned_trust(&args.trust)?;
    let request = pb::VerifyRequest { subject: Some(subject::product_subject(&code)), ..Default::default() };
    let question = Question { quorum: args.trust.witness_quorum, ..Question::default() };
    let computed = online(ctx, request, pinned, &question).await?;
    ctx.emit(verdict_json(&computed), &consumer_text(&computed));
    outcome(computed.report.verdict)
}

pub async fn bundle(ctx: &mut Ctx, args: BundleArgs) -> Result<(), Failure> {
    let subject = match (&args.target, &args.cert) {
        (Some(Target::Record(target)), _) => record_subject(ctx, *target).await?,
        (Some(Target::Product(code)), _) => subject::product_subject(code),
        (None, Some(cert)) => pb::VerdictSubject { kind: Some(Kind::Certificate(cert.to_pb())) },
        (None, None) => return Err(Failure::Usage("give a CODE, a RECORD or --cert USCC/NUMBER".to_owned())),
    };
    let request = pb::VerifyRequest {
        subject: Some(subject),
        raw: false,
        at: args.at.map(|d| d.to_string()).unwrap_or_default(),
        for_product: args.product.as_ref().map(ProductCode::to_element_string).unwrap_or_default(),
    };
    let fetched = fetch_bundle(ctx, &request).await?;
    let bytes = fetched.encode_to_vec();
    // Refuse to save what a verifier could not read back.
    bundle::decode(&bytes).map_err(|e| Failure::Unverified(format!("the node's evidence bundle: {e}")))?;
    std::fs::write(&args.out, &bytes)
        .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", args.out.display())))?;
    let (value, text) = bundle_summary(&fetched, bytes.len(), &args.out);
    ctx.emit(value, &text);
    Ok(())
}

/// What a bundle holds, per log, as JSON and as text.
fn bundle_summary(bundle: &pb::Bundle, n_bytes: usize, path: &Path) -> (Value, String) {
    let subject = subject::describe_subject(bundle.subject.as_ref());
    let mut logs = Vec::new();
    let mut text = format!(
        "Evidence bundle 证据包 written to {}: {n_bytes} bytes (qtrace.v1.Bundle protobuf, version {})\n  \
         subject 对象: {subject}\n  as of 截至: {}; made 生成于 {}\n",
        path.display(),
        bundle.version,
        bundle.as_of,
        time::format_micros_utc(bundle.created_at_micros),
    );
    for log in &bundle.logs {
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for bundled in &log.entries {
            let kind = bundled
                .entry
                .as_ref()
                .and_then(|e| e.signed.as_ref())
                .and_then(|s| qtrace_client::event::decode_event(&s.event).ok())
                .map_or_else(|| "undecodable".to_owned(), |e| e.kind.name().to_owned());
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((kind, 1)),
            }
        }
        let checkpoint_size = log.checkpoint.as_ref().map_or(0, |c| c.size);
        let log_id = hex::encode(&log.log_id);
        text.push_str(&format!(
            "  log 日志 {log_id}: {} entries with inclusion proofs into its signed checkpoint of size {checkpoint_size}; \
             {} equivocation record(s)\n    {}\n",
            log.entries.len(),
            log.equivocations.len(),
            kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", "),
        ));
        logs.push(json!({
            "log_id": log_id,
            "checkpoint_size": checkpoint_size,
            "entries": log.entries.len(),
            "equivocations": log.equivocations.len(),
            "kinds": kinds.iter().map(|(k, n)| json!({"kind": k, "count": n})).collect::<Vec<_>>(),
        }));
    }
    text.push_str(&format!(
        "Verify it with no node 离线验证: qtrace verify --offline {} --trust <the log's verifier key>\n",
        path.display()
    ));
    let value = json!({
        "file": path.display().to_string(),
        "bytes": n_bytes,
        "format": "qtrace.v1.Bundle",
        "version": bundle.version,
        "subject": subject,
        "as_of": bundle.as_of,
        "created_at_micros": bundle.created_at_micros,
        "logs": logs,
    });
    (value, text)
}

// ---------------------------------------------------------------------------
// Text renderings
// ---------------------------------------------------------------------------

/// The Chinese term for a check.
fn check_zh(name: &str) -> &'static str {
    match name {
        "integrity" => "完整性",
        "accountability" => "责任可究",
        "source" => "来源可查",
        "destination" => "去向可追",
        "certificate" => "证书状态",
        "recall" => "召回",
        "spot_check" => "抽检",
        "blacklist" => "黑名单",
        "equivocation" => "分叉",
        "witnesses" => "见证",
        "basis" => "检验依据",
        "scope" => "范围",
        "correction" => "更正",
        "found" => "查询",
        _ => "",
    }
}

fn mark(severity: Severity) -> &'static str {
    match severity {
        Severity::Ok => "✔",
        Severity::Warning => "⚠",
        Severity::Invalid => "✘",
    }
}

fn kind_text(kind: EventKind) -> String {
    format!("{} {}", kind.name(), kind.name_zh())
}

fn headline(computed: &Computed, how: &str) -> String {
    let report = &computed.report;
    let mut text = format!(
        "Verdict 结论: {} {} — {}\n  as of 截至 {}; {how} ({} bytes)\n",
        report.verdict.name(),
        report.verdict.name_zh(),
        report.subject,
        report.as_of,
        computed.bundle_bytes,
    );
    if computed.trusted.pinned {
        text.push_str(&format!("  trust 信任: {}\n", computed.trusted.label));
    } else {
        text.push_str(&format!(
            "  trust 信任: NOT PINNED 未固定 — node-provided (first contact): the log keys ({}) came from the node \
             itself, so a node that forged its logs would pass; pin each log's key (its agency's DATA/log.vkey) \
             with --trust VKEY or --data DIR\n",
            node_provided_names(&computed.trusted)
        ));
    }
    text
}

/// People and organisations accountable, one line each, with the kinds of
/// record they signed.
fn responsible_lines(report: &Report, indent: &str) -> Vec<String> {
    let mut people: Vec<(&verdict::Responsible, Vec<EventKind>)> = Vec::new();
    for r in report.responsible.iter().filter(|r| !r.uscc.is_empty()) {
        match people.iter_mut().find(|(p, _)| {
            p.uscc == r.uscc && p.person == r.person && p.title == r.title && p.organisation == r.organisation
        }) {
            Some((_, kinds)) => {
                if !kinds.contains(&r.kind) {
                    kinds.push(r.kind);
                }
            }
            None => people.push((r, vec![r.kind])),
        }
    }
    people
        .iter()
        .map(|(r, kinds)| {
            format!(
                "{indent}{} ({}) — {}, {}: {}",
                r.organisation,
                r.uscc,
                r.person,
                r.title,
                kinds.iter().map(|k| kind_text(*k)).collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

fn path_lines(report: &Report, indent: &str) -> Vec<String> {
    report
        .path
        .iter()
        .map(|step| {
            let who = if step.organisation.is_empty() { String::new() } else { format!("{}: ", step.organisation) };
            format!("{indent}{}  {}  {who}{}", step.when, kind_text(step.kind), step.what)
        })
        .collect()
}

/// The regulator's view: every check with its evidence, the certificates'
/// status histories, the accountable persons and the chain.
fn regulator_text(computed: &Computed, how: &str) -> String {
    let report = &computed.report;
    let mut text = headline(computed, how);
    text.push_str("\nChecks 检查项\n");
    for check in &report.checks {
        text.push_str(&format!(
            "  {} {} {}: {}\n",
            mark(check.severity),
            check.name,
            check_zh(check.name),
            check.detail
        ));
        for evidence in &check.evidence {
            text.push_str(&format!("      · {evidence}\n"));
        }
    }
    if !report.certificates.is_empty() {
        text.push_str("\nCertificate status history 证书状态历史\n");
        for cert in &report.certificates {
            text.push_str(&format!(
                "  {}/{} — holder 持证人 {}: {}, valid until 有效期至 {}\n",
                cert.issuer, cert.number, cert.holder, cert.status, cert.valid_until
            ));
            for (date, kind, detail) in &cert.history {
                text.push_str(&format!("    {date}  {}  {detail}\n", kind_text(*kind)));
            }
        }
    }
    let people = responsible_lines(report, "  ");
    if !people.is_empty() {
        text.push_str("\nAccountable persons 责任人\n");
        for line in people {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let path = path_lines(report, "  ");
    if !path.is_empty() {
        text.push_str("\nChain 追溯链 (来源 → 去向)\n");
        for line in path {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

/// The consumer's view: four plain answers and the path.
fn consumer_text(computed: &Computed) -> String {
    let report = &computed.report;
    let mut text = format!(
        "{} — {} {}\n  as of 截至 {}\n",
        report.subject,
        report.verdict.name(),
        report.verdict.name_zh(),
        report.as_of
    );
    if report.verdict == Overall::NotFound {
        let detail = report.check("found").map(|c| c.detail.as_str()).unwrap_or_default();
        text.push_str(&format!(
            "\n  Not found 查无此产品: {detail}\n  The code is not on record: the product may be counterfeit \
             (疑似假冒), or from a maker that does not record here.\n"
        ));
        push_trust(&mut text, computed);
        return text;
    }
    let problem = |names: &[&str]| {
        report.checks.iter().filter(|c| names.contains(&c.name) && c.severity != Severity::Ok).collect::<Vec<_>>()
    };
    let genuine = problem(&["integrity", "accountability", "equivocation"]);
    let genuine_text = if genuine.is_empty() {
        "Yes 是 — every record is signed by a registered, accountable person and is in the log's signed \
         checkpoint (未篡改)"
            .to_owned()
    } else {
        format!("NO 否 — {}", genuine.iter().map(|c| c.detail.as_str()).collect::<Vec<_>>().join("; "))
    };
    let certified_text = match report.check("certificate") {
        None => "not checked 未核查".to_owned(),
        Some(c) => match c.severity {
            Severity::Ok if report.certificates.is_empty() => {
                "no certificate on record 未见认证记录 (not every product needs one)".to_owned()
            }
            Severity::Ok => format!(
                "Yes 是 — {}",
                report
                    .certificates
                    .iter()
                    .map(|v| format!("{}/{} {} until {}", v.issuer, v.number, v.status, v.valid_until))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Severity::Warning => format!("Doubtful 存疑 — {}", c.detail),
            Severity::Invalid => format!("NO 否 — {}", c.detail),
        },
    };
    // The recall check's detail starts each recall with "RECALLED (已召回): ",
    // which the answer already says.
    let recalled_text = match report.check("recall") {
        Some(c) if report.recalled || c.severity != Severity::Ok => {
            format!("YES 是 (已召回) — {}", c.detail.replace("RECALLED (已召回): ", ""))
        }
        _ if report.recalled => "YES 是 (已召回)".to_owned(),
        _ => "No 否".to_owned(),
    };
    text.push_str(&format!("\n  Genuine? 是否正品: {genuine_text}\n"));
    text.push_str(&format!("  Certified? 是否认证: {certified_text}\n"));
    text.push_str(&format!("  Recalled? 是否召回: {recalled_text}\n"));
    text.push_str("  Who is responsible? 责任主体:\n");
    let people = responsible_lines(report, "    ");
    if people.is_empty() {
        text.push_str("    nobody on record 无记录\n");
    }
    for line in people {
        text.push_str(&line);
        text.push('\n');
    }
    let path = path_lines(report, "    ");
    if !path.is_empty() {
        text.push_str("  Traceability path 追溯路径 (来源 → 去向):\n");
        for line in path {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let covered = ["integrity", "accountability", "equivocation", "certificate", "recall"];
    let others: Vec<_> =
        report.checks.iter().filter(|c| !covered.contains(&c.name) && c.severity != Severity::Ok).collect();
    if !others.is_empty() {
        text.push_str("  Also found 其他发现:\n");
        for c in others {
            text.push_str(&format!("    {} {} {}: {}\n", mark(c.severity), c.name, check_zh(c.name), c.detail));
        }
    }
    push_trust(&mut text, computed);
    text
}

fn push_trust(text: &mut String, computed: &Computed) {
    if computed.trusted.pinned {
        text.push_str(&format!("  Checked with 验证密钥: {}\n", computed.trusted.label));
    } else {
        text.push_str(&format!(
            "  Checked with 验证密钥: the keys the node gave ({}), NOT PINNED 未固定 (node-provided, first \
             contact); pin each log's key (its agency's DATA/log.vkey) with --trust VKEY or --data DIR\n",
            node_provided_names(&computed.trusted)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_verdict() {
        let cases = [(Overall::Valid, 0), (Overall::Warning, 1), (Overall::Invalid, 1), (Overall::NotFound, 1)];
        for (verdict, want) in cases {
            let got = match outcome(verdict) {
                Ok(()) => 0,
                Err(failure) => {
                    // The report was printed already: nothing more is said.
                    assert!(matches!(failure, Failure::Reported), "{verdict:?}");
                    failure.exit_code()
                }
            };
            assert_eq!(got, want, "{verdict:?}");
        }
    }

    #[test]
    fn check_names_have_chinese_terms() {
        for name in [
            "integrity",
            "accountability",
            "source",
            "destination",
            "certificate",
            "recall",
            "spot_check",
            "blacklist",
            "equivocation",
            "witnesses",
            "basis",
            "scope",
            "correction",
            "found",
        ] {
            assert!(!check_zh(name).is_empty(), "{name}");
        }
        assert_eq!(check_zh("integrity"), "完整性");
        assert_eq!(check_zh("spot_check"), "抽检");
    }

    #[test]
    fn trust_keys_are_read_before_any_node_is_contacted() {
        let signing_key = qtrace_client::signing::SecretKey::from_seed(&[7; 32]).signing_key().clone();
        let signer = qtrace_client::note::Signer::new("qtrace.test/cli", signing_key).expect("signer");
        let vkey = signer.verifier().to_string();
        let vkey = vkey.as_str();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("log.vkey"), format!("{vkey}\n")).expect("write");
        let args = |keys: &[&str], data: Option<&Path>| TrustArgs {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            data: data.map(Path::to_path_buf),
            witness_quorum: 0,
        };
        let describe = |result: Result<Option<Trusted>, Failure>| match result {
            Ok(None) => Ok("none".to_owned()),
            Ok(Some(t)) => Ok(format!("{} key(s), {}", t.trust.logs.len(), t.label)),
            Err(failure) => Err((failure.exit_code(), failure.message().to_owned())),
        };
        let data_label = format!("pinned ({})", dir.path().join("log.vkey").display());
        let both_label = format!("2 key(s), pinned (--trust, {})", dir.path().join("log.vkey").display());
        // (arguments, Ok(what is trusted) or Err((exit code, part of the message)))
        type Case<'a> = (TrustArgs, Result<String, (u8, &'a str)>);
        let cases: Vec<Case> = vec![
            (args(&[], None), Ok("none".to_owned())),
            (args(&[""], None), Ok("none".to_owned())),
            (args(&[vkey], None), Ok("1 key(s), pinned (--trust)".to_owned())),
            (args(&[], Some(dir.path())), Ok(format!("1 key(s), {data_label}"))),
            (args(&[vkey], Some(dir.path())), Ok(both_label)),
            (args(&["not-a-key"], None), Err((2, "not a C2SP verifier key"))),
            (args(&[], Some(&dir.path().join("missing"))), Err((2, "log.vkey"))),
        ];
        for (input, want) in cases {
            let shown = format!("{input:?}");
            match (describe(pinned_trust(&input)), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{shown}"),
                (Err((code, message)), Err((want_code, want_text))) => {
                    assert_eq!(code, want_code, "{shown}");
                    assert!(message.contains(want_text), "{shown}: {message}");
                }
                (got, want) => panic!("{shown}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_node_states_its_own_key_and_its_peers() {
        let vkey = |seed: u8, origin: &str| {
            let key = qtrace_client::signing::SecretKey::from_seed(&[seed; 32]).signing_key().clone();
            qtrace_client::note::Signer::new(origin, key).expect("signer").verifier()
        };
        let own = vkey(1, "qtrace.test/gd");
        let peer = vkey(2, "qtrace.test/hz");
        let own_id = LogId::of_key(own.public_key().as_bytes()).0.to_vec();
        let info = |log_id: &[u8], peers: &[String]| pb::LogInfo {
            log_id: log_id.to_vec(),
            vkey: own.to_string(),
            peer_vkeys: peers.to_vec(),
            ..Default::default()
        };
        // (what the node states, Ok(the logs trusted) or Err((exit code, part of the message)))
        type Case<'a> = (pb::LogInfo, Result<Vec<&'a str>, (u8, &'a str)>);
        let cases: Vec<Case> = vec![
            (info(&own_id, &[]), Ok(vec!["qtrace.test/gd"])),
            (info(&own_id, &[peer.to_string()]), Ok(vec!["qtrace.test/gd", "qtrace.test/hz"])),
            (info(&own_id, &[format!(" {peer}\n"), own.to_string()]), Ok(vec!["qtrace.test/gd", "qtrace.test/hz"])),
            (info(&own_id, &["hz+bad".to_owned()]), Err((1, "the node gives for a peer does not parse"))),
            (info(&[0; 32], &[peer.to_string()]), Err((1, "the node's log id"))),
        ];
        for (input, want) in cases {
            let shown = format!("{:?}", input.peer_vkeys);
            let got = node_provided_keys(&input)
                .map(|logs| logs.iter().map(|v| v.name().as_str().to_owned()).collect::<Vec<_>>())
                .map_err(|failure| (failure.exit_code(), failure.message().to_owned()));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{shown}"),
                (Err((code, message)), Err((want_code, want_text))) => {
                    assert_eq!(code, want_code, "{shown}");
                    assert!(message.contains(want_text), "{shown}: {message}");
                }
                (got, want) => panic!("{shown}: got {got:?}, want {want:?}"),
            }
        }
    }
}
