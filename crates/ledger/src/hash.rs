//! Hash newtypes: a log's identity and an entry's hash are both 32 bytes of
//! SHA-256, and keeping them apart in the type system stops one being passed
//! where the other is meant.

use std::fmt;

use sha2::{Digest, Sha256};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A 32-byte value given in a request or record was not 32 bytes long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be 32 bytes, found {found}")]
pub struct HashLengthError {
    pub field: &'static str,
    pub found: usize,
}

/// A lowercase-hex string was not a 32-byte hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be 64 hex digits: {detail}")]
pub struct HashHexError {
    pub field: &'static str,
    pub detail: String,
}

macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Takes exactly 32 bytes, naming the field when they are not.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, HashLengthError> {
                <[u8; 32]>::try_from(bytes)
                    .map($name)
                    .map_err(|_| HashLengthError { field: $field, found: bytes.len() })
            }

            /// Parses 64 hex digits (either case).
            pub fn from_hex(text: &str) -> Result<Self, HashHexError> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(text, &mut out)
                    .map_err(|e| HashHexError { field: $field, detail: e.to_string() })?;
                Ok($name(out))
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), hex::encode(self.0))
            }
        }
    };
}

hash_newtype!(
    /// Identity of a log: SHA-256 of the log's Ed25519 public key.
    LogId,
    "log_id"
);
hash_newtype!(
    /// An entry hash: the RFC 6962 leaf hash `SHA-256(0x00 || entry_bytes)`.
    EntryHash,
    "entry_hash"
);

impl LogId {
    /// The log id of a log whose checkpoints are signed by `public_key`.
    pub fn of_key(public_key: &[u8; 32]) -> Self {
        LogId(sha256(public_key))
    }
}

/// Identity of a submission for idempotency: the same signer submitting the
/// same event bytes is the same record, whatever the signature bytes.
pub fn dedup_key(signer: &[u8; 32], event: &[u8]) -> [u8; 32] {
    let mut data = Vec::with_capacity(32 + event.len());
    data.extend_from_slice(signer);
    data.extend_from_slice(event);
    sha256(&data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_hex_are_checked() {
        let cases: &[(&[u8], bool)] = &[(&[0; 32], true), (&[0; 31], false), (&[0; 33], false), (&[], false)];
        for (bytes, ok) in cases {
            assert_eq!(EntryHash::from_slice(bytes).is_ok(), *ok, "{} bytes", bytes.len());
        }
        let h = EntryHash([0xab; 32]);
        assert_eq!(EntryHash::from_hex(&h.to_hex()), Ok(h));
        assert!(EntryHash::from_hex("zz").is_err());
        let err = LogId::from_slice(&[1, 2]).unwrap_err();
        assert_eq!(err.to_string(), "log_id must be 32 bytes, found 2");
    }
}
