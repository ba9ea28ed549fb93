//! Log entries and their exact byte layout.
//!
//! The entry bytes are a fixed binary layout, not protobuf, so that the bytes
//! that are hashed have exactly one form and a verifier in any language can
//! rebuild them from the fields:
//!
//! ```text
//! offset  size  field
//!      0    16  magic "qtrace/v1/entry\0"
//!     16     8  sequence number, u64 big-endian
//!     24    32  previous entry hash (for entry 0: the log id)
//!     56     8  logged time, i64 big-endian microseconds since the Unix epoch
//!     64    32  signer's Ed25519 public key
//!     96    64  Ed25519 signature over "qtrace/v1/event\0" || event bytes
//!    160     4  event length n, u32 big-endian, 1 ..= 65,536
//!    164     n  event bytes (canonical protobuf `qtrace.v1.Event`)
//! ```
//!
//! The entry hash is `SHA-256(0x00 || entry bytes)`: the RFC 6962 leaf hash.
//! It links the chain (each entry names the hash of the one before it), keys
//! the hash index and is the leaf of the Merkle tree. Setting entry 0's
//! previous hash to the log id binds the whole chain to one log key.

use crate::hash::{EntryHash, LogId};
use crate::merkle;
use crate::pb;
use crate::signing::{PublicKey, SignatureError};

/// Domain-separation magic at the start of every entry.
pub const ENTRY_MAGIC: &[u8; 16] = b"qtrace/v1/entry\0";
/// Size of the fixed part before the event bytes.
pub const ENTRY_HEADER_LEN: usize = 164;
/// Largest accepted encoded event.
pub const MAX_EVENT_BYTES: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    #[error("entry is {found} bytes, shorter than the {ENTRY_HEADER_LEN}-byte header")]
    Truncated { found: usize },
    #[error("entry does not start with the magic \"qtrace/v1/entry\\0\"")]
    BadMagic,
    #[error("event length field is {0}; it must be 1 ..= {MAX_EVENT_BYTES}")]
    EventLength(u32),
    #[error("entry length {found} does not match header + event length {expected}")]
    LengthMismatch { expected: usize, found: usize },
    #[error("{field} must be {expected} bytes, found {found}")]
    FieldLength { field: &'static str, expected: usize, found: usize },
    #[error("entry {seq}: previous hash {found} does not match {expected}")]
    BrokenChain { seq: u64, expected: EntryHash, found: EntryHash },
    #[error("entry {seq}: signer key: {source}")]
    Signer { seq: u64, source: SignatureError },
    #[error("entry {seq}: signature: {source}")]
    Signature { seq: u64, source: SignatureError },
    #[error("field {0} is missing")]
    Missing(&'static str),
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub prev_hash: EntryHash,
    pub logged_at_micros: i64,
    pub signer: [u8; 32],
    pub signature: [u8; 64],
    pub event: Vec<u8>,
}

impl Entry {
    /// The leaf bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + self.event.len());
        out.extend_from_slice(ENTRY_MAGIC);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.prev_hash.0);
        out.extend_from_slice(&self.logged_at_micros.to_be_bytes());
        out.extend_from_slice(&self.signer);
        out.extend_from_slice(&self.signature);
        // The event length is bounded by MAX_EVENT_BYTES wherever entries are
        // built from input, so it fits in u32.
        out.extend_from_slice(&(self.event.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.event);
        out
    }

    /// Parses leaf bytes, refusing anything but the exact layout: no
    /// trailing bytes, no over-long event.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() < ENTRY_HEADER_LEN {
            return Err(EntryError::Truncated { found: bytes.len() });
        }
        let (header, event) = bytes.split_at(ENTRY_HEADER_LEN);
        if &header[0..16] != ENTRY_MAGIC {
            return Err(EntryError::BadMagic);
        }
        let event_len = u32::from_be_bytes(array(&header[160..164]));
        if event_len == 0 || event_len as usize > MAX_EVENT_BYTES {
            return Err(EntryError::EventLength(event_len));
        }
        if event.len() != event_len as usize {
            return Err(EntryError::LengthMismatch {
                expected: ENTRY_HEADER_LEN + event_len as usize,
                found: bytes.len(),
            });
        }
        Ok(Entry {
            seq: u64::from_be_bytes(array(&header[16..24])),
            prev_hash: EntryHash(array(&header[24..56])),
            logged_at_micros: i64::from_be_bytes(array(&header[56..64])),
            signer: array(&header[64..96]),
            signature: array(&header[96..160]),
            event: event.to_vec(),
        })
    }

    /// `SHA-256(0x00 || entry bytes)`.
    pub fn hash(&self) -> EntryHash {
        EntryHash(merkle::leaf_hash(&self.encode()))
    }

    /// Checks that this entry follows the entry whose hash is `prev` (or, for
    /// entry 0, that it starts the log `log_id`).
    pub fn check_link(&self, log_id: &LogId, prev: Option<&EntryHash>) -> Result<(), EntryError> {
        let expected = match (self.seq, prev) {
            (0, _) => EntryHash(log_id.0),
            (_, Some(prev)) => *prev,
            (_, None) => return Err(EntryError::Missing("previous entry")),
        };
        if self.prev_hash != expected {
            return Err(EntryError::BrokenChain { seq: self.seq, expected, found: self.prev_hash });
        }
        Ok(())
    }

    /// Strictly verifies the signer's signature over the event bytes.
    pub fn verify_signature(&self) -> Result<PublicKey, EntryError> {
        let key = PublicKey::from_bytes(&self.signer).map_err(|source| EntryError::Signer { seq: self.seq, source })?;
        key.verify_event(&self.event, &self.signature)
            .map_err(|source| EntryError::Signature { seq: self.seq, source })?;
        Ok(key)
    }

    /// The wire form, for a log `log_id`.
    pub fn to_pb(&self, log_id: &LogId) -> pb::Entry {
        pb::Entry {
            log_id: log_id.0.to_vec(),
            seq: self.seq,
            prev_hash: self.prev_hash.0.to_vec(),
            logged_at_micros: self.logged_at_micros,
            signed: Some(pb::SignedEvent {
                event: self.event.clone(),
                signer: self.signer.to_vec(),
                signature: self.signature.to_vec(),
            }),
            entry_hash: self.hash().0.to_vec(),
        }
    }

    /// Rebuilds an entry from its wire form. The `entry_hash` field is not
    /// trusted; callers compare it with [`Entry::hash`] if they need to.
    pub fn from_pb(entry: &pb::Entry) -> Result<Self, EntryError> {
        let signed = entry.signed.as_ref().ok_or(EntryError::Missing("signed"))?;
        if signed.event.is_empty() || signed.event.len() > MAX_EVENT_BYTES {
            return Err(EntryError::EventLength(signed.event.len().min(u32::MAX as usize) as u32));
        }
        Ok(Entry {
            seq: entry.seq,
            prev_hash: EntryHash(fixed(&entry.prev_hash, "prev_hash")?),
            logged_at_micros: entry.logged_at_micros,
            signer: fixed(&signed.signer, "signer")?,
            signature: fixed(&signed.signature, "signature")?,
            event: signed.event.clone(),
        })
    }
}

fn fixed<const N: usize>(bytes: &[u8], field: &'static str) -> Result<[u8; N], EntryError> {
    <[u8; N]>::try_from(bytes).map_err(|_| EntryError::FieldLength { field, expected: N, found: bytes.len() })
}

/// Copies a slice whose length the caller has already fixed.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SecretKey;
    use proptest::prelude::*;

    fn sample() -> Entry {
        let key = SecretKey::from_seed(&[1; 32]);
        let event = b"\x08\x01".to_vec();
        Entry {
            seq: 5,
            prev_hash: EntryHash([2; 32]),
            logged_at_micros: 1_700_000_000_000_000,
            signer: key.public_key().to_bytes(),
            signature: key.sign_event(&event),
            event,
        }
    }

    #[test]
    fn layout_is_exact() {
        let entry = sample();
        let bytes = entry.encode();
        assert_eq!(bytes.len(), ENTRY_HEADER_LEN + 2);
        assert_eq!(&bytes[..16], b"qtrace/v1/entry\0");
        assert_eq!(&bytes[16..24], &5u64.to_be_bytes());
        assert_eq!(&bytes[160..164], &2u32.to_be_bytes());
        assert_eq!(Entry::decode(&bytes), Ok(entry.clone()));
        assert_eq!(entry.hash().0, merkle::leaf_hash(&bytes));
        assert!(entry.verify_signature().is_ok());
    }

    #[test]
    fn decoder_refuses_bad_layouts() {
        let good = sample().encode();
        let mut trailing = good.clone();
        trailing.push(0);
        let mut magic = good.clone();
        magic[0] = b'Q';
        let mut zero_len = good.clone();
        zero_len[160..164].copy_from_slice(&0u32.to_be_bytes());
        let mut huge_len = good.clone();
        huge_len[160..164].copy_from_slice(&u32::MAX.to_be_bytes());
        let cases: Vec<(&str, Vec<u8>, EntryError)> = vec![
            ("empty", vec![], EntryError::Truncated { found: 0 }),
            ("short", good[..100].to_vec(), EntryError::Truncated { found: 100 }),
            ("trailing byte", trailing, EntryError::LengthMismatch { expected: 166, found: 167 }),
            ("missing byte", good[..165].to_vec(), EntryError::LengthMismatch { expected: 166, found: 165 }),
            ("magic", magic, EntryError::BadMagic),
            ("zero event", zero_len, EntryError::EventLength(0)),
            ("huge event", huge_len, EntryError::EventLength(u32::MAX)),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(Entry::decode(&bytes), Err(want), "{name}");
        }
    }

    #[test]
    fn chain_links_are_checked() {
        let log = LogId([9; 32]);
        let mut first = sample();
        first.seq = 0;
        first.prev_hash = EntryHash(log.0);
        assert_eq!(first.check_link(&log, None), Ok(()));
        let mut second = sample();
        second.seq = 1;
        second.prev_hash = first.hash();
        assert_eq!(second.check_link(&log, Some(&first.hash())), Ok(()));
        assert!(matches!(
            second.check_link(&log, Some(&EntryHash([0; 32]))),
            Err(EntryError::BrokenChain { seq: 1, .. })
        ));
        assert_eq!(second.check_link(&log, None), Err(EntryError::Missing("previous entry")));
    }

    #[test]
    fn pb_round_trip() {
        let log = LogId([4; 32]);
        let entry = sample();
        let wire = entry.to_pb(&log);
        assert_eq!(Entry::from_pb(&wire), Ok(entry));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Entry::decode(&bytes);
        }

        #[test]
        fn encode_decode_round_trip(seq: u64, t: i64, event in proptest::collection::vec(any::<u8>(), 1..300)) {
            let entry = Entry { seq, prev_hash: EntryHash([7; 32]), logged_at_micros: t, signer: [1; 32], signature: [2; 64], event };
            let bytes = entry.encode();
            prop_assert_eq!(Entry::decode(&bytes), Ok(entry.clone()));
            prop_assert_eq!(Entry::decode(&bytes).map(|e| e.encode()), Ok(bytes));
        }
    }
}
