//! What a valid seed must still be: `seeds` writes real, valid inputs and
//! lists each in `corpus/valid.tsv` with what it is (an event, a signed
//! checkpoint, a real inclusion proof, ...); `replay` checks every listed
//! seed with [`check`]. A fuzz target only fails on a panic, so without this
//! a format change that makes every seed a refused input would leave a
//! corpus that tests nothing and a replay that still passes.

use qtrace_ledger::bundle;
use qtrace_ledger::entry::Entry;
use qtrace_ledger::event;
use qtrace_ledger::ids::{Date, Gln, Gtin, ProductCode, Uscc};
use qtrace_ledger::merkle::{self, Hash};
use qtrace_ledger::note::{self, Checkpoint, CosignatureVerifier, Note, Verifier};
use qtrace_ledger::verdict;

use crate::{WITNESS_NAME, fixtures};

/// The name of the manifest of valid seeds, beside the targets' directories.
pub const MANIFEST: &str = "valid.tsv";

/// What a seed is, as named in the manifest's second column.
pub const KINDS: &[&str] = &[
    "event",
    "entry",
    "signed-checkpoint",
    "cosigned-checkpoint",
    "checkpoint-body",
    "vkey",
    "witness-vkey",
    "example-note",
    "inclusion-proof",
    "consistency-proof",
    "tree",
    "uscc",
    "gtin",
    "gln",
    "product-code",
    "short-product-code",
    "date",
    "bundle",
];

fn text(data: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))
}

/// The arbitrary-input mode of `proof_verify`: `[0, a, b, leaf, root, old
/// root, proof…]` with whole 32-byte hashes.
struct ProofInput {
    a: u64,
    b: u64,
    leaf: Hash,
    root: Hash,
    old_root: Hash,
    proof: Vec<Hash>,
}

fn proof_input(data: &[u8]) -> Result<ProofInput, String> {
    let Some((&0, rest)) = data.split_first() else {
        return Err("does not start with the mode byte 0 (arbitrary sizes and hashes)".into());
    };
    if rest.len() < 16 + 3 * 32 || (rest.len() - 16) % 32 != 0 {
        return Err(format!("{} bytes after the mode byte: not two sizes and whole hashes", rest.len()));
    }
    let (sizes, hashes) = rest.split_at(16);
    let hashes: Vec<Hash> = hashes.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect();
    Ok(ProofInput {
        a: u64::from_be_bytes(sizes[..8].try_into().unwrap_or_default()),
        b: u64::from_be_bytes(sizes[8..].try_into().unwrap_or_default()),
        leaf: hashes[0],
        root: hashes[1],
        old_root: hashes[2],
        proof: hashes[3..].to_vec(),
    })
}

/// Whether `data` is still a valid input of `kind`; the reason if not.
pub fn check(kind: &str, data: &[u8]) -> Result<(), String> {
    let fixtures = fixtures();
    match kind {
        "event" => event::decode_event(data).map(drop).map_err(|e| e.to_string()),
        "entry" => {
            let entry = Entry::decode(data).map_err(|e| e.to_string())?;
            entry.verify_signature().map_err(|e| format!("signature: {e}"))?;
            event::decode_event(&entry.event).map(drop).map_err(|e| format!("event: {e}"))
        }
        "signed-checkpoint" | "cosigned-checkpoint" => {
            let opened = note::open_checkpoint(text(data)?, &fixtures.log, std::slice::from_ref(&fixtures.witness))
                .map_err(|e| e.to_string())?;
            let cosigned = opened.cosigners.iter().any(|(name, _)| name.as_str() == WITNESS_NAME);
            match (kind, cosigned) {
                ("cosigned-checkpoint", false) => Err(format!("no cosignature of {WITNESS_NAME} verifies")),
                _ => Ok(()),
            }
        }
        "checkpoint-body" => Checkpoint::parse_body(text(data)?).map(drop).map_err(|e| e.to_string()),
        "vkey" => Verifier::parse(text(data)?).map(drop).map_err(|e| e.to_string()),
        "witness-vkey" => CosignatureVerifier::parse(text(data)?).map(drop).map_err(|e| e.to_string()),
        "example-note" => {
            Note::open(text(data)?, std::slice::from_ref(&fixtures.example)).map(drop).map_err(|e| e.to_string())
        }
        "inclusion-proof" => {
            let input = proof_input(data)?;
            merkle::verify_inclusion(input.a, input.b, &input.leaf, &input.proof, &input.root)
                .map_err(|e| e.to_string())
        }
        "consistency-proof" => {
            let input = proof_input(data)?;
            merkle::verify_consistency(input.a, input.b, &input.proof, &input.old_root, &input.root)
                .map_err(|e| e.to_string())
        }
        // An odd first byte selects the real-tree mode, in which the target
        // itself asserts that real proofs verify and tampered ones do not.
        "tree" => match data.first() {
            Some(mode) if mode % 2 == 1 => Ok(()),
            _ => Err("does not start with an odd mode byte (a real tree)".into()),
        },
        "uscc" => Uscc::parse(text(data)?).map(drop).map_err(|e| e.to_string()),
        "gtin" => Gtin::parse(text(data)?).map(drop).map_err(|e| e.to_string()),
        "gln" => Gln::parse(text(data)?).map(drop).map_err(|e| e.to_string()),
        "product-code" => ProductCode::parse(text(data)?).map(drop).map_err(|e| e.to_string()),
        // `GTIN/lot`, the short form `qtrace check` reads besides GS1 codes.
        "short-product-code" => verdict::product_code(text(data)?).map(drop).map_err(|e| e.to_string()),
        "date" => Date::parse_iso(text(data)?).map(drop).map_err(|e| e.to_string()),
        "bundle" => {
            let decoded = bundle::decode(data).map_err(|e| e.to_string())?;
            let opened = bundle::open(&decoded, &fixtures.trust, None).map_err(|e| e.to_string())?;
            if let Some(first) = opened.rejected_registry.first() {
                let n = opened.rejected_registry.len();
                return Err(format!("{n} registry records rejected, the first: {first}"));
            }
            match opened.subject.as_ref().and_then(|s| s.kind.as_ref()) {
                Some(_) => Ok(()),
                None => Err("the bundle names no subject".into()),
            }
        }
        other => Err(format!("unknown seed kind {other:?} (known: {})", KINDS.join(", "))),
    }
}

/// One line of the manifest: `<target>/<file>` and the seed's kind.
#[derive(Debug, PartialEq, Eq)]
pub struct Listed {
    pub target: String,
    pub file: String,
    pub kind: String,
}

/// Parses the manifest: comment lines start with `#`; every other line is
/// `<target>/<file>` TAB `<kind>`, for a known target and kind.
pub fn parse_manifest(text: &str, targets: &[&str]) -> Result<Vec<Listed>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.starts_with('#') && !l.is_empty()) {
        let bad = |why: &str| format!("{MANIFEST} line {}: {why}: {line:?}", n + 1);
        let (path, kind) = line.split_once('\t').ok_or_else(|| bad("not <target>/<file> TAB <kind>"))?;
        let (target, file) = path.split_once('/').ok_or_else(|| bad("the path is not <target>/<file>"))?;
        if !targets.contains(&target) {
            return Err(bad("unknown target"));
        }
        if !KINDS.contains(&kind) {
            return Err(bad("unknown seed kind"));
        }
        if file.is_empty() || file.contains('/') {
            return Err(bad("the file name is empty or has a '/'"));
        }
        out.push(Listed { target: target.into(), file: file.into(), kind: kind.into() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lines() {
        let targets = ["event_decode", "note_parse"];
        let cases: &[(&str, Result<usize, &str>)] = &[
            ("# comment\n\nevent_decode/00-genesis\tevent\n", Ok(1)),
            ("event_decode/00-genesis event\n", Err("not <target>/<file> TAB <kind>")),
            ("event_decode\tevent\n", Err("not <target>/<file>")),
            ("bundle_open/record\tbundle\n", Err("unknown target")),
            ("note_parse/x\tnote\n", Err("unknown seed kind")),
            ("note_parse/\tvkey\n", Err("empty")),
        ];
        for (text, want) in cases {
            match (parse_manifest(text, &targets), want) {
                (Ok(listed), Ok(n)) => assert_eq!(listed.len(), *n, "{text:?}"),
                (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{text:?}: {e}"),
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// Inputs that are not what their kind says are refused with a reason.
    #[test]
    fn wrong_inputs_are_refused() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("event", b"\xff\xff", ""),
            ("entry", b"qtrace/v1/entry\0", ""),
            ("signed-checkpoint", b"example.com/foo\n1\nAAAA\n", ""),
            ("checkpoint-body", b"origin\n01\n", "three lines"),
            ("vkey", b"not a key", ""),
            ("inclusion-proof", &[1, 2, 3], "mode byte 0"),
            ("tree", &[2, 0, 0], "odd mode byte"),
            ("uscc", b"91310000MA1K2Q7A5M", ""),
            ("gtin", b"09520123456789", "check digit"),
            ("date", b"2026-02-30", ""),
            ("bundle", b"\x01", ""),
            ("telepathy", b"", "unknown seed kind"),
        ];
        for (kind, data, fragment) in cases {
            match check(kind, data) {
                Ok(()) => panic!("{kind}: {data:?} accepted"),
                Err(e) => assert!(e.contains(fragment), "{kind}: {e:?} lacks {fragment:?}"),
            }
        }
    }
}
