//! `qtrace import --epcis FILE.json` and `qtrace export --epcis CODE`: GS1
//! EPCIS 2.0 JSON(-LD) documents in and out. The mapping itself, both ways,
//! is [`qtrace_client::epcis`]; this module reads and writes files, asks the
//! node, and reports.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qtrace_client::bundle;
use qtrace_client::connect::code_name_of;
use qtrace_client::epcis::{self, Importer, PartyMap};
use qtrace_client::event::EventKind;
use qtrace_client::ids::ProductCode;
use qtrace_client::input::RecordKey;
use qtrace_client::note::Verifier;
use qtrace_client::pb::{self, append_result::Outcome, query_request::Key};
use qtrace_client::signing::PublicKey;
use qtrace_client::subject;
use qtrace_client::time::{format_micros_utc, now_millis};
use qtrace_client::verdict::Trust;
use qtrace_client::verify;
use qtrace_client::view::View as _;
use serde_json::{Value, json};

use super::import::{MAX_CHUNK_BYTES, chunk_size};
use super::{Ctx, Failure, ImportArgs};

/// Refusals listed in the text summary (the JSON lists every event).
const LISTED_REFUSALS: usize = 50;
/// Largest page the node serves.
const PAGE_SIZE: u32 = 1_000;

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The product: a GS1 Digital Link, an element string such as (01)09520123456788(10)P-1, a
    /// GTIN (every lot of it) or GTIN/LOT.
    #[arg(long, value_name = "CODE", value_parser = subject::parse_product)]
    pub epcis: ProductCode,
    /// Write the document to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Records asked for per Query page (tests use small pages to cover paging).
    #[arg(long, hide = true, default_value_t = PAGE_SIZE, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub page_size: u32,
}

/// What became of one EPCIS event.
#[derive(Debug, Clone)]
enum Fate {
    /// Mapped and signed, not yet answered by the node.
    Pending,
    Appended {
        seq: u64,
        entry_hash: Vec<u8>,
    },
    Duplicate {
        seq: u64,
        entry_hash: Vec<u8>,
    },
    /// Refused here (`stage` "mapping") or by the node (`stage` "node").
    Refused {
        stage: &'static str,
        code: String,
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct EventResult {
    /// 1-based position in the document's event list.
    index: usize,
    event_type: String,
    event_id: Option<String>,
    kind: Option<EventKind>,
    presigned: bool,
    fate: Fate,
}

impl EventResult {
    fn json(&self) -> Value {
        let mut value = json!({
            "index": self.index,
            "type": self.event_type,
            "event_id": self.event_id,
            "kind": self.kind.map(EventKind::name),
        });
        let Some(object) = value.as_object_mut() else { return value };
        let mut put = |key: &str, v: Value| {
            object.insert(key.to_owned(), v);
        };
        match &self.fate {
            Fate::Pending => put("outcome", "not sent".into()),
            Fate::Appended { seq, entry_hash } | Fate::Duplicate { seq, entry_hash } => {
                let duplicate = matches!(self.fate, Fate::Duplicate { .. });
                put("outcome", if duplicate { "duplicate" } else { "appended" }.into());
                put("seq", (*seq).into());
                put("entry_hash", hex::encode(entry_hash).into());
                put("presigned", self.presigned.into());
            }
            Fate::Refused { stage, code, reason } => {
                put("outcome", "refused".into());
                put("stage", (*stage).into());
                put("code", code.clone().into());
                put("reason", reason.clone().into());
            }
        }
        value
    }

    fn label(&self) -> String {
        let id = self.event_id.as_deref().map(|id| format!(" {id}")).unwrap_or_default();
        let event_type = if self.event_type.is_empty() { "(no type)" } else { &self.event_type };
        format!("#{} {event_type}{id}", self.index)
    }
}

/// Whether the importing key acts for a testing lab, from the log's registry:
/// the evidence bundle of the genesis record carries every registry record,
/// opened (signatures, proofs, authorisation replayed) with the node's own log
/// key. This only decides whether inspections are mapped; the node checks the
/// signer's authority again when the records arrive.
async fn signer_is_lab(ctx: &mut Ctx, own: &PublicKey) -> Result<bool, Failure> {
    let genesis = ctx.fetch(RecordKey::Seq(0)).await?;
    let info = ctx.client().await?.get_log_info(pb::GetLogInfoRequest {}).await?.into_inner();
    let log_key = Verifier::parse(info.vkey.trim())
        .map_err(|e| Failure::Unverified(format!("the node's verifier key {:?} does not parse: {e}", info.vkey)))?;
    let subject = pb::VerdictSubject { kind: Some(pb::verdict_subject::Kind::Record(genesis.reference().to_pb())) };
    let request = pb::VerifyRequest { subject: Some(subject), ..Default::default() };
    let bundle = ctx.client().await?.get_bundle(request).await?.into_inner();
    let trust = Trust { logs: vec![log_key], witnesses: Vec::new() };
    let opened =
        bundle::open(&bundle, &trust, None).map_err(|e| Failure::Unverified(format!("the log's registry: {e}")))?;
    let registry = opened.view.registry();
    Ok(registry
        .key(&own.to_bytes())
        .filter(|k| k.revoked_at.is_none())
        .and_then(|k| registry.organisation(&k.uscc))
        .is_some_and(|org| org.roles.contains(&pb::Role::TestingLab)))
}

fn progress_bar(ctx: &Ctx, total: usize) -> ProgressBar {
    let target = if ctx.json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total as u64), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} importing EPCIS 导入 [{bar:40}] {pos}/{len} events  {per_sec}  eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Sends one chunk of (result index, signed event) and records each answer.
async fn send(ctx: &mut Ctx, chunk: Vec<(usize, pb::SignedEvent)>, results: &mut [EventResult]) -> Result<(), Failure> {
    if chunk.is_empty() {
        return Ok(());
    }
    let (indexes, events): (Vec<usize>, Vec<pb::SignedEvent>) = chunk.into_iter().unzip();
    let n_events = events.len();
    let response = ctx.client().await?.append_batch(pb::AppendBatchRequest { events }).await?.into_inner();
    if response.results.len() != n_events {
        return Err(Failure::Unverified(format!(
            "the node answered {} results for a batch of {n_events} records",
            response.results.len()
        )));
    }
    for (i, answer) in indexes.into_iter().zip(response.results) {
        let Some(result) = results.get_mut(i) else { continue };
        result.fate = match answer.outcome {
            Some(Outcome::Receipt(r)) if r.duplicate => Fate::Duplicate { seq: r.seq, entry_hash: r.entry_hash },
            Some(Outcome::Receipt(r)) => Fate::Appended { seq: r.seq, entry_hash: r.entry_hash },
            Some(Outcome::Refusal(r)) => {
                Fate::Refused { stage: "node", code: code_name_of(r.code).to_owned(), reason: r.message }
            }
            None => Fate::Refused { stage: "node", code: "UNKNOWN".into(), reason: "the node gave no outcome".into() },
        };
    }
    Ok(())
}

pub async fn import(ctx: &mut Ctx, args: ImportArgs) -> Result<(), Failure> {
    let file = &args.file;
    let text = std::fs::read_to_string(file).map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    let document: Value =
        serde_json::from_str(&text).map_err(|e| Failure::Usage(format!("{}: not JSON: {e}", file.display())))?;
    let events = epcis::events_of(&document).map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    let parties = match &args.party_map {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
            PartyMap::parse_toml(&text).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?
        }
        None => PartyMap::default(),
    };
    let key = ctx.key()?;
    let own = key.public_key();
    let signer_is_lab =
        if events.iter().any(|e| epcis::needs_lab_check(e, &own)) { signer_is_lab(ctx, &own).await? } else { false };
    let importer = Importer { key: &key, parties: &parties, signer_is_lab };

    let mut results = Vec::with_capacity(events.len());
    let mut pending = Vec::new();
    for (position, event) in events.iter().enumerate() {
        let mut result = EventResult {
            index: position + 1,
            event_type: epcis::event_type(event).to_owned(),
            event_id: epcis::event_id(event).map(str::to_owned),
            kind: epcis::classify(event).ok(),
            presigned: false,
            fate: Fate::Pending,
        };
        match importer.prepare(event) {
            Ok(prepared) => {
                result.presigned = prepared.presigned;
                pending.push((position, prepared.signed));
            }
            Err(refusal) => {
                result.fate =
                    Fate::Refused { stage: "mapping", code: refusal.code().to_owned(), reason: refusal.to_string() }
            }
        }
        results.push(result);
    }

    let max_events = chunk_size(ctx).await?;
    let bar = progress_bar(ctx, pending.len());
    let mut chunk: Vec<(usize, pb::SignedEvent)> = Vec::new();
    let mut chunk_bytes = 0;
    for (position, signed) in pending {
        chunk_bytes += signed.event.len() + signed.signer.len() + signed.signature.len();
        chunk.push((position, signed));
        if chunk.len() >= max_events || chunk_bytes >= MAX_CHUNK_BYTES {
            let n = chunk.len() as u64;
            send(ctx, std::mem::take(&mut chunk), &mut results).await?;
            chunk_bytes = 0;
            bar.inc(n);
        }
    }
    send(ctx, chunk, &mut results).await?;
    bar.finish_and_clear();

    let refused = summarise(ctx, &args, &results);
    if refused > 0 {
        // The summary already lists the refusals (and is the one JSON object).
        return Err(Failure::Reported);
    }
    Ok(())
}

/// Prints the summary and returns the number of refused events.
fn summarise(ctx: &Ctx, args: &ImportArgs, results: &[EventResult]) -> usize {
    let count = |f: fn(&Fate) -> bool| results.iter().filter(|r| f(&r.fate)).count();
    let appended = count(|f| matches!(f, Fate::Appended { .. }));
    let duplicates = count(|f| matches!(f, Fate::Duplicate { .. }));
    let refused = count(|f| matches!(f, Fate::Refused { .. }));
    let mapping_refused = count(|f| matches!(f, Fate::Refused { stage: "mapping", .. }));
    let mapped = results.len() - mapping_refused;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for r in results.iter().filter(|r| !matches!(r.fate, Fate::Refused { stage: "mapping", .. })) {
        if let Some(kind) = r.kind {
            *kinds.entry(kind.name()).or_default() += 1;
        }
    }
    let value = json!({
        "file": args.file.display().to_string(),
        "format": "epcis",
        "events": results.len(),
        "mapped": mapped,
        "kinds": kinds,
        "appended": appended,
        "duplicates": duplicates,
        "refused": refused,
        "results": results.iter().map(EventResult::json).collect::<Vec<_>>(),
    });
    let kinds_text = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ");
    let mut text = format!(
        "EPCIS import 导入 {}: {} events\n  mapped 已映射: {mapped}{}\n  appended 已记录: {appended}\n  \
         duplicates 重复 (already recorded): {duplicates}\n  refused 被拒绝: {refused}\n",
        args.file.display(),
        results.len(),
        if kinds_text.is_empty() { String::new() } else { format!(" ({kinds_text})") },
    );
    let refusals: Vec<&EventResult> = results.iter().filter(|r| matches!(r.fate, Fate::Refused { .. })).collect();
    if !refusals.is_empty() {
        let shown = if refusals.len() > LISTED_REFUSALS { " (first 50; --json lists all)" } else { "" };
        text.push_str(&format!("Refusals 拒绝明细{shown}:\n"));
        for r in refusals.iter().take(LISTED_REFUSALS) {
            if let Fate::Refused { stage, code, reason } = &r.fate {
                let by = if *stage == "node" { format!("refused by the node, {code}") } else { code.clone() };
                text.push_str(&format!("  {}: {reason} ({by})\n", r.label()));
            }
        }
    }
    ctx.emit(value, &text);
    refused
}

pub async fn export(ctx: &mut Ctx, args: ExportArgs) -> Result<(), Failure> {
    let code = args.epcis.to_element_string();
    let mut records = Vec::new();
    let mut page_token = String::new();
    loop {
        let request =
            pb::QueryRequest { key: Some(Key::ProductCode(code.clone())), page_size: args.page_size, page_token };
        let response = ctx.client().await?.query(request).await?.into_inner();
        for wire in &response.entries {
            records.push(verify::check_entry(wire)?);
        }
        if response.next_page_token.is_empty() {
            break;
        }
        page_token = response.next_page_token;
    }
    if records.is_empty() {
        ctx.warn(&format!("the node has no records about {code}; the document has no events"));
    }
    let creation_date = format_micros_utc(now_millis().saturating_mul(1_000));
    let exported = epcis::export_document(&records, &creation_date, &code);
    let mut text = serde_json::to_string_pretty(&exported.document)
        .map_err(|e| Failure::Failed(format!("writing the EPCIS document: {e}")))?;
    text.push('\n');
    let summary = format!(
        "EPCIS export 导出 {code}: {} records, {} EPCIS events, {} other records (qtrace:otherRecords)\n",
        records.len(),
        exported.events,
        exported.other
    );
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| Failure::Failed(format!("writing {}: {e}", path.display())))?;
            let value = json!({
                "file": path.display().to_string(),
                "product": code,
                "records": records.len(),
                "events": exported.events,
                "other_records": exported.other,
                "bytes": text.len(),
            });
            ctx.emit(value, &format!("{summary}  written to {} ({} bytes)\n", path.display(), text.len()));
        }
        None => {
            // The document is the output (one JSON object, also with --json);
            // the counts go to stderr for people.
            // A closed stdout (e.g. `| head`) leaves nothing useful to do.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            if !ctx.json {
                eprint!("{summary}");
            }
        }
    }
    Ok(())
}
