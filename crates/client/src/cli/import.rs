//! `qtrace import FILE.jsonl`: bulk submission with AppendBatch, a progress
//! bar, a progress file to resume from, and a summary.

use std::fs::File;
use std::io::{BufRead as _, BufReader, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qtrace_client::connect::code_name_of;
use qtrace_client::pb::{self, append_result::Outcome};
use qtrace_client::records;
use qtrace_client::signing::SecretKey;
use serde::Deserialize;
use serde_json::json;

use super::{Ctx, Failure, ImportArgs};

/// Most records in one AppendBatch (here and in `qtrace epcis import`).
const MAX_CHUNK_EVENTS: usize = 500;
/// Most event bytes in one AppendBatch, so a chunk of large events stays
/// under the 4 MiB that gRPC servers accept by default.
pub(super) const MAX_CHUNK_BYTES: usize = 3 * 1024 * 1024;
/// Refusals listed in the summary.
const LISTED_REFUSALS: usize = 20;

/// One line of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    /// The exact event bytes, standard base64.
    event_b64: String,
    /// The signer's public key, hex; with `signature`, the line is pre-signed.
    signer: Option<String>,
    /// The signature over "qtrace/v1/event\0" || event, hex.
    signature: Option<String>,
}

/// A line that was refused, by the node or here.
#[derive(Debug, Clone, PartialEq)]
struct Refusal {
    line: u64,
    code: &'static str,
    message: String,
}

#[derive(Debug, Default)]
struct Tally {
    appended: u64,
    duplicates: u64,
    refused: u64,
    listed: Vec<Refusal>,
}

impl Tally {
    fn refuse(&mut self, refusal: Refusal) {
        self.refused += 1;
        if self.listed.len() < LISTED_REFUSALS {
            self.listed.push(refusal);
        }
    }
}

/// Why a line cannot be sent.
enum LineProblem {
    /// Refused here, like the node would refuse it.
    Invalid(String),
    /// The line must be signed here, but no key was given.
    NeedsKey,
}

/// Turns one line into a signed event ready to submit.
fn prepare(text: &str, key: Option<&SecretKey>) -> Result<pb::SignedEvent, LineProblem> {
    let invalid = |m: String| LineProblem::Invalid(m);
    let line: Line = serde_json::from_str(text).map_err(|e| invalid(format!("not a JSON import line: {e}")))?;
    let event = BASE64.decode(line.event_b64.trim()).map_err(|e| invalid(format!("event_b64: not base64: {e}")))?;
    match (line.signer, line.signature) {
        (Some(signer), Some(signature)) => {
            let signer = hex::decode(signer.trim()).map_err(|e| invalid(format!("signer: not hex: {e}")))?;
            let signature = hex::decode(signature.trim()).map_err(|e| invalid(format!("signature: not hex: {e}")))?;
            Ok(pb::SignedEvent { event, signer, signature })
        }
        (None, None) => {
            let key = key.ok_or(LineProblem::NeedsKey)?;
            records::sign_bytes(event, key)
                .map(|sealed| sealed.signed)
                .map_err(|e| invalid(format!("not signed, because the node would refuse it: {e}")))
        }
        _ => Err(invalid("give both signer and signature, or neither (to sign with --key)".to_owned())),
    }
}

fn progress_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".progress");
    PathBuf::from(name)
}

fn read_progress(path: &Path) -> Result<u64, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            Failure::Usage(format!(
                "{}: not a progress file (a number of lines); delete it or pass --from-start",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Failure::Usage(format!("{}: {e}", path.display()))),
    }
}

/// Writes the number of lines done, atomically: a temporary file, synced,
/// then renamed over the progress file.
fn write_progress(path: &Path, lines_done: u64) -> Result<(), Failure> {
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(".tmp");
    let temp = PathBuf::from(temp_name);
    let result = File::create(&temp)
        .and_then(|mut f| f.write_all(format!("{lines_done}\n").as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&temp, path));
    result.map_err(|e| Failure::Failed(format!("writing progress to {}: {e}", path.display())))
}

fn count_lines(path: &Path) -> Result<u64, Failure> {
    let file = File::open(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return Ok(n),
            Ok(_) => n += 1,
            Err(e) => return Err(Failure::Usage(format!("{}: {e}", path.display()))),
        }
    }
}

fn progress_bar(ctx: &Ctx, total: u64, done: u64) -> ProgressBar {
    let target = if ctx.json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} importing 导入 [{bar:40}] {pos}/{len} lines  {per_sec}  eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(done);
    bar
}

/// A chunk of signed events waiting to be sent, with their line numbers.
#[derive(Default)]
struct Chunk {
    lines: Vec<u64>,
    events: Vec<pb::SignedEvent>,
    bytes: usize,
}

impl Chunk {
    fn push(&mut self, line: u64, event: pb::SignedEvent) {
        self.bytes += event.event.len() + event.signer.len() + event.signature.len();
        self.lines.push(line);
        self.events.push(event);
    }

    fn is_full(&self, max_events: usize) -> bool {
        self.events.len() >= max_events || self.bytes >= MAX_CHUNK_BYTES
    }
}

/// Sends a chunk and tallies each result.
async fn send(ctx: &mut Ctx, chunk: Chunk, tally: &mut Tally) -> Result<(), Failure> {
    if chunk.events.is_empty() {
        return Ok(());
    }
    let n_events = chunk.events.len();
    let request = pb::AppendBatchRequest { events: chunk.events };
    let response = ctx.client().await?.append_batch(request).await?.into_inner();
    if response.results.len() != n_events {
        return Err(Failure::Unverified(format!(
            "the node answered {} results for a batch of {n_events} records",
            response.results.len()
        )));
    }
    for (line, result) in chunk.lines.into_iter().zip(response.results) {
        match result.outcome {
            Some(Outcome::Receipt(receipt)) if receipt.duplicate => tally.duplicates += 1,
            Some(Outcome::Receipt(_)) => tally.appended += 1,
            Some(Outcome::Refusal(refusal)) => {
                tally.refuse(Refusal { line, code: code_name_of(refusal.code), message: refusal.message })
            }
            None => tally.refuse(Refusal { line, code: "UNKNOWN", message: "the node gave no outcome".into() }),
        }
    }
    Ok(())
}

/// The batch size the node accepts, at most [`MAX_CHUNK_EVENTS`]; older
/// nodes that cannot say get the default. `qtrace epcis import` uses it too.
pub(super) async fn chunk_size(ctx: &mut Ctx) -> Result<usize, Failure> {
    let info = ctx.client().await?.get_log_info(pb::GetLogInfoRequest {}).await;
    Ok(match info {
        Ok(info) => match info.into_inner().max_batch {
            0 => MAX_CHUNK_EVENTS,
            n => (n as usize).min(MAX_CHUNK_EVENTS),
        },
        Err(status) if status.code() == tonic::Code::Unavailable => return Err(status.into()),
        Err(_) => MAX_CHUNK_EVENTS,
    })
}

pub async fn run(ctx: &mut Ctx, args: ImportArgs) -> Result<(), Failure> {
    let file = &args.file;
    let progress = progress_path(file);
    let total = count_lines(file)?;
    let skip = if args.from_start { 0 } else { read_progress(&progress)? };
    if skip > total {
        return Err(Failure::Usage(format!(
            "{} says {skip} lines are done, but {} has only {total}; delete the progress file or pass --from-start",
            progress.display(),
            file.display()
        )));
    }
    // The key is only needed for lines that are not pre-signed; a bad key
    // file is still reported before anything is sent.
    let key = match &ctx.key_path {
        Some(_) => Some(ctx.key()?),
        None => None,
    };
    let max_events = chunk_size(ctx).await?;

    let reader = File::open(file).map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    let mut reader = BufReader::new(reader);
    let bar = progress_bar(ctx, total, skip);
    let mut tally = Tally::default();
    let mut chunk = Chunk::default();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| Failure::Failed(format!("{}: {e}", file.display())))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line_no <= skip {
            continue;
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(text) => text.trim(),
            Err(_) => {
                tally.refuse(Refusal { line: line_no, code: "INVALID_ARGUMENT", message: "not UTF-8 text".into() });
                continue;
            }
        };
        if !text.is_empty() {
            match prepare(text, key.as_ref()) {
                Ok(event) => chunk.push(line_no, event),
                Err(LineProblem::Invalid(message)) => {
                    tally.refuse(Refusal { line: line_no, code: "INVALID_ARGUMENT", message })
                }
                Err(LineProblem::NeedsKey) => {
                    bar.abandon();
                    return Err(Failure::Usage(format!(
                        "line {line_no} has no signature: give --key FILE to sign such lines (the lines before it \
                         that were acknowledged are recorded in {}; run again to resume)",
                        progress.display()
                    )));
                }
            }
        }
        if chunk.is_full(max_events) {
            send(ctx, std::mem::take(&mut chunk), &mut tally).await?;
            write_progress(&progress, line_no)?;
            bar.set_position(line_no);
        }
    }
    send(ctx, chunk, &mut tally).await?;
    bar.finish_and_clear();
    // The whole file is done: a later run starts from the top again (and the
    // node answers records it already holds as duplicates).
    if progress.exists() {
        std::fs::remove_file(&progress)
            .map_err(|e| Failure::Failed(format!("removing {}: {e}", progress.display())))?;
    }
    summarise(ctx, file, total, skip, &tally);
    if tally.refused > 0 {
        // The summary already lists the refusals (and is the one JSON object).
        return Err(Failure::Reported);
    }
    Ok(())
}

fn summarise(ctx: &Ctx, file: &Path, total: u64, skip: u64, tally: &Tally) {
    let refusals: Vec<_> =
        tally.listed.iter().map(|r| json!({"line": r.line, "code": r.code, "message": r.message})).collect();
    let value = json!({
        "file": file.display().to_string(),
        "lines": total,
        "skipped": skip,
        "appended": tally.appended,
        "duplicates": tally.duplicates,
        "refused": tally.refused,
        "refusals": refusals,
        "refusals_truncated": tally.refused > tally.listed.len() as u64,
    });
    let mut text = format!(
        "Import 导入 {}: {total} lines\n  appended 已记录: {}\n  duplicates 重复 (already recorded): {}\n  \
         refused 被拒绝: {}\n",
        file.display(),
        tally.appended,
        tally.duplicates,
        tally.refused
    );
    if skip > 0 {
        text.push_str(&format!("  skipped 已跳过 (done in an earlier run): {skip} lines\n"));
    }
    if !tally.listed.is_empty() {
        let shown = if tally.refused > tally.listed.len() as u64 { " (first 20)" } else { "" };
        text.push_str(&format!("Refusals 拒绝明细{shown}:\n"));
        for r in &tally.listed {
            text.push_str(&format!("  line {}: {}: {}\n", r.line, r.code, r.message));
        }
    }
    ctx.emit(value, &text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use qtrace_client::ids::{Gtin, Lot, Uscc};
    use qtrace_client::records::{Header, LotKey, Movement, Party};

    fn line_of(event: &pb::Event) -> String {
        json!({"event_b64": BASE64.encode(event.encode_to_vec())}).to_string()
    }

    fn shipment() -> pb::Event {
        let uscc = |text: &str| Uscc::parse(text).expect("test vector USCC");
        let movement = Movement {
            item: LotKey {
                gtin: Gtin::parse("09520123456788").expect("test GTIN"),
                lot: Lot::parse("L1").expect("test lot"),
            },
            quantity: None,
            from: Party { uscc: uscc("914403007152672A21"), gln: None },
            to: Party { uscc: uscc("92320900MA1N3T5C5Q"), gln: None },
            shipment_number: String::new(),
            parents: vec![],
        };
        let header = Header { time: pb::EventTime { unix_millis: 1_795_226_400_000, offset_minutes: 480 }, nonce: 0 };
        records::ship(&header, &movement)
    }

    #[test]
    fn lines_are_prepared() {
        let key = SecretKey::from_seed(&[4; 32]);
        let event = shipment();
        let unsigned = line_of(&event);
        let signed = match prepare(&unsigned, Some(&key)) {
            Ok(signed) => signed,
            Err(_) => panic!("a valid unsigned line is signed"),
        };
        assert_eq!(key.public_key().verify_event(&signed.event, &signed.signature), Ok(()));
        let presigned = json!({
            "event_b64": BASE64.encode(&signed.event),
            "signer": hex::encode(&signed.signer),
            "signature": hex::encode(&signed.signature),
        })
        .to_string();
        assert!(matches!(prepare(&presigned, None), Ok(s) if s == signed), "pre-signed lines pass as they are");
        assert!(matches!(prepare(&unsigned, None), Err(LineProblem::NeedsKey)));

        let bad_event = json!({"event_b64": BASE64.encode([0x08, 0x01])}).to_string();
        let cases = [
            ("{", "not a JSON import line"),
            (r#"{"event_b64": "!!"}"#, "event_b64: not base64"),
            (r#"{"event_b64": "CAE=", "sig": "00"}"#, "unknown field `sig`"),
            (r#"{"event_b64": "CAE=", "signer": "00"}"#, "give both signer and signature"),
            (r#"{"event_b64": "CAE=", "signer": "zz", "signature": "00"}"#, "signer: not hex"),
            (bad_event.as_str(), "not signed, because the node would refuse it"),
        ];
        for (text, want) in cases {
            match prepare(text, Some(&key)) {
                Err(LineProblem::Invalid(message)) => assert!(message.contains(want), "{text}: {message}"),
                Err(LineProblem::NeedsKey) => panic!("{text}: needs key"),
                Ok(_) => panic!("{text}: accepted"),
            }
        }
    }

    #[test]
    fn progress_is_written_atomically_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("events.jsonl");
        let progress = progress_path(&file);
        assert_eq!(progress, dir.path().join("events.jsonl.progress"));
        assert_eq!(read_progress(&progress).ok(), Some(0), "no progress file: start at the top");
        write_progress(&progress, 1500).expect("written");
        assert_eq!(read_progress(&progress).ok(), Some(1500));
        assert!(!dir.path().join("events.jsonl.progress.tmp").exists());
        std::fs::write(&progress, "garbage").expect("write");
        assert!(matches!(read_progress(&progress), Err(Failure::Usage(_))));

        std::fs::write(&file, "a\n\nb\nc").expect("write");
        assert_eq!(count_lines(&file).ok(), Some(4));
    }

    #[test]
    fn chunks_fill_by_count_and_bytes() {
        let small = pb::SignedEvent { event: vec![0; 100], signer: vec![0; 32], signature: vec![0; 64] };
        let mut chunk = Chunk::default();
        for line in 0..499 {
            chunk.push(line, small.clone());
        }
        assert!(!chunk.is_full(500));
        chunk.push(499, small.clone());
        assert!(chunk.is_full(500));
        let big = pb::SignedEvent { event: vec![0; 65_536], ..small };
        let mut chunk = Chunk::default();
        for line in 0..47 {
            chunk.push(line, big.clone());
        }
        assert!(!chunk.is_full(500));
        chunk.push(48, big);
        assert!(chunk.is_full(500), "48 events of 64 KiB fill the 3 MiB chunk");
    }
}
