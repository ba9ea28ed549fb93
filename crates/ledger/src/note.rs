//! C2SP signed notes, tlog checkpoints and tlog cosignatures.
//!
//! A qtrace node publishes its tree head in the text formats that the wider
//! transparency-log ecosystem already reads, so that existing witnesses,
//! monitors and tools can check a qtrace log without knowing anything about
//! qtrace. This module is the whole of that format layer. It does no I/O and
//! holds no clock: every input is a string or bytes, and every timestamp is
//! passed in by the caller.
//!
//! # Exact bytes
//!
//! **Signed note** (<https://c2sp.org/signed-note>). A note is
//!
//! ```text
//! <text, one or more lines, each ending in "\n">
//! "\n"
//! "— " <key name> " " base64(key hash (4 bytes, big-endian) || signature) "\n"   (1 to 100 times)
//! ```
//!
//! where `—` is U+2014 EM DASH. The text is separated from the signatures by
//! the *last* blank line, so the text itself may contain blank lines. The
//! whole note must be valid UTF-8 with no control character below U+0020
//! other than `"\n"`, and this module refuses notes over [`MAX_NOTE_BYTES`].
//! Key names are non-empty and contain no Unicode white space and no `+`.
//!
//! The key hash of a key is `SHA-256(name || "\n" || type || public key)[..4]`.
//! For an Ed25519 note key the type byte is `0x01` and the signature is the
//! plain RFC 8032 Ed25519 signature over the text (including its final
//! newline, excluding the blank line). A verifier key is written
//! `<name>+<8 hex digits of key hash>+base64(0x01 || 32-byte public key)` and
//! a signer key `PRIVATE+KEY+<name>+<hash>+base64(0x01 || 32-byte seed)`.
//!
//! **Checkpoint** (<https://c2sp.org/tlog-checkpoint>). The note text is
//!
//! ```text
//! <origin> "\n" <tree size, decimal, no leading zeros> "\n" base64(32-byte root hash) "\n"
//! <extension line> "\n"   (zero or more, each non-empty)
//! ```
//!
//! and the log signs it with its Ed25519 note key.
//!
//! **Cosignature** (<https://c2sp.org/tlog-cosignature>, Ed25519
//! `cosignature/v1`). A witness adds a note signature line whose key hash
//! uses type byte `0x04` and whose signature bytes are
//! `timestamp (8 bytes, big-endian, at most 2^63 - 1) || Ed25519 signature`,
//! the signature being over
//!
//! ```text
//! "cosignature/v1\n" "time " <timestamp, decimal> "\n" <the whole checkpoint body>
//! ```
//!
//! Witness verifier keys are written like note verifier keys with type byte
//! `0x04`.
//!
//! # Verification rules
//!
//! Following the signed-note specification and Go's `sumdb/note.Open`:
//! signature lines whose (name, key hash) pair matches no known key are
//! ignored (and kept for the caller to inspect); every line that does match a
//! known key must verify, or the whole note is rejected; and at least one
//! line must verify. A checkpoint additionally requires the log's own
//! signature. Ed25519 verification is `verify_strict`, which rejects
//! small-order keys and malleable signatures, and weak keys are refused when a
//! verifier key is parsed.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// The largest note, in bytes, that this module parses or produces. The
/// specification asks verifiers to bound the size of a note so that a hostile
/// peer cannot make them buffer or hash without limit; a checkpoint with a
/// hundred cosignatures is under 20 KiB, so 1 MiB leaves ample room.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// The largest number of signature lines in a note. Go's `sumdb/note` uses
/// the same bound, and the specification requires accepting at least 16.
pub const MAX_SIGNATURES: usize = 100;

/// The signature type byte of an Ed25519 note key, which is hashed into the
/// key hash and prefixed to the public key in a verifier key string.
pub const KEY_TYPE_ED25519: u8 = 0x01;

/// The signature type byte of an Ed25519 `cosignature/v1` witness key. It
/// differs from [`KEY_TYPE_ED25519`] so that the same Ed25519 key used as a
/// witness gets a different key hash than when it signs plain notes.
pub const KEY_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// The largest cosignature timestamp the specification allows (2^63 - 1), so
/// that the value fits a signed 64-bit POSIX time everywhere.
pub const MAX_COSIGNATURE_TIMESTAMP: u64 = i64::MAX as u64;

/// Every signature line starts with U+2014 EM DASH and a space.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// Signer keys start with this marker so that a secret key cannot be mistaken
/// for (or pasted as) a verifier key.
const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// The domain-separation header of an Ed25519 cosignature message.
const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

const ED25519_SIGNATURE_LEN: usize = 64;
const COSIGNATURE_LEN: usize = 8 + ED25519_SIGNATURE_LEN;

/// Error messages quote at most this many characters of untrusted input, so
/// that a megabyte-long hostile line does not end up in a log verbatim.
const MAX_QUOTED_CHARS: usize = 80;

/// Everything that can go wrong parsing, signing or verifying notes,
/// checkpoints and cosignatures. Each variant says which rule was broken so
/// that an operator can fix the input rather than guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note (or checkpoint body) is larger than [`MAX_NOTE_BYTES`].
    #[error("note is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// The size of the rejected input in bytes.
        size: usize,
        /// The limit it exceeded.
        limit: usize,
    },
    /// The note as a whole breaks the signed-note format.
    #[error("malformed note: {detail}")]
    MalformedNote {
        /// Which rule the note breaks.
        detail: String,
    },
    /// One signature line is not `— <name> <base64>`.
    #[error("malformed signature line {line:?}: {detail}")]
    BadSignatureLine {
        /// The offending line, truncated to 80 characters.
        line: String,
        /// Which rule the line breaks.
        detail: String,
    },
    /// The note carries more than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {limit} signature lines")]
    TooManySignatures {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A key name is empty or contains white space, `+` or a control character.
    #[error("invalid key name {name:?}: {detail}")]
    BadKeyName {
        /// The offending name, truncated to 80 characters.
        name: String,
        /// Which rule the name breaks.
        detail: String,
    },
    /// A verifier key string (`<name>+<hash>+<base64>`) is malformed or does
    /// not match its own key hash.
    #[error("bad verifier key: {detail}")]
    BadVerifierKey {
        /// What is wrong with the key string.
        detail: String,
    },
    /// A signer key string (`PRIVATE+KEY+...`) is malformed. The message never
    /// quotes the key material.
    #[error("bad signer key: {detail}")]
    BadSignerKey {
        /// What is wrong with the key string.
        detail: String,
    },
    /// The public key has small order, so signatures under it prove nothing.
    #[error("public key is weak (small order): a signature under it would verify for many messages")]
    WeakKey,
    /// Two different trusted keys share one name and key hash, so a signature
    /// line could not be attributed to either of them.
    #[error("two different trusted keys share the name {name} and key hash {key_hash}")]
    AmbiguousVerifier {
        /// The shared key name.
        name: KeyName,
        /// The shared key hash.
        key_hash: KeyHash,
    },
    /// No signature line of the note comes from a trusted key.
    #[error("note has no signature from any trusted key")]
    NoKnownSignature,
    /// A signature line from a trusted key does not verify, so the note was
    /// altered or the key holder signed something else.
    #[error("signature by trusted key {name}+{key_hash} does not verify")]
    InvalidSignature {
        /// The name of the trusted key.
        name: KeyName,
        /// The key hash of the trusted key.
        key_hash: KeyHash,
    },
    /// A checkpoint lacks a valid signature from the log's own key.
    #[error("checkpoint has no signature from the log key {name}+{key_hash}")]
    MissingLogSignature {
        /// The name of the log key.
        name: KeyName,
        /// The key hash of the log key.
        key_hash: KeyHash,
    },
    /// The note text is not a valid tlog checkpoint body.
    #[error("bad checkpoint: {detail}")]
    BadCheckpoint {
        /// Which rule the checkpoint body breaks.
        detail: String,
    },
    /// A cosignature timestamp above 2^63 - 1 was requested.
    #[error("cosignature timestamp {timestamp} is greater than 2^63 - 1")]
    TimestampOutOfRange {
        /// The rejected timestamp.
        timestamp: u64,
    },
}

/// Quotes untrusted input for an error message, cut short so that errors
/// stay readable and bounded.
fn quote(input: &str) -> String {
    let mut chars = input.chars();
    let mut quoted: String = chars.by_ref().take(MAX_QUOTED_CHARS).collect();
    if chars.next().is_some() {
        quoted.push('…');
    }
    quoted
}

/// Returns the first character below U+0020 other than newline, with its byte
/// offset: the signed-note format forbids them so that a note renders the
/// same everywhere and cannot hide text behind carriage returns.
fn first_control_char(text: &str) -> Option<(usize, char)> {
    text.char_indices().find(|&(_, c)| c < ' ' && c != '\n')
}

fn check_note_chars(text: &str) -> Result<(), NoteError> {
    match first_control_char(text) {
        Some((offset, c)) => Err(NoteError::MalformedNote {
            detail: format!("control character U+{:04X} at byte {offset}; only newline is allowed", u32::from(c)),
        }),
        None => Ok(()),
    }
}

/// Checks the text part of a note before it is signed, so that we never sign
/// something that cannot be parsed back as the same note.
fn check_note_text(text: &str) -> Result<(), NoteError> {
    if text.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge { size: text.len(), limit: MAX_NOTE_BYTES });
    }
    if !text.ends_with('\n') {
        return Err(NoteError::MalformedNote { detail: "note text must end with a newline".to_owned() });
    }
    check_note_chars(text)
}

/// The name of a note key: non-empty, without Unicode white space, `+` or
/// control characters. A `KeyName` that exists is valid, so signature lines
/// and key strings built from it always parse back.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyName(String);

impl KeyName {
    /// Validates `name` as a key name. Names are part of every signature
    /// line and key string, where a space or `+` would split the field.
    pub fn new(name: &str) -> Result<Self, NoteError> {
        let bad = |detail: &str| NoteError::BadKeyName { name: quote(name), detail: detail.to_owned() };
        if name.is_empty() {
            return Err(bad("key name is empty"));
        }
        if name.contains('+') {
            return Err(bad("key name contains '+'"));
        }
        if name.chars().any(char::is_whitespace) {
            return Err(bad("key name contains white space"));
        }
        if first_control_char(name).is_some() {
            return Err(bad("key name contains a control character"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for KeyName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyName {
    type Err = NoteError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

/// The 4-byte key hash (the specification's "key ID") that, together with
/// the key name, says which key made a signature line. It is an identifier,
/// not a security boundary: the trusted public key is always checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub u32);

impl KeyHash {
    /// Computes `SHA-256(name || "\n" || key_type || public_key)[..4]` read
    /// big-endian, the key hash the specifications recommend (and that
    /// existing witnesses compute).
    pub fn compute(name: &KeyName, key_type: u8, public_key: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(name.as_str().as_bytes());
        hasher.update(b"\n");
        hasher.update([key_type]);
        hasher.update(public_key);
        let digest = hasher.finalize();
        // A SHA-256 digest is always 32 bytes, so indices 0..4 exist.
        Self(u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]))
    }

    /// The key hash as it appears at the start of a signature's bytes.
    pub fn to_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Parses the 8 hex digits of a key hash in a key string. Go's parser accepts
/// either case, so we do too; a sign or `0x` prefix is refused.
fn parse_key_hash(hex: &str) -> Option<KeyHash> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().map(KeyHash)
}

/// The parts of a `<name>+<hash>+<base64(type || key)>` key string.
struct KeyString {
    name: KeyName,
    claimed_hash: KeyHash,
    key_type: u8,
    key: Vec<u8>,
}

/// Splits a key string into its parts. The base64 part may itself contain
/// `+`, so only the first two `+` separate fields, exactly as in Go.
fn split_key_string(input: &str) -> Result<KeyString, String> {
    let (name, rest) = input.split_once('+').ok_or("expected <name>+<key hash>+<base64 key>, found no '+'")?;
    let (hash_hex, key_base64) =
        rest.split_once('+').ok_or("expected <name>+<key hash>+<base64 key>, found only one '+'")?;
    let name = KeyName::new(name).map_err(|e| e.to_string())?;
    let claimed_hash =
        parse_key_hash(hash_hex).ok_or_else(|| format!("key hash {:?} is not 8 hex digits", quote(hash_hex)))?;
    let decoded = BASE64.decode(key_base64).map_err(|_| "key is not valid standard base64".to_owned())?;
    let (&key_type, key) = decoded.split_first().ok_or("key is empty")?;
    Ok(KeyString { name, claimed_hash, key_type, key: key.to_vec() })
}

fn key_type_name(key_type: u8) -> &'static str {
    match key_type {
        KEY_TYPE_ED25519 => "an Ed25519 note key (type 0x01)",
        KEY_TYPE_COSIGNATURE_V1 => "an Ed25519 cosignature/v1 witness key (type 0x04)",
        _ => "an unsupported key type",
    }
}

/// Parses a verifier key string of the given type, checking the key is a
/// valid, non-weak Ed25519 point and that the stated key hash is its own.
fn parse_verifier_key(vkey: &str, expected_type: u8) -> Result<(KeyName, KeyHash, VerifyingKey), NoteError> {
    let bad = |detail: String| NoteError::BadVerifierKey { detail };
    let parts = split_key_string(vkey).map_err(bad)?;
    if parts.key_type != expected_type {
        return Err(bad(format!(
            "key type byte is 0x{:02x}, {}; expected {}",
            parts.key_type,
            key_type_name(parts.key_type),
            key_type_name(expected_type)
        )));
    }
    let key_bytes: [u8; 32] = parts
        .key
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("Ed25519 public key is {} bytes, expected 32", parts.key.len())))?;
    let key =
        VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad("public key is not a valid Ed25519 point".to_owned()))?;
    if key.is_weak() {
        return Err(NoteError::WeakKey);
    }
    let computed = KeyHash::compute(&parts.name, expected_type, &key_bytes);
    if computed != parts.claimed_hash {
        return Err(bad(format!("key hash {} does not match the key, whose hash is {computed}", parts.claimed_hash)));
    }
    Ok((parts.name, computed, key))
}

/// Parses a `PRIVATE+KEY+<name>+<hash>+base64(type || seed)` signer key. The
/// stated hash is that of the *public* key, so it is checked after deriving
/// the public key from the seed. Errors never quote the key material.
fn parse_signer_key(skey: &str) -> Result<(KeyName, KeyHash, u8, SigningKey), NoteError> {
    let bad = |detail: String| NoteError::BadSignerKey { detail };
    let rest = skey
        .strip_prefix(PRIVATE_KEY_PREFIX)
        .ok_or_else(|| bad("signer key does not start with PRIVATE+KEY+".to_owned()))?;
    let parts = split_key_string(rest).map_err(bad)?;
    let seed: [u8; 32] = parts
        .key
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("Ed25519 seed is {} bytes, expected 32", parts.key.len())))?;
    let key = SigningKey::from_bytes(&seed);
    let computed = KeyHash::compute(&parts.name, parts.key_type, key.verifying_key().as_bytes());
    if computed != parts.claimed_hash {
        return Err(bad(format!("key hash {} does not match the key, whose hash is {computed}", parts.claimed_hash)));
    }
    Ok((parts.name, computed, parts.key_type, key))
}

fn format_key_string(name: &KeyName, key_hash: KeyHash, key_type: u8, key: &[u8; 32]) -> String {
    let mut typed = Vec::with_capacity(33);
    typed.push(key_type);
    typed.extend_from_slice(key);
    format!("{name}+{key_hash}+{}", BASE64.encode(typed))
}

/// Verifies an Ed25519 signature strictly. Only `verify_strict` rejects
/// small-order keys and non-canonical encodings, which would otherwise let
/// one signature pass for several messages or keys.
///
/// Successes are remembered ([`RecentlyVerified`]): a node computing
/// thousands of verdicts a second checks the same checkpoint signature and
/// cosignatures in each of them, and a strict verification costs about as
/// much as the rest of a consumer check.
fn verify_ed25519(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    let Ok(signature) = Signature::from_slice(sig) else {
        return false;
    };
    let digest = RecentlyVerified::digest(key, msg, sig);
    if RECENTLY_VERIFIED.holds(&digest) {
        return true;
    }
    let valid = key.verify_strict(msg, &signature).is_ok();
    if valid {
        RECENTLY_VERIFIED.remember(digest);
    }
    valid
}

/// The last [`RecentlyVerified::SLOTS`] (key, message, signature) triples
/// whose strict verification succeeded, each held as the SHA-256 of the
/// three (length-prefixed, so no two triples share an encoding). Verification
/// is a pure function of the triple, so answering from memory changes no
/// result; finding a remembered digest for a triple never verified would
/// need a SHA-256 collision. Failures are not remembered: a forged note
/// costs its verification every time.
struct RecentlyVerified {
    slots: std::sync::Mutex<(usize, [[u8; 32]; RecentlyVerified::SLOTS])>,
}

static RECENTLY_VERIFIED: RecentlyVerified =
    RecentlyVerified { slots: std::sync::Mutex::new((0, [[0; 32]; RecentlyVerified::SLOTS])) };

impl RecentlyVerified {
    /// Enough for the checkpoints and cosignatures of a few dozen logs.
    const SLOTS: usize = 64;

    fn digest(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"qtrace/v1/verified-ed25519\0");
        hasher.update(key.as_bytes());
        hasher.update((sig.len() as u64).to_be_bytes());
        hasher.update(sig);
        hasher.update(msg);
        hasher.finalize().into()
    }

    fn holds(&self, digest: &[u8; 32]) -> bool {
        // A poisoned lock only means another thread panicked while
        // remembering; the ring itself is always whole digests.
        let slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.1.iter().any(|held| held == digest)
    }

    fn remember(&self, digest: [u8; 32]) {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (next, ring) = &mut *slots;
        ring[*next] = digest;
        *next = (*next + 1) % Self::SLOTS;
    }
}

/// A trusted Ed25519 note key (type 0x01), used to check signatures by a log
/// or by any other party that signs plain notes.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: KeyName,
    key_hash: KeyHash,
    key: VerifyingKey,
}

impl Verifier {
    /// Makes a verifier from a name and a raw public key, refusing weak keys
    /// because they would accept forged signatures.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        let name = KeyName::new(name)?;
        if key.is_weak() {
            return Err(NoteError::WeakKey);
        }
        let key_hash = KeyHash::compute(&name, KEY_TYPE_ED25519, key.as_bytes());
        Ok(Self { name, key_hash, key })
    }

    /// Parses a verifier key string `<name>+<hash>+base64(0x01 || key)`,
    /// checking the stated key hash against the key so that a typo in a
    /// configuration file is caught at load time, not at the first note.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, key_hash, key) = parse_verifier_key(vkey, KEY_TYPE_ED25519)?;
        Ok(Self { name, key_hash, key })
    }

    /// The key name that signature lines by this key carry.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The key hash that signature lines by this key carry.
    pub fn key_hash(&self) -> KeyHash {
        self.key_hash
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks an Ed25519 signature (without the key hash prefix) over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), NoteError> {
        if verify_ed25519(&self.key, msg, sig) {
            Ok(())
        } else {
            Err(NoteError::InvalidSignature { name: self.name.clone(), key_hash: self.key_hash })
        }
    }
}

impl fmt::Display for Verifier {
    /// Writes the verifier key string, which [`Verifier::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_key_string(&self.name, self.key_hash, KEY_TYPE_ED25519, self.key.as_bytes()))
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({self})")
    }
}

impl FromStr for Verifier {
    type Err = NoteError;

    fn from_str(vkey: &str) -> Result<Self, Self::Err> {
        Self::parse(vkey)
    }
}

/// An Ed25519 note signing key with its name, as a log uses to sign its
/// checkpoints.
#[derive(Clone)]
pub struct Signer {
    name: KeyName,
    key_hash: KeyHash,
    key: SigningKey,
}

impl Signer {
    /// Makes a signer from a name and an Ed25519 signing key.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        let name = KeyName::new(name)?;
        let key_hash = KeyHash::compute(&name, KEY_TYPE_ED25519, key.verifying_key().as_bytes());
        Ok(Self { name, key_hash, key })
    }

    /// Parses a signer key string `PRIVATE+KEY+<name>+<hash>+base64(0x01 || seed)`,
    /// the format Go's `note.GenerateKey` writes, so keys move between tools.
    pub fn parse(skey: &str) -> Result<Self, NoteError> {
        let (name, key_hash, key_type, key) = parse_signer_key(skey)?;
        if key_type != KEY_TYPE_ED25519 {
            return Err(NoteError::BadSignerKey {
                detail: format!(
                    "key type byte is 0x{key_type:02x}, {}; expected {}",
                    key_type_name(key_type),
                    key_type_name(KEY_TYPE_ED25519)
                ),
            });
        }
        Ok(Self { name, key_hash, key })
    }

    /// Writes the signer key string that [`Signer::parse`] reads back. It
    /// contains the secret seed: store it like a private key and never log it.
    pub fn to_signer_key(&self) -> String {
        format!(
            "{PRIVATE_KEY_PREFIX}{}",
            format_key_string(&self.name, self.key_hash, KEY_TYPE_ED25519, self.key.as_bytes())
        )
    }

    /// The key name written in this signer's signature lines.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The key hash written in this signer's signature lines.
    pub fn key_hash(&self) -> KeyHash {
        self.key_hash
    }

    /// The verifier that checks this signer's signatures.
    pub fn verifier(&self) -> Verifier {
        Verifier { name: self.name.clone(), key_hash: self.key_hash, key: self.key.verifying_key() }
    }

    /// Signs a note text and returns the signature line for it. The text is
    /// checked first, because a signature over text that no note can carry
    /// (no final newline, control characters) would be useless.
    pub fn sign(&self, text: &str) -> Result<NoteSignature, NoteError> {
        check_note_text(text)?;
        Ok(NoteSignature {
            name: self.name.clone(),
            key_hash: self.key_hash,
            sig: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        })
    }
}

impl fmt::Debug for Signer {
    /// Shows the public identity only, so that a signer in a debug log never
    /// leaks its secret key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("name", &self.name).field("key_hash", &self.key_hash).finish_non_exhaustive()
    }
}

/// One signature line of a note: the key name, the key hash and the
/// signature bytes that follow the key hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    /// The key name on the line.
    pub name: KeyName,
    /// The first four bytes of the decoded signature.
    pub key_hash: KeyHash,
    /// The remaining bytes: an Ed25519 signature for a note key, or
    /// timestamp and signature for a cosignature.
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// Parses one signature line, without its final newline, as
    /// `— <name> <base64(key hash || signature)>`. Base64 must be canonical
    /// so that a parsed note prints back byte for byte.
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let bad = |detail: &str| NoteError::BadSignatureLine { line: quote(line), detail: detail.to_owned() };
        if let Some((_, c)) = line.char_indices().find(|&(_, c)| c < ' ') {
            return Err(NoteError::BadSignatureLine {
                line: quote(line),
                detail: format!("contains control character U+{:04X}", u32::from(c)),
            });
        }
        let rest = line
            .strip_prefix(SIGNATURE_LINE_PREFIX)
            .ok_or_else(|| bad("does not start with an em dash (U+2014) and a space"))?;
        let (name, sig_base64) =
            rest.split_once(' ').ok_or_else(|| bad("no space between the key name and the signature"))?;
        let name = KeyName::new(name).map_err(|e| bad(&e.to_string()))?;
        if sig_base64.is_empty() {
            return Err(bad("signature is empty"));
        }
        let decoded = BASE64.decode(sig_base64).map_err(|_| bad("signature is not canonical standard base64"))?;
        let Some((hash_bytes, sig)) = decoded.split_first_chunk::<4>() else {
            return Err(bad("signature is shorter than its 4-byte key hash"));
        };
        if sig.is_empty() {
            return Err(bad("signature holds a key hash but no signature bytes"));
        }
        Ok(Self { name, key_hash: KeyHash(u32::from_be_bytes(*hash_bytes)), sig: sig.to_vec() })
    }

    fn encoded_len(&self) -> usize {
        // Em dash (3 bytes), two spaces, name, base64 of 4 + n bytes, newline.
        3 + 2 + self.name.as_str().len() + (4 + self.sig.len()).div_ceil(3) * 4 + 1
    }
}

impl fmt::Display for NoteSignature {
    /// Writes the signature line without its final newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = Vec::with_capacity(4 + self.sig.len());
        bytes.extend_from_slice(&self.key_hash.to_bytes());
        bytes.extend_from_slice(&self.sig);
        write!(f, "{SIGNATURE_LINE_PREFIX}{} {}", self.name, BASE64.encode(bytes))
    }
}

/// A signed note as parsed, before any signature is checked. Its text must
/// not be trusted until [`Note::open`] (or [`open_checkpoint`]) has verified
/// a trusted signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    sigs: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note strictly: size and character rules, the blank
    /// line before the signatures, and every signature line. Nothing is
    /// verified here; signature lines from unknown keys are kept as they are.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { size: note.len(), limit: MAX_NOTE_BYTES });
        }
        check_note_chars(note)?;
        let split = note.rfind("\n\n").ok_or_else(|| NoteError::MalformedNote {
            detail: "no blank line separates the text from the signatures".to_owned(),
        })?;
        // The split point is an ASCII newline, so both slices fall on
        // character boundaries.
        let text = &note[..=split];
        let sig_block = &note[split + 2..];
        if sig_block.is_empty() {
            return Err(NoteError::MalformedNote { detail: "no signature lines follow the blank line".to_owned() });
        }
        let Some(sig_lines) = sig_block.strip_suffix('\n') else {
            return Err(NoteError::MalformedNote {
                detail: "the last signature line does not end with a newline".to_owned(),
            });
        };
        if sig_lines.split('\n').count() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { limit: MAX_SIGNATURES });
        }
        let sigs = sig_lines.split('\n').map(NoteSignature::parse_line).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { text: text.to_owned(), sigs })
    }

    /// Signs `text` with every signer and returns the note. The text must end
    /// with a newline and contain no control characters, so that the result
    /// parses back to the same text.
    pub fn sign(text: &str, signers: &[&Signer]) -> Result<Self, NoteError> {
        check_note_text(text)?;
        if signers.is_empty() {
            return Err(NoteError::MalformedNote { detail: "a signed note needs at least one signature".to_owned() });
        }
        if signers.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { limit: MAX_SIGNATURES });
        }
        let sigs = signers.iter().map(|signer| signer.sign(text)).collect::<Result<Vec<_>, _>>()?;
        let note = Self { text: text.to_owned(), sigs };
        note.check_size()?;
        Ok(note)
    }

    /// The note text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in the order they appear.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.sigs
    }

    /// Adds a signature line, replacing any earlier line with the same key
    /// name and key hash (as Go's `note.Sign` does), so that re-cosigning a
    /// checkpoint updates the witness's line instead of piling up copies.
    pub fn add_signature(&mut self, sig: NoteSignature) -> Result<(), NoteError> {
        let mut sigs = self.sigs.clone();
        sigs.retain(|s| !(s.name == sig.name && s.key_hash == sig.key_hash));
        sigs.push(sig);
        if sigs.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { limit: MAX_SIGNATURES });
        }
        let candidate = Self { text: self.text.clone(), sigs };
        candidate.check_size()?;
        *self = candidate;
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.text.len() + 1 + self.sigs.iter().map(NoteSignature::encoded_len).sum::<usize>()
    }

    fn check_size(&self) -> Result<(), NoteError> {
        let size = self.encoded_len();
        if size > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { size, limit: MAX_NOTE_BYTES });
        }
        Ok(())
    }

    /// Parses `note` and verifies it against the trusted `verifiers`, with
    /// the semantics of Go's `sumdb/note.Open`: lines from unknown keys are
    /// ignored, a line from a trusted key that fails to verify rejects the
    /// whole note, and at least one trusted signature is required.
    pub fn open(note: &str, verifiers: &[Verifier]) -> Result<VerifiedNote, NoteError> {
        let parsed = Self::parse(note)?;
        let known: Vec<TrustedKey<'_>> = verifiers.iter().map(TrustedKey::Note).collect();
        let checked = check_signatures(&parsed, &known)?;
        if checked.verified.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        let verified = checked
            .verified
            .iter()
            .filter_map(|v| known.get(v.key_index))
            .map(|key| (key.name().clone(), key.key_hash()))
            .collect();
        Ok(VerifiedNote { text: parsed.text, verified, unverified: checked.unverified })
    }
}

impl fmt::Display for Note {
    /// Writes the note exactly as [`Note::parse`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for sig in &self.sigs {
            writeln!(f, "{sig}")?;
        }
        Ok(())
    }
}

/// A note whose text carries at least one valid signature from a trusted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedNote {
    /// The note text, now backed by the signatures in `verified`.
    pub text: String,
    /// The trusted keys whose signatures verified, each once, in the order
    /// their first line appears.
    pub verified: Vec<(KeyName, KeyHash)>,
    /// Signature lines from keys that are not trusted, kept (without exact
    /// duplicates) so that a caller can pass them on or report them.
    pub unverified: Vec<NoteSignature>,
}

/// Adds signature lines, such as cosignatures returned by a witness, to a
/// signed note. `lines` holds zero or more complete lines, each ending in a
/// newline. A new line replaces an existing one with the same key name and
/// key hash. Nothing is verified here: verification happens when the note is
/// opened.
pub fn add_signature_lines(note: &str, lines: &str) -> Result<String, NoteError> {
    let mut parsed = Note::parse(note)?;
    if lines.is_empty() {
        return Ok(parsed.to_string());
    }
    let Some(body) = lines.strip_suffix('\n') else {
        return Err(NoteError::BadSignatureLine {
            line: quote(lines.rsplit('\n').next().unwrap_or(lines)),
            detail: "the last signature line does not end with a newline".to_owned(),
        });
    };
    if lines.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge { size: lines.len(), limit: MAX_NOTE_BYTES });
    }
    for line in body.split('\n') {
        parsed.add_signature(NoteSignature::parse_line(line)?)?;
    }
    Ok(parsed.to_string())
}

/// A key that `check_signatures` trusts, of either kind.
#[derive(Clone, Copy)]
enum TrustedKey<'a> {
    Note(&'a Verifier),
    Cosignature(&'a CosignatureVerifier),
}

impl TrustedKey<'_> {
    fn name(&self) -> &KeyName {
        match self {
            Self::Note(v) => &v.name,
            Self::Cosignature(v) => &v.name,
        }
    }

    fn key_hash(&self) -> KeyHash {
        match self {
            Self::Note(v) => v.key_hash,
            Self::Cosignature(v) => v.key_hash,
        }
    }

    fn same_key(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Note(a), Self::Note(b)) => a.key == b.key,
            (Self::Cosignature(a), Self::Cosignature(b)) => a.key == b.key,
            _ => false,
        }
    }

    /// Verifies one signature line's bytes over the note text, returning the
    /// cosignature timestamp for witness keys.
    fn verify(&self, text: &str, sig: &[u8]) -> Result<Option<u64>, NoteError> {
        match self {
            Self::Note(v) => v.verify(text.as_bytes(), sig).map(|()| None),
            Self::Cosignature(v) => v.verify(text, sig).map(Some),
        }
    }
}

/// A signature line that verified under a trusted key.
struct VerifiedLine {
    key_index: usize,
    timestamp: Option<u64>,
}

struct CheckedSignatures {
    verified: Vec<VerifiedLine>,
    unverified: Vec<NoteSignature>,
}

/// Sorts a note's signature lines into verified and unknown ones. Every line
/// from a trusted key is verified, even a repeat, because the specification
/// says a known key's bad signature should reject the note.
fn check_signatures(note: &Note, known: &[TrustedKey<'_>]) -> Result<CheckedSignatures, NoteError> {
    let mut by_id: HashMap<(&str, KeyHash), usize> = HashMap::new();
    for (index, key) in known.iter().enumerate() {
        match by_id.entry((key.name().as_str(), key.key_hash())) {
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
            Entry::Occupied(slot) => {
                let same = known.get(*slot.get()).is_some_and(|k| k.same_key(key));
                if !same {
                    return Err(NoteError::AmbiguousVerifier { name: key.name().clone(), key_hash: key.key_hash() });
                }
            }
        }
    }
    let mut verified: Vec<VerifiedLine> = Vec::new();
    let mut unverified: Vec<NoteSignature> = Vec::new();
    for sig in &note.sigs {
        let found =
            by_id.get(&(sig.name.as_str(), sig.key_hash)).and_then(|&index| known.get(index).map(|key| (index, key)));
        match found {
            None => {
                if !unverified.contains(sig) {
                    unverified.push(sig.clone());
                }
            }
            Some((key_index, key)) => {
                let timestamp = key.verify(&note.text, &sig.sig)?;
                if !verified.iter().any(|v| v.key_index == key_index) {
                    verified.push(VerifiedLine { key_index, timestamp });
                }
            }
        }
    }
    Ok(CheckedSignatures { verified, unverified })
}

/// A tlog checkpoint: the signed statement of a log's tree size and root hash
/// at one moment. The fields are public because a log builds checkpoints from
/// its own state; [`Checkpoint::check`] (called by every signing function)
/// refuses values that would not parse back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// The log's identity, conventionally a schema-less URL.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 6962 Merkle tree root hash at `size`.
    pub root: [u8; 32],
    /// Optional, opaque, non-empty extension lines after the root hash.
    pub extensions: Vec<String>,
}

fn bad_checkpoint(detail: String) -> NoteError {
    NoteError::BadCheckpoint { detail }
}

/// Checks one line of a checkpoint: non-empty, no newline or other control
/// character.
fn check_checkpoint_line(what: &str, line: &str) -> Result<(), NoteError> {
    if line.is_empty() {
        return Err(bad_checkpoint(format!("{what} is empty")));
    }
    if let Some((offset, c)) = line.char_indices().find(|&(_, c)| c < ' ') {
        return Err(bad_checkpoint(format!(
            "{what} contains control character U+{:04X} at byte {offset}",
            u32::from(c)
        )));
    }
    Ok(())
}

fn check_origin(origin: &str) -> Result<(), NoteError> {
    check_checkpoint_line("origin line", origin)?;
    if origin.chars().all(char::is_whitespace) {
        return Err(bad_checkpoint("origin line is only white space".to_owned()));
    }
    Ok(())
}

fn parse_tree_size(line: &str) -> Result<u64, NoteError> {
    if line.is_empty() {
        return Err(bad_checkpoint("tree size line is empty".to_owned()));
    }
    if !line.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_checkpoint(format!("tree size {:?} is not a decimal number", quote(line))));
    }
    if line.len() > 1 && line.starts_with('0') {
        return Err(bad_checkpoint(format!("tree size {:?} has a leading zero", quote(line))));
    }
    line.parse::<u64>().map_err(|_| bad_checkpoint(format!("tree size {:?} does not fit in 64 bits", quote(line))))
}

fn parse_root_hash(line: &str) -> Result<[u8; 32], NoteError> {
    let decoded = BASE64
        .decode(line)
        .map_err(|_| bad_checkpoint(format!("root hash {:?} is not canonical standard base64", quote(line))))?;
    decoded
        .as_slice()
        .try_into()
        .map_err(|_| bad_checkpoint(format!("root hash is {} bytes, expected 32", decoded.len())))
}

impl Checkpoint {
    /// Checks that the checkpoint can be written as a body that parses back
    /// to the same value: a non-blank origin and non-empty extension lines,
    /// none containing a newline or other control character.
    pub fn check(&self) -> Result<(), NoteError> {
        check_origin(&self.origin)?;
        for extension in &self.extensions {
            check_checkpoint_line("extension line", extension)?;
        }
        // Origin, size (at most 20 digits), root (44 base64 characters) and
        // extension lines, each with its newline.
        let size = self.origin.len() + 1 + 21 + 45 + self.extensions.iter().map(|e| e.len() + 1).sum::<usize>();
        if size > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { size, limit: MAX_NOTE_BYTES });
        }
        Ok(())
    }

    /// Writes the checkpoint body (the note text). The result is meaningful
    /// only for a checkpoint that passes [`Checkpoint::check`].
    pub fn to_body(&self) -> String {
        let mut body = format!("{}\n{}\n{}\n", self.origin, self.size, BASE64.encode(self.root));
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        body
    }

    /// Parses a checkpoint body strictly: at least three lines, each ending
    /// in a newline; a non-blank origin; a decimal size without leading zeros;
    /// a canonical base64 root of exactly 32 bytes; non-empty extension
    /// lines. A body that parses prints back byte for byte with
    /// [`Checkpoint::to_body`], so a witness may cosign either.
    pub fn parse_body(body: &str) -> Result<Self, NoteError> {
        if body.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { size: body.len(), limit: MAX_NOTE_BYTES });
        }
        let Some(lines) = body.strip_suffix('\n') else {
            return Err(bad_checkpoint("checkpoint body does not end with a newline".to_owned()));
        };
        let mut lines = lines.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(bad_checkpoint(
                "checkpoint needs at least three lines: origin, tree size and root hash".to_owned(),
            ));
        };
        check_origin(origin)?;
        check_checkpoint_line("tree size line", size)?;
        let size = parse_tree_size(size)?;
        check_checkpoint_line("root hash line", root)?;
        let root = parse_root_hash(root)?;
        let extensions = lines
            .map(|extension| check_checkpoint_line("extension line", extension).map(|()| extension.to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { origin: origin.to_owned(), size, root, extensions })
    }
}

/// Signs a checkpoint with the log's key and returns the full signed note
/// text, ready to publish or to send to witnesses.
pub fn sign_checkpoint(checkpoint: &Checkpoint, signer: &Signer) -> Result<String, NoteError> {
    checkpoint.check()?;
    Ok(Note::sign(&checkpoint.to_body(), &[signer])?.to_string())
}

/// A checkpoint whose log signature, and any cosignatures from trusted
/// witnesses, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedCheckpoint {
    /// The parsed checkpoint. Its `origin` is whatever the log signed:
    /// callers that trust one key for several logs must compare it with the
    /// origin they expect.
    pub checkpoint: Checkpoint,
    /// Always true: [`open_checkpoint`] fails without the log's signature.
    /// It is kept so that a serialised result states it explicitly.
    pub log_signed: bool,
    /// The trusted witnesses whose cosignatures verified, each once, with
    /// the time they claim to have cosigned (POSIX seconds). The caller
    /// decides whether a timestamp is too old or in the future.
    pub cosigners: Vec<(KeyName, u64)>,
    /// Signature lines from keys that are neither the log nor a trusted
    /// witness.
    pub unverified: Vec<NoteSignature>,
}

/// Opens a signed checkpoint: the log's own signature must be present and
/// valid, every line from the log or a trusted witness must verify, and lines
/// from other keys are ignored. Signatures are checked before the body is
/// parsed, because unsigned text must not be interpreted.
pub fn open_checkpoint(
    note: &str,
    log_verifier: &Verifier,
    witnesses: &[CosignatureVerifier],
) -> Result<OpenedCheckpoint, NoteError> {
    let parsed = Note::parse(note)?;
    let mut known = Vec::with_capacity(1 + witnesses.len());
    known.push(TrustedKey::Note(log_verifier));
    known.extend(witnesses.iter().map(TrustedKey::Cosignature));
    let checked = check_signatures(&parsed, &known)?;
    // The log is the first trusted key, at index 0.
    if !checked.verified.iter().any(|v| v.key_index == 0) {
        return Err(NoteError::MissingLogSignature {
            name: log_verifier.name.clone(),
            key_hash: log_verifier.key_hash,
        });
    }
    let checkpoint = Checkpoint::parse_body(&parsed.text)?;
    let cosigners = checked
        .verified
        .iter()
        .filter(|v| v.key_index != 0)
        .filter_map(|v| {
            let key = known.get(v.key_index)?;
            Some((key.name().clone(), v.timestamp?))
        })
        .collect();
    Ok(OpenedCheckpoint { checkpoint, log_signed: true, cosigners, unverified: checked.unverified })
}

/// The exact message an Ed25519 `cosignature/v1` signs.
fn cosignature_message(body: &str, timestamp: u64) -> String {
    format!("{COSIGNATURE_HEADER}time {timestamp}\n{body}")
}

/// A trusted witness key (type 0x04), used to check `cosignature/v1` lines.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: KeyName,
    key_hash: KeyHash,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Makes a witness verifier from a name and a raw public key, refusing
    /// weak keys.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        let name = KeyName::new(name)?;
        if key.is_weak() {
            return Err(NoteError::WeakKey);
        }
        let key_hash = KeyHash::compute(&name, KEY_TYPE_COSIGNATURE_V1, key.as_bytes());
        Ok(Self { name, key_hash, key })
    }

    /// Parses a witness verifier key `<name>+<hash>+base64(0x04 || key)`.
    /// A type 0x01 note key is refused with a message saying so, because its
    /// key hash would never match a cosignature line.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, key_hash, key) = parse_verifier_key(vkey, KEY_TYPE_COSIGNATURE_V1)?;
        Ok(Self { name, key_hash, key })
    }

    /// The witness's key name.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The witness's key hash (computed with type byte 0x04).
    pub fn key_hash(&self) -> KeyHash {
        self.key_hash
    }

    /// The witness's Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks a cosignature's bytes (timestamp and signature, without the key
    /// hash) over a checkpoint body and returns the timestamp it carries.
    pub fn verify(&self, checkpoint_body: &str, sig: &[u8]) -> Result<u64, NoteError> {
        let invalid = || NoteError::InvalidSignature { name: self.name.clone(), key_hash: self.key_hash };
        if sig.len() != COSIGNATURE_LEN {
            return Err(invalid());
        }
        let Some((timestamp, signature)) = sig.split_first_chunk::<8>() else {
            return Err(invalid());
        };
        let timestamp = u64::from_be_bytes(*timestamp);
        if timestamp > MAX_COSIGNATURE_TIMESTAMP {
            return Err(invalid());
        }
        let message = cosignature_message(checkpoint_body, timestamp);
        if verify_ed25519(&self.key, message.as_bytes(), signature) { Ok(timestamp) } else { Err(invalid()) }
    }
}

impl fmt::Display for CosignatureVerifier {
    /// Writes the witness verifier key string, which
    /// [`CosignatureVerifier::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_key_string(&self.name, self.key_hash, KEY_TYPE_COSIGNATURE_V1, self.key.as_bytes()))
    }
}

impl fmt::Debug for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignatureVerifier({self})")
    }
}

impl FromStr for CosignatureVerifier {
    type Err = NoteError;

    fn from_str(vkey: &str) -> Result<Self, Self::Err> {
        Self::parse(vkey)
    }
}

/// A witness's Ed25519 signing key, producing `cosignature/v1` lines.
#[derive(Clone)]
pub struct Cosigner {
    name: KeyName,
    key_hash: KeyHash,
    key: SigningKey,
}

impl Cosigner {
    /// Makes a cosigner from a name and an Ed25519 signing key.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        let name = KeyName::new(name)?;
        let key_hash = KeyHash::compute(&name, KEY_TYPE_COSIGNATURE_V1, key.verifying_key().as_bytes());
        Ok(Self { name, key_hash, key })
    }

    /// Parses a signer key string. Type 0x04 keys are ours; type 0x01 keys
    /// (as written by Go's `note.GenerateKey`, which transparency-dev witness
    /// tooling reuses for cosigning) are accepted too, their stated hash
    /// checked as a note key and the cosignature key hash derived afresh.
    pub fn parse(skey: &str) -> Result<Self, NoteError> {
        let (name, _, key_type, key) = parse_signer_key(skey)?;
        match key_type {
            KEY_TYPE_COSIGNATURE_V1 | KEY_TYPE_ED25519 => Self::new(name.as_str(), key),
            other => Err(NoteError::BadSignerKey {
                detail: format!(
                    "key type byte is 0x{other:02x}, {}; expected {}",
                    key_type_name(other),
                    key_type_name(KEY_TYPE_COSIGNATURE_V1)
                ),
            }),
        }
    }

    /// Writes the signer key string with type byte 0x04. It contains the
    /// secret seed: store it like a private key and never log it.
    pub fn to_signer_key(&self) -> String {
        format!(
            "{PRIVATE_KEY_PREFIX}{}",
            format_key_string(&self.name, self.key_hash, KEY_TYPE_COSIGNATURE_V1, self.key.as_bytes())
        )
    }

    /// The witness's key name.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The witness's key hash (computed with type byte 0x04).
    pub fn key_hash(&self) -> KeyHash {
        self.key_hash
    }

    /// The verifier that checks this witness's cosignatures.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier { name: self.name.clone(), key_hash: self.key_hash, key: self.key.verifying_key() }
    }

    /// Cosigns a checkpoint as of `timestamp` (POSIX seconds) and returns the
    /// signature line; its `to_string()` plus a newline is what a witness
    /// sends back to the log. The caller is responsible for having checked
    /// consistency with the last checkpoint it cosigned: this function only
    /// does the cryptography.
    pub fn cosign(&self, checkpoint: &Checkpoint, timestamp: u64) -> Result<NoteSignature, NoteError> {
        checkpoint.check()?;
        if timestamp > MAX_COSIGNATURE_TIMESTAMP {
            return Err(NoteError::TimestampOutOfRange { timestamp });
        }
        let message = cosignature_message(&checkpoint.to_body(), timestamp);
        let signature = self.key.sign(message.as_bytes());
        let mut sig = Vec::with_capacity(COSIGNATURE_LEN);
        sig.extend_from_slice(&timestamp.to_be_bytes());
        sig.extend_from_slice(&signature.to_bytes());
        Ok(NoteSignature { name: self.name.clone(), key_hash: self.key_hash, sig })
    }
}

impl fmt::Debug for Cosigner {
    /// Shows the public identity only, so that the secret key never reaches
    /// a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cosigner").field("name", &self.name).field("key_hash", &self.key_hash).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The signed-note example shared by every qtrace crate.
    const VECTOR: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/signed-note.txt"));

    /// The checkpoint with a cosignature from the tlog-cosignature
    /// specification (we do not have the keys, only the bytes).
    const SPEC_COSIGNED_CHECKPOINT: &str = "example.com/behind-the-sofa\n\
        20852163\n\
        CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
        \n\
        \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
        \u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

    /// The note example from the signed-note specification, whose text
    /// contains a blank line.
    const SPEC_NOTE: &str = "Ognuno sta solo sul cuor della terra\n\
        trafitto da un raggio di sole:\n\
        \n\
        ed è subito sera.\n\
        \n\
        \u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

    fn vector() -> (String, String) {
        let mut vkey = None;
        let mut in_note = false;
        let mut note = String::new();
        for line in VECTOR.lines() {
            match line {
                "----- BEGIN NOTE -----" => in_note = true,
                "----- END NOTE -----" => in_note = false,
                _ if in_note => {
                    note.push_str(line);
                    note.push('\n');
                }
                _ if line.starts_with('#') || line.trim().is_empty() => {}
                _ => {
                    vkey.get_or_insert(line.to_owned());
                }
            }
        }
        (vkey.expect("vector file has a verifier key line"), note)
    }

    fn signer(seed: u8, name: &str) -> Signer {
        Signer::new(name, SigningKey::from_bytes(&[seed; 32])).expect("valid test signer")
    }

    fn cosigner(seed: u8, name: &str) -> Cosigner {
        Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).expect("valid test cosigner")
    }

    /// Remembering successes must never turn a wrong triple into a pass:
    /// each row verifies after the genuine triple has been remembered.
    #[test]
    fn remembered_verifications_answer_only_their_own_triple() {
        use ed25519_dalek::Signer as _;
        let key = SigningKey::from_bytes(&[41; 32]);
        let other = SigningKey::from_bytes(&[42; 32]);
        let msg = b"example.com/qtrace/log1\n7\nroot\n".as_slice();
        let sig = key.sign(msg).to_bytes();
        let mut flipped = sig;
        flipped[10] ^= 1;
        let public = key.verifying_key();
        assert!(verify_ed25519(&public, msg, &sig), "the genuine triple verifies");
        /// (case, key, message, signature, verifies)
        type Row<'a> = (&'a str, VerifyingKey, &'a [u8], &'a [u8], bool);
        let rows: &[Row] = &[
            ("genuine, answered from memory", public, msg, &sig, true),
            ("another key", other.verifying_key(), msg, &sig, false),
            ("another message", public, b"example.com/qtrace/log1\n8\nroot\n", &sig, false),
            ("a message one byte shorter", public, &msg[..msg.len() - 1], &sig, false),
            ("a flipped signature bit", public, msg, &flipped, false),
            ("a truncated signature", public, msg, &sig[..63], false),
        ];
        for _ in 0..2 {
            for (case, key, msg, sig, want) in rows {
                assert_eq!(verify_ed25519(key, msg, sig), *want, "{case}");
            }
        }
        // Failures are not remembered, so a failed row is not in the ring.
        let flipped_digest = RecentlyVerified::digest(&public, msg, &flipped);
        assert!(!RECENTLY_VERIFIED.holds(&flipped_digest));
    }

    fn checkpoint(size: u64) -> Checkpoint {
        Checkpoint { origin: "example.com/qtrace/log1".to_owned(), size, root: [size as u8; 32], extensions: vec![] }
    }

    /// The variant name of an error, so that tables can state the expected
    /// failure without spelling out its fields.
    fn kind(error: &NoteError) -> &'static str {
        match error {
            NoteError::TooLarge { .. } => "TooLarge",
            NoteError::MalformedNote { .. } => "MalformedNote",
            NoteError::BadSignatureLine { .. } => "BadSignatureLine",
            NoteError::TooManySignatures { .. } => "TooManySignatures",
            NoteError::BadKeyName { .. } => "BadKeyName",
            NoteError::BadVerifierKey { .. } => "BadVerifierKey",
            NoteError::BadSignerKey { .. } => "BadSignerKey",
            NoteError::WeakKey => "WeakKey",
            NoteError::AmbiguousVerifier { .. } => "AmbiguousVerifier",
            NoteError::NoKnownSignature => "NoKnownSignature",
            NoteError::InvalidSignature { .. } => "InvalidSignature",
            NoteError::MissingLogSignature { .. } => "MissingLogSignature",
            NoteError::BadCheckpoint { .. } => "BadCheckpoint",
            NoteError::TimestampOutOfRange { .. } => "TimestampOutOfRange",
        }
    }

    /// Checks a table of inputs against "ok" or the expected error kind.
    fn check_table<T: fmt::Debug>(parse: impl Fn(&str) -> Result<T, NoteError>, cases: &[(&str, &str)]) {
        for (input, expect) in cases {
            let got = match parse(input) {
                Ok(_) => "ok",
                Err(e) => {
                    // Every message must be non-empty and say something.
                    assert!(!e.to_string().is_empty());
                    kind(&e)
                }
            };
            assert_eq!(got, *expect, "input {input:?}: {:?}", parse(input));
        }
    }

    fn line_with(name: &str, bytes: &[u8]) -> String {
        format!("\u{2014} {name} {}", BASE64.encode(bytes))
    }

    #[test]
    fn vector_verifies() {
        let (vkey, note) = vector();
        let verifier = Verifier::parse(&vkey).expect("vector key parses");
        assert_eq!(verifier.to_string(), vkey);
        assert_eq!(verifier.name().as_str(), "example.com/foo");
        assert_eq!(verifier.key_hash(), KeyHash(0x530d_903a));
        let opened = Note::open(&note, std::slice::from_ref(&verifier)).expect("vector verifies");
        assert_eq!(opened.text, "This is an example message.\n");
        assert_eq!(opened.verified, vec![(verifier.name().clone(), verifier.key_hash())]);
        assert!(opened.unverified.is_empty());
        assert_eq!(Note::parse(&note).expect("parses").to_string(), note);
    }

    #[test]
    fn vector_with_any_changed_text_byte_fails() {
        let (vkey, note) = vector();
        let verifier = Verifier::parse(&vkey).expect("vector key parses");
        let text_len = "This is an example message.\n".len();
        for index in 0..text_len {
            let mut bytes = note.clone().into_bytes();
            bytes[index] = if bytes[index] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).expect("ASCII edit keeps UTF-8");
            let result = Note::open(&changed, std::slice::from_ref(&verifier));
            assert!(result.is_err(), "byte {index} changed but note opened");
        }
    }

    #[test]
    fn vector_with_any_changed_signature_char_fails() {
        let (vkey, note) = vector();
        let verifier = Verifier::parse(&vkey).expect("vector key parses");
        let sig_start = note.rfind(' ').expect("signature line has a space") + 1;
        for index in sig_start..note.len() - 1 {
            let mut bytes = note.clone().into_bytes();
            bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).expect("ASCII edit keeps UTF-8");
            let error =
                Note::open(&changed, std::slice::from_ref(&verifier)).expect_err("changed signature must not verify");
            assert!(
                matches!(kind(&error), "InvalidSignature" | "NoKnownSignature" | "BadSignatureLine"),
                "byte {index}: {error}"
            );
        }
    }

    #[test]
    fn vector_with_unknown_key_fails() {
        let (_, note) = vector();
        let other = signer(7, "example.com/foo").verifier();
        assert_eq!(Note::open(&note, &[other]), Err(NoteError::NoKnownSignature));
        assert_eq!(Note::open(&note, &[]), Err(NoteError::NoKnownSignature));
    }

    #[test]
    fn vector_without_signature_line_fails() {
        let (vkey, note) = vector();
        let verifier = Verifier::parse(&vkey).expect("vector key parses");
        for stripped in ["This is an example message.\n\n", "This is an example message.\n"] {
            let error = Note::open(stripped, std::slice::from_ref(&verifier)).expect_err("no signature");
            assert_eq!(kind(&error), "MalformedNote", "{stripped:?}");
        }
        assert!(note.starts_with("This is an example message.\n\n"));
    }

    #[test]
    fn spec_examples_parse() {
        let note = Note::parse(SPEC_NOTE).expect("spec note parses");
        assert_eq!(
            note.text(),
            "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
        );
        assert_eq!(note.to_string(), SPEC_NOTE);

        let note = Note::parse(SPEC_COSIGNED_CHECKPOINT).expect("spec checkpoint parses");
        let checkpoint = Checkpoint::parse_body(note.text()).expect("spec body parses");
        assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
        assert_eq!(checkpoint.size, 20_852_163);
        assert_eq!(checkpoint.to_body(), note.text());
        let [log_sig, witness_sig] = note.signatures() else {
            panic!("expected two signatures, got {:?}", note.signatures());
        };
        assert_eq!(log_sig.sig.len(), ED25519_SIGNATURE_LEN);
        assert_eq!(witness_sig.name.as_str(), "witness.example.com/w1");
        assert_eq!(witness_sig.key_hash, KeyHash(0x8d66_cf3f));
        assert_eq!(witness_sig.sig.len(), COSIGNATURE_LEN);
        let timestamp = witness_sig.sig.first_chunk::<8>().map(|t| u64::from_be_bytes(*t));
        // The specification's example message says "time 1679315147".
        assert_eq!(timestamp, Some(1_679_315_147));
    }

    #[test]
    fn note_parse_table() {
        let sig68 = BASE64.encode([7u8; 68]);
        let one = format!("\u{2014} a {sig68}\n");
        let many = |n: usize| one.repeat(n);
        let cases: Vec<(String, &str)> = vec![
            (format!("text\n\n{one}"), "ok"),
            (format!("text\n\nmore\n\n{one}{one}"), "ok"),
            (format!("\n\n{one}"), "ok"),
            // The last blank line splits, so an earlier signature-like line is text.
            (format!("text\n\n{one}\n{one}"), "ok"),
            (format!("text\n\n{}", many(MAX_SIGNATURES)), "ok"),
            (String::new(), "MalformedNote"),
            ("text\n".to_owned(), "MalformedNote"),
            ("text\n\n".to_owned(), "MalformedNote"),
            (format!("text\n\n{one}\n"), "MalformedNote"),
            (format!("text\n\n{}", one.trim_end()), "MalformedNote"),
            (format!("te\u{7}xt\n\n{one}"), "MalformedNote"),
            (format!("te\txt\n\n{one}"), "MalformedNote"),
            (format!("text\r\n\r\n{one}"), "MalformedNote"),
            (format!("text\n\n- a {sig68}\n"), "BadSignatureLine"),
            (format!("text\n\n\u{2014}a {sig68}\n"), "BadSignatureLine"),
            ("text\n\n\u{2014} a\n".to_owned(), "BadSignatureLine"),
            ("text\n\n\u{2014} a \n".to_owned(), "BadSignatureLine"),
            (format!("text\n\n\u{2014}  {sig68}\n"), "BadSignatureLine"),
            (format!("text\n\n\u{2014} a+b {sig68}\n"), "BadSignatureLine"),
            (format!("text\n\n\u{2014} a\u{a0}b {sig68}\n"), "BadSignatureLine"),
            (format!("text\n\n\u{2014} a  {sig68}\n"), "BadSignatureLine"),
            (format!("text\n\n\u{2014} a {sig68} \n"), "BadSignatureLine"),
            ("text\n\n\u{2014} a !!!!\n".to_owned(), "BadSignatureLine"),
            // Four bytes is a key hash with no signature.
            ("text\n\n\u{2014} a AAAAAA==\n".to_owned(), "BadSignatureLine"),
            ("text\n\n\u{2014} a AAAA\n".to_owned(), "BadSignatureLine"),
            // Five bytes but with non-zero trailing bits or missing padding.
            ("text\n\n\u{2014} a AAAAAAB=\n".to_owned(), "BadSignatureLine"),
            ("text\n\n\u{2014} a AAAAAAA\n".to_owned(), "BadSignatureLine"),
            (format!("text\n\n{}", many(MAX_SIGNATURES + 1)), "TooManySignatures"),
            (format!("{}\n\n{one}", "a".repeat(MAX_NOTE_BYTES)), "TooLarge"),
        ];
        let cases: Vec<(&str, &str)> = cases.iter().map(|(i, e)| (i.as_str(), *e)).collect();
        check_table(Note::parse, &cases);
    }

    #[test]
    fn parsed_notes_print_back() {
        let sig68 = BASE64.encode([9u8; 68]);
        let note = format!("a\n\nb\n\n\u{2014} x {sig68}\n\u{2014} y {sig68}\n");
        let parsed = Note::parse(&note).expect("parses");
        assert_eq!(parsed.text(), "a\n\nb\n");
        assert_eq!(parsed.signatures().len(), 2);
        assert_eq!(parsed.to_string(), note);
    }

    #[test]
    fn sign_parse_open_round_trip() {
        let alice = signer(1, "alice.example/key");
        let bob = signer(2, "bob.example/key");
        let text = "first line\n\nafter a blank line\n\n";
        let note = Note::sign(text, &[&alice, &bob]).expect("signs").to_string();
        let parsed = Note::parse(&note).expect("parses");
        assert_eq!(parsed.text(), text);

        let opened = Note::open(&note, &[alice.verifier()]).expect("opens with alice");
        assert_eq!(opened.text, text);
        assert_eq!(opened.verified, vec![(alice.name().clone(), alice.key_hash())]);
        assert_eq!(opened.unverified.len(), 1);
        assert_eq!(opened.unverified[0].name, *bob.name());

        let opened = Note::open(&note, &[bob.verifier(), alice.verifier()]).expect("opens");
        assert_eq!(
            opened.verified,
            vec![(alice.name().clone(), alice.key_hash()), (bob.name().clone(), bob.key_hash())]
        );
        assert!(opened.unverified.is_empty());

        let stranger = signer(3, "alice.example/key").verifier();
        assert_eq!(Note::open(&note, &[stranger]), Err(NoteError::NoKnownSignature));
    }

    #[test]
    fn sign_refuses_bad_text_and_signer_lists() {
        let alice = signer(1, "alice");
        let cases = [
            ("no newline", "MalformedNote"),
            ("bell\u{7}\n", "MalformedNote"),
            ("tab\t\n", "MalformedNote"),
            ("fine\n", "ok"),
        ];
        check_table(|text| Note::sign(text, &[&alice]), &cases);
        assert_eq!(Note::sign("text\n", &[]).map_err(|e| kind(&e)), Err("MalformedNote"));
        let too_many = vec![&alice; MAX_SIGNATURES + 1];
        assert_eq!(Note::sign("text\n", &too_many).map_err(|e| kind(&e)), Err("TooManySignatures"));
        let huge = format!("{}\n", "a".repeat(MAX_NOTE_BYTES));
        assert_eq!(Note::sign(&huge, &[&alice]).map_err(|e| kind(&e)), Err("TooLarge"));
    }

    #[test]
    fn known_key_with_bad_signature_rejects_note() {
        let alice = signer(1, "alice");
        let note = Note::sign("text\n", &[&alice]).expect("signs").to_string();
        let mut bad = alice.key_hash().to_bytes().to_vec();
        bad.extend_from_slice(&[0u8; 64]);
        let with_bad_line = format!("{note}{}\n", line_with("alice", &bad));
        assert_eq!(
            Note::open(&with_bad_line, &[alice.verifier()]),
            Err(NoteError::InvalidSignature { name: alice.name().clone(), key_hash: alice.key_hash() })
        );
        // A signature of the wrong length from a known key is also invalid.
        let short = format!("{note}{}\n", line_with("alice", &[&alice.key_hash().to_bytes()[..], &[1u8; 10]].concat()));
        assert_eq!(Note::open(&short, &[alice.verifier()]).map_err(|e| kind(&e)), Err("InvalidSignature"));
    }

    #[test]
    fn lines_matching_only_name_or_only_hash_are_unknown() {
        let alice = signer(1, "alice");
        let note = Note::sign("text\n", &[&alice]).expect("signs").to_string();
        let mut other_hash = (alice.key_hash().0 ^ 1).to_be_bytes().to_vec();
        other_hash.extend_from_slice(&[0u8; 64]);
        let mut same_hash = alice.key_hash().to_bytes().to_vec();
        same_hash.extend_from_slice(&[0u8; 64]);
        let extra = format!(
            "{}\n{}\n{}\n",
            line_with("alice", &other_hash),
            line_with("mallory", &same_hash),
            line_with("mallory", &same_hash),
        );
        let opened = Note::open(&format!("{note}{extra}"), &[alice.verifier()]).expect("unknown lines are ignored");
        assert_eq!(opened.verified.len(), 1);
        // The repeated mallory line is kept once.
        assert_eq!(opened.unverified.len(), 2);

        let only_unknown = format!("text\n\n{extra}");
        assert_eq!(Note::open(&only_unknown, &[alice.verifier()]), Err(NoteError::NoKnownSignature));
    }

    #[test]
    fn repeated_signatures_and_verifiers_count_once() {
        let alice = signer(1, "alice");
        let note = Note::sign("text\n", &[&alice, &alice]).expect("signs").to_string();
        let opened = Note::open(&note, &[alice.verifier(), alice.verifier()]).expect("opens");
        assert_eq!(opened.verified.len(), 1);
    }

    #[test]
    fn different_keys_with_same_name_and_hash_are_ambiguous() {
        let alice = signer(1, "alice");
        let impostor =
            Verifier { name: alice.name().clone(), key_hash: alice.key_hash(), key: signer(2, "alice").verifier().key };
        let note = Note::sign("text\n", &[&alice]).expect("signs").to_string();
        assert_eq!(Note::open(&note, &[alice.verifier(), impostor]).map_err(|e| kind(&e)), Err("AmbiguousVerifier"));
    }

    #[test]
    fn malleated_signature_is_rejected() {
        // Adding the group order L to S gives a signature that lax verifiers
        // accept; verify_strict must not.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let alice = signer(1, "alice");
        let sig = alice.sign("text\n").expect("signs");
        let mut malleated = sig.sig.clone();
        let mut carry = 0u16;
        for (byte, l) in malleated[32..].iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        assert!(alice.verifier().verify(b"text\n", &sig.sig).is_ok());
        assert_eq!(alice.verifier().verify(b"text\n", &malleated).map_err(|e| kind(&e)), Err("InvalidSignature"));
    }

    #[test]
    fn verifier_key_table() {
        let alice = signer(1, "example.com/alice");
        let good = alice.verifier().to_string();
        let witness = cosigner(1, "example.com/alice").verifier().to_string();
        let (_, rest) = good.split_once('+').expect("has +");
        let (_, key64) = rest.split_once('+').expect("has two +");
        let weak_bytes = {
            let mut b = [0u8; 32];
            b[0] = 1; // The identity point, of order 1.
            b
        };
        let weak_name = KeyName::new("weak").expect("valid");
        let weak = format_key_string(
            &weak_name,
            KeyHash::compute(&weak_name, KEY_TYPE_ED25519, &weak_bytes),
            KEY_TYPE_ED25519,
            &weak_bytes,
        );
        let short_key = format!("a+00000000+{}", BASE64.encode([1u8; 32]));
        let unknown_type = format!("a+00000000+{}", BASE64.encode([2u8; 33]));
        let cases = vec![
            (good.clone(), "ok"),
            (format!("example.com/bob+{rest}"), "BadVerifierKey"),
            (format!("example.com/alice+00000000+{key64}"), "BadVerifierKey"),
            (format!("example.com/alice+0000000+{key64}"), "BadVerifierKey"),
            (format!("example.com/alice+zzzzzzzz+{key64}"), "BadVerifierKey"),
            (format!("example.com/alice++1234567+{key64}"), "BadVerifierKey"),
            (format!("exa mple+{rest}"), "BadVerifierKey"),
            (format!("+{rest}"), "BadVerifierKey"),
            ("example.com/alice".to_owned(), "BadVerifierKey"),
            ("a+12345678".to_owned(), "BadVerifierKey"),
            ("a+12345678+".to_owned(), "BadVerifierKey"),
            ("a+12345678+!!!!".to_owned(), "BadVerifierKey"),
            (short_key, "BadVerifierKey"),
            (unknown_type, "BadVerifierKey"),
            (witness, "BadVerifierKey"),
            (weak, "WeakKey"),
            (String::new(), "BadVerifierKey"),
        ];
        let cases: Vec<(&str, &str)> = cases.iter().map(|(i, e)| (i.as_str(), *e)).collect();
        check_table(Verifier::parse, &cases);
        // Upper-case hex in the hash is accepted, as Go does.
        let upper = good.replacen(&alice.key_hash().to_string(), &alice.key_hash().to_string().to_uppercase(), 1);
        assert_eq!(Verifier::parse(&upper), Ok(alice.verifier()));
    }

    #[test]
    fn weak_keys_are_refused_everywhere() {
        let mut bytes = [0u8; 32];
        bytes[0] = 1;
        let weak = VerifyingKey::from_bytes(&bytes).expect("identity decodes");
        assert_eq!(Verifier::new("weak", weak), Err(NoteError::WeakKey));
        assert_eq!(CosignatureVerifier::new("weak", weak), Err(NoteError::WeakKey));
    }

    #[test]
    fn signer_keys_round_trip_and_never_leak() {
        let alice = signer(42, "example.com/alice");
        let skey = alice.to_signer_key();
        assert!(skey.starts_with("PRIVATE+KEY+example.com/alice+"));
        let parsed = Signer::parse(&skey).expect("parses");
        assert_eq!(parsed.verifier(), alice.verifier());
        let seed64 = BASE64.encode([[KEY_TYPE_ED25519].as_slice(), &[42u8; 32]].concat());
        assert!(skey.ends_with(&seed64));
        assert!(!format!("{alice:?}").contains(&seed64));

        let wrong_hash = skey.replacen(&alice.key_hash().to_string(), "00000000", 1);
        let cases = [
            (skey.as_str(), "ok"),
            (wrong_hash.as_str(), "BadSignerKey"),
            (&skey["PRIVATE+".len()..], "BadSignerKey"),
            (&skey[..skey.len() - 4], "BadSignerKey"),
            ("PRIVATE+KEY+", "BadSignerKey"),
            ("", "BadSignerKey"),
        ];
        check_table(Signer::parse, &cases);
        for (input, _) in &cases[1..] {
            if let Err(error) = Signer::parse(input) {
                assert!(!error.to_string().contains(&seed64[4..20]), "{error}");
            }
        }

        // A witness key is not a note key.
        let witness = cosigner(42, "example.com/alice");
        assert_eq!(Signer::parse(&witness.to_signer_key()).err().map(|e| kind(&e)), Some("BadSignerKey"));
    }

    #[test]
    fn cosigner_keys_round_trip() {
        let witness = cosigner(5, "witness.example/w1");
        let parsed = Cosigner::parse(&witness.to_signer_key()).expect("parses");
        assert_eq!(parsed.verifier(), witness.verifier());
        let vkey = witness.verifier().to_string();
        assert_eq!(CosignatureVerifier::parse(&vkey), Ok(witness.verifier()));
        assert!(!format!("{witness:?}").contains(&BASE64.encode([5u8; 32])[..20]));

        // A Go-style 0x01 signer key is accepted and given the 0x04 key hash.
        let as_note_key = signer(5, "witness.example/w1").to_signer_key();
        let from_note_key = Cosigner::parse(&as_note_key).expect("parses");
        assert_eq!(from_note_key.verifier(), witness.verifier());
        assert_ne!(from_note_key.key_hash(), signer(5, "witness.example/w1").key_hash());

        // A 0x01 verifier key is refused for a witness, saying why.
        let error =
            CosignatureVerifier::parse(&signer(5, "w").verifier().to_string()).expect_err("type 0x01 is refused");
        assert!(error.to_string().contains("0x01"), "{error}");
    }

    #[test]
    fn checkpoint_body_table() {
        let root = BASE64.encode([3u8; 32]);
        let cases: Vec<(String, &str)> = vec![
            (format!("example.com/log\n0\n{root}\n"), "ok"),
            (format!("example.com/log\n1\n{root}\n"), "ok"),
            (format!("example.com/log\n18446744073709551615\n{root}\n"), "ok"),
            (format!("example.com/log\n20852163\n{root}\next one\next+two\n"), "ok"),
            (format!("origin with spaces\n5\n{root}\n"), "ok"),
            (format!("example.com/log\n1\n{root}"), "BadCheckpoint"),
            (format!("example.com/log\n1\n{root}\n\n"), "BadCheckpoint"),
            (format!("example.com/log\n1\n{root}\n\next\n"), "BadCheckpoint"),
            ("example.com/log\n1\n".to_owned(), "BadCheckpoint"),
            ("example.com/log\n".to_owned(), "BadCheckpoint"),
            (String::new(), "BadCheckpoint"),
            ("\n".to_owned(), "BadCheckpoint"),
            (format!("\n1\n{root}\n"), "BadCheckpoint"),
            (format!("   \n1\n{root}\n"), "BadCheckpoint"),
            (format!("log\tone\n1\n{root}\n"), "BadCheckpoint"),
            (format!("log\r\n1\n{root}\n"), "BadCheckpoint"),
            (format!("log\n\n{root}\n"), "BadCheckpoint"),
            (format!("log\n01\n{root}\n"), "BadCheckpoint"),
            (format!("log\n00\n{root}\n"), "BadCheckpoint"),
            (format!("log\n+1\n{root}\n"), "BadCheckpoint"),
            (format!("log\n-1\n{root}\n"), "BadCheckpoint"),
            (format!("log\n 1\n{root}\n"), "BadCheckpoint"),
            (format!("log\n1 \n{root}\n"), "BadCheckpoint"),
            (format!("log\n0x10\n{root}\n"), "BadCheckpoint"),
            (format!("log\n18446744073709551616\n{root}\n"), "BadCheckpoint"),
            ("log\n1\n\n".to_owned(), "BadCheckpoint"),
            (format!("log\n1\n{}\n", BASE64.encode([3u8; 31])), "BadCheckpoint"),
            (format!("log\n1\n{}\n", BASE64.encode([3u8; 33])), "BadCheckpoint"),
            (format!("log\n1\n{}\n", root.trim_end_matches('=')), "BadCheckpoint"),
            (format!("log\n1\n{}\n", root.replace('=', "E")), "BadCheckpoint"),
            (format!("log\n1\n {root}\n"), "BadCheckpoint"),
            ("log\n1\nnot base64!\n".to_owned(), "BadCheckpoint"),
            (format!("{}\n1\n{root}\n", "o".repeat(MAX_NOTE_BYTES)), "TooLarge"),
        ];
        let cases: Vec<(&str, &str)> = cases.iter().map(|(i, e)| (i.as_str(), *e)).collect();
        check_table(Checkpoint::parse_body, &cases);
        for (body, expect) in &cases {
            if *expect == "ok" {
                let parsed = Checkpoint::parse_body(body).expect("good body parses");
                assert_eq!(parsed.to_body(), *body, "body must print back byte for byte");
            }
        }
    }

    #[test]
    fn checkpoint_check_refuses_unprintable_values() {
        let good = checkpoint(10);
        assert_eq!(good.check(), Ok(()));
        let cases = [
            Checkpoint { origin: String::new(), ..good.clone() },
            Checkpoint { origin: " \u{3000}".to_owned(), ..good.clone() },
            Checkpoint { origin: "two\nlines".to_owned(), ..good.clone() },
            Checkpoint { extensions: vec![String::new()], ..good.clone() },
            Checkpoint { extensions: vec!["a\nb".to_owned()], ..good.clone() },
        ];
        let alice = signer(1, "example.com/qtrace/log1");
        let witness = cosigner(2, "witness");
        for bad in cases {
            assert_eq!(bad.check().map_err(|e| kind(&e)), Err("BadCheckpoint"), "{bad:?}");
            assert!(sign_checkpoint(&bad, &alice).is_err(), "{bad:?}");
            assert!(witness.cosign(&bad, 1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checkpoint_sign_and_open() {
        let log = signer(1, "example.com/qtrace/log1");
        let cp = Checkpoint { extensions: vec!["qtrace time 1700000000".to_owned()], ..checkpoint(12345) };
        let signed = sign_checkpoint(&cp, &log).expect("signs");
        assert!(signed.starts_with(&cp.to_body()));
        let opened = open_checkpoint(&signed, &log.verifier(), &[]).expect("opens");
        assert_eq!(
            opened,
            OpenedCheckpoint { checkpoint: cp.clone(), log_signed: true, cosigners: vec![], unverified: vec![] }
        );

        let other_log = signer(9, "example.com/qtrace/log1").verifier();
        assert_eq!(
            open_checkpoint(&signed, &other_log, &[]),
            Err(NoteError::MissingLogSignature { name: other_log.name().clone(), key_hash: other_log.key_hash() })
        );

        let tampered = signed.replacen("12345", "12346", 1);
        assert_eq!(open_checkpoint(&tampered, &log.verifier(), &[]).map_err(|e| kind(&e)), Err("InvalidSignature"));

        let not_a_checkpoint = Note::sign("hello\n", &[&log]).expect("signs").to_string();
        assert_eq!(
            open_checkpoint(&not_a_checkpoint, &log.verifier(), &[]).map_err(|e| kind(&e)),
            Err("BadCheckpoint")
        );
    }

    #[test]
    fn cosign_then_open_reports_cosigner() {
        let log = signer(1, "example.com/qtrace/log1");
        let witness = cosigner(2, "witness.example/w1");
        let bystander = cosigner(3, "witness.example/w2");
        let cp = checkpoint(77);
        let signed = sign_checkpoint(&cp, &log).expect("signs");
        let lines = format!(
            "{}\n{}\n",
            witness.cosign(&cp, 1_700_000_000).expect("cosigns"),
            bystander.cosign(&cp, 1_700_000_001).expect("cosigns"),
        );
        let cosigned = add_signature_lines(&signed, &lines).expect("adds lines");

        let opened = open_checkpoint(&cosigned, &log.verifier(), &[witness.verifier()]).expect("opens");
        assert_eq!(opened.checkpoint, cp);
        assert!(opened.log_signed);
        assert_eq!(opened.cosigners, vec![(witness.name().clone(), 1_700_000_000)]);
        assert_eq!(opened.unverified.len(), 1);
        assert_eq!(opened.unverified[0].name, *bystander.name());

        let opened = open_checkpoint(&cosigned, &log.verifier(), &[]).expect("opens");
        assert!(opened.cosigners.is_empty());
        assert_eq!(opened.unverified.len(), 2);

        // Cosignatures alone do not make a checkpoint: the log must sign.
        let witness_only = format!("{}\n{lines}", cp.to_body());
        assert_eq!(
            open_checkpoint(&witness_only, &log.verifier(), &[witness.verifier()]).map_err(|e| kind(&e)),
            Err("MissingLogSignature")
        );
    }

    #[test]
    fn cosignature_message_is_the_specified_bytes() {
        let witness = cosigner(2, "witness.example/w1");
        let cp = checkpoint(20_852_163);
        let sig = witness.cosign(&cp, 1_679_315_147).expect("cosigns");
        assert_eq!(sig.key_hash, witness.key_hash());
        assert_eq!(
            witness.key_hash(),
            KeyHash::compute(witness.name(), 0x04, witness.verifier().public_key().as_bytes())
        );
        let (timestamp, signature) = sig.sig.split_at(8);
        assert_eq!(timestamp, 1_679_315_147_u64.to_be_bytes());
        let message = format!("cosignature/v1\ntime 1679315147\n{}", cp.to_body());
        let signature = Signature::from_slice(signature).expect("64 bytes");
        assert!(witness.verifier().public_key().verify_strict(message.as_bytes(), &signature).is_ok());
        assert_eq!(witness.verifier().verify(&cp.to_body(), &sig.sig), Ok(1_679_315_147));
    }

    #[test]
    fn cosignature_over_another_checkpoint_is_rejected() {
        let log = signer(1, "example.com/qtrace/log1");
        let witness = cosigner(2, "witness.example/w1");
        let cp = checkpoint(77);
        let signed = sign_checkpoint(&cp, &log).expect("signs");
        let other = witness.cosign(&checkpoint(78), 1_700_000_000).expect("cosigns");
        let cosigned = add_signature_lines(&signed, &format!("{other}\n")).expect("adds");
        assert_eq!(
            open_checkpoint(&cosigned, &log.verifier(), &[witness.verifier()]),
            Err(NoteError::InvalidSignature { name: witness.name().clone(), key_hash: witness.key_hash() })
        );

        // Changing the timestamp after signing breaks the cosignature too.
        let mut moved = witness.cosign(&cp, 1_700_000_000).expect("cosigns");
        moved.sig[7] ^= 1;
        let cosigned = add_signature_lines(&signed, &format!("{moved}\n")).expect("adds");
        assert_eq!(
            open_checkpoint(&cosigned, &log.verifier(), &[witness.verifier()]).map_err(|e| kind(&e)),
            Err("InvalidSignature")
        );

        // A plain note signature by the witness key has the 0x01 key hash,
        // so it is not mistaken for a cosignature.
        let as_note_signer = Signer::new("witness.example/w1", SigningKey::from_bytes(&[2; 32])).expect("valid");
        let plain = as_note_signer.sign(&cp.to_body()).expect("signs");
        let cosigned = add_signature_lines(&signed, &format!("{plain}\n")).expect("adds");
        let opened = open_checkpoint(&cosigned, &log.verifier(), &[witness.verifier()]).expect("opens");
        assert!(opened.cosigners.is_empty());
        assert_eq!(opened.unverified, vec![plain]);
    }

    #[test]
    fn cosignature_timestamps_are_bounded() {
        let witness = cosigner(2, "w");
        let cp = checkpoint(1);
        assert_eq!(
            witness.cosign(&cp, MAX_COSIGNATURE_TIMESTAMP + 1),
            Err(NoteError::TimestampOutOfRange { timestamp: MAX_COSIGNATURE_TIMESTAMP + 1 })
        );
        let sig = witness.cosign(&cp, MAX_COSIGNATURE_TIMESTAMP).expect("cosigns");
        assert_eq!(witness.verifier().verify(&cp.to_body(), &sig.sig), Ok(MAX_COSIGNATURE_TIMESTAMP));
        // A forged line with the top bit set is invalid whatever follows.
        let mut forged = sig.sig.clone();
        forged[0] |= 0x80;
        assert!(witness.verifier().verify(&cp.to_body(), &forged).is_err());
        assert!(witness.verifier().verify(&cp.to_body(), &sig.sig[..71]).is_err());
    }

    #[test]
    fn add_signature_lines_replaces_and_validates() {
        let log = signer(1, "example.com/qtrace/log1");
        let witness = cosigner(2, "witness.example/w1");
        let cp = checkpoint(5);
        let signed = sign_checkpoint(&cp, &log).expect("signs");
        assert_eq!(add_signature_lines(&signed, ""), Ok(signed.clone()));

        let first =
            add_signature_lines(&signed, &format!("{}\n", witness.cosign(&cp, 100).expect("cosigns"))).expect("adds");
        let second =
            add_signature_lines(&first, &format!("{}\n", witness.cosign(&cp, 200).expect("cosigns"))).expect("adds");
        assert_eq!(Note::parse(&second).expect("parses").signatures().len(), 2);
        let opened = open_checkpoint(&second, &log.verifier(), &[witness.verifier()]).expect("opens");
        assert_eq!(opened.cosigners, vec![(witness.name().clone(), 200)]);

        let line = witness.cosign(&cp, 100).expect("cosigns").to_string();
        let cases = [
            (format!("{line}\n"), "ok"),
            (line.clone(), "BadSignatureLine"),
            (format!("{line}\n\n"), "BadSignatureLine"),
            ("garbage\n".to_owned(), "BadSignatureLine"),
            ("\n".to_owned(), "BadSignatureLine"),
        ];
        let cases: Vec<(&str, &str)> = cases.iter().map(|(i, e)| (i.as_str(), *e)).collect();
        check_table(|lines| add_signature_lines(&signed, lines), &cases);
        assert_eq!(add_signature_lines("not a note", &format!("{line}\n")).map_err(|e| kind(&e)), Err("MalformedNote"));

        let crowd: String = (0..MAX_SIGNATURES as u8)
            .map(|i| {
                let w = cosigner(100u8.wrapping_add(i), &format!("w{i}"));
                format!("{}\n", w.cosign(&cp, 1).expect("cosigns"))
            })
            .collect();
        assert_eq!(add_signature_lines(&signed, &crowd).map_err(|e| kind(&e)), Err("TooManySignatures"));
    }

    #[test]
    fn key_names_follow_the_spec() {
        let cases = [
            ("example.com/log", "ok"),
            ("oid/1.3.6.1.4.1", "ok"),
            ("名前", "ok"),
            ("", "BadKeyName"),
            ("a+b", "BadKeyName"),
            ("a b", "BadKeyName"),
            ("a\u{2003}b", "BadKeyName"),
            ("a\u{85}b", "BadKeyName"),
            ("a\u{1}b", "BadKeyName"),
        ];
        check_table(KeyName::new, &cases);
        assert_eq!(
            Signer::new("bad name", SigningKey::from_bytes(&[1; 32])).err().map(|e| kind(&e)),
            Some("BadKeyName")
        );
    }

    /// Strings built mostly from the characters that matter to these formats,
    /// so that random inputs reach past the first checks.
    fn format_soup() -> impl Strategy<Value = String> {
        "[a-c+/=0-9A \n\u{2014}\u{a0}\t]{0,200}"
    }

    proptest! {
        #[test]
        fn parsers_never_panic(input in any::<String>(), soup in format_soup()) {
            for text in [&input, &soup] {
                let _ = Note::parse(text);
                let _ = Note::open(text, &[]);
                let _ = NoteSignature::parse_line(text);
                let _ = Verifier::parse(text);
                let _ = CosignatureVerifier::parse(text);
                let _ = Signer::parse(text);
                let _ = Cosigner::parse(text);
                let _ = Checkpoint::parse_body(text);
                let _ = KeyName::new(text);
                let _ = add_signature_lines(text, text);
            }
        }

        #[test]
        fn near_valid_notes_never_panic(
            text in "[a-z\n]{0,20}",
            name in "[a-z+ ]{0,6}",
            sig in proptest::collection::vec(any::<u8>(), 0..80),
            tail in "[a-z\n\u{2014} ]{0,10}",
        ) {
            let alice = signer(1, "a");
            let note = format!("{text}\n\n\u{2014} {name} {}\n{tail}", BASE64.encode(&sig));
            let _ = Note::open(&note, &[alice.verifier()]);
            let _ = open_checkpoint(&note, &alice.verifier(), &[cosigner(2, "a").verifier()]);
        }

        #[test]
        fn valid_notes_round_trip(text in "([^\\x00-\\x1f]{0,20}\n){1,5}", seed in any::<u8>()) {
            let alice = signer(seed, "example.com/alice");
            let note = Note::sign(&text, &[&alice]).expect("signs");
            let printed = note.to_string();
            prop_assert_eq!(Note::parse(&printed), Ok(note));
            let opened = Note::open(&printed, &[alice.verifier()]).expect("opens");
            prop_assert_eq!(opened.text, text);
        }

        #[test]
        fn checkpoints_round_trip(
            origin in "[^\\x00-\\x1f]{1,30}".prop_filter("not blank", |o| !o.chars().all(char::is_whitespace)),
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            extensions in proptest::collection::vec("[^\\x00-\\x1f]{1,20}", 0..4),
            timestamp in 0..=MAX_COSIGNATURE_TIMESTAMP,
        ) {
            let cp = Checkpoint { origin, size, root, extensions };
            prop_assert_eq!(cp.check(), Ok(()));
            let body = cp.to_body();
            prop_assert_eq!(Checkpoint::parse_body(&body), Ok(cp.clone()));

            let log = signer(1, "log");
            let witness = cosigner(2, "witness");
            let signed = sign_checkpoint(&cp, &log).expect("signs");
            let line = witness.cosign(&cp, timestamp).expect("cosigns");
            let cosigned = add_signature_lines(&signed, &format!("{line}\n")).expect("adds");
            let opened = open_checkpoint(&cosigned, &log.verifier(), &[witness.verifier()])
                .expect("opens");
            prop_assert_eq!(opened.checkpoint, cp);
            prop_assert_eq!(opened.cosigners, vec![(witness.name().clone(), timestamp)]);
        }
    }
}
