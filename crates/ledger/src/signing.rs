//! Ed25519 signing of events.
//!
//! A signer signs `"qtrace/v1/event\0" || event_bytes`. The prefix keeps a
//! qtrace signature from ever being valid as a signature over anything else
//! the same key signs (a checkpoint, a TLS handshake). Verification is
//! strict ([`ed25519_dalek::VerifyingKey::verify_strict`]): non-canonical
//! `S` values, small-order public keys and small-order `R` points are
//! refused, so a valid signature cannot be turned into a second valid one.
//!
//! # Key files
//!
//! A secret key file is two lines of text, written with mode 0600:
//!
//! ```text
//! qtrace-ed25519-secret-key-v1
//! <64 lowercase hex digits: the 32-byte Ed25519 seed>
//! ```
//!
//! The public key is derived from the seed; it is printed as 64 hex digits.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// The domain-separation prefix of every event signature.
pub const EVENT_SIGNING_PREFIX: &[u8] = b"qtrace/v1/event\0";

/// First line of a secret key file.
pub const SECRET_KEY_FILE_HEADER: &str = "qtrace-ed25519-secret-key-v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("public key must be 32 bytes, found {0}")]
    PublicKeyLength(usize),
    #[error("public key is not a valid Ed25519 point")]
    PublicKeyInvalid,
    #[error("public key has small order (a weak key that anyone could sign for)")]
    WeakPublicKey,
    #[error("signature must be 64 bytes, found {0}")]
    SignatureLength(usize),
    #[error("signature does not verify for this event and public key")]
    Invalid,
    #[error("secret key file: {0}")]
    KeyFile(String),
    #[error("could not get randomness from the operating system: {0}")]
    Randomness(String),
}

/// A public key that is a valid, non-weak Ed25519 point.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        let array = <[u8; 32]>::try_from(bytes).map_err(|_| SignatureError::PublicKeyLength(bytes.len()))?;
        Self::from_bytes(&array)
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SignatureError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| SignatureError::PublicKeyInvalid)?;
        if key.is_weak() {
            return Err(SignatureError::WeakPublicKey);
        }
        Ok(PublicKey(key))
    }

    pub fn from_hex(text: &str) -> Result<Self, SignatureError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| SignatureError::PublicKeyLength(text.trim().len() / 2))?;
        Self::from_bytes(&bytes)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// Strictly verifies `signature` over the event bytes.
    pub fn verify_event(&self, event_bytes: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let signature =
            Signature::from_slice(signature).map_err(|_| SignatureError::SignatureLength(signature.len()))?;
        let message = signed_message(event_bytes);
        self.0.verify_strict(&message, &signature).map_err(|_| SignatureError::Invalid)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// One signature to check in a batch.
pub struct BatchItem<'a> {
    pub event: &'a [u8],
    pub signer: &'a [u8; 32],
    pub signature: &'a [u8; 64],
}

/// Verifies many event signatures at once with Ed25519 batch verification,
/// about twice as fast per signature as one by one. Batch verification is
/// cofactored, slightly laxer than [`PublicKey::verify_event`]; it is used
/// where entries were already verified strictly by the log that appended
/// them (mirroring a peer), and every verdict re-verifies strictly. On
/// failure each signature is checked strictly to name the first bad one.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Result<(), (usize, SignatureError)> {
    let mut keys = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        keys.push(*PublicKey::from_bytes(item.signer).map_err(|e| (i, e))?.verifying_key());
    }
    let messages: Vec<Vec<u8>> = items.iter().map(|item| signed_message(item.event)).collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<Signature> = items.iter().map(|item| Signature::from_bytes(item.signature)).collect();
    if ed25519_dalek::verify_batch(&message_refs, &signatures, &keys).is_ok() {
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        let key = PublicKey(keys[i]);
        key.verify_event(item.event, item.signature).map_err(|e| (i, e))?;
    }
    // Every signature verified strictly although the batch failed: accept.
    Ok(())
}

/// [`verify_batch`] on `threads` threads at once, each taking one
/// contiguous part of `items`. On failure, the index in `items` of a bad
/// signature and why (the first failing part's first bad one).
pub fn verify_batch_parallel(items: &[BatchItem<'_>], threads: usize) -> Result<(), (usize, SignatureError)> {
    let per = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per)
            .enumerate()
            .map(|(part, slice)| scope.spawn(move || verify_batch(slice).map_err(|(i, e)| (part * per + i, e))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    })
}

/// The exact bytes an event signature covers.
pub fn signed_message(event_bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(EVENT_SIGNING_PREFIX.len() + event_bytes.len());
    message.extend_from_slice(EVENT_SIGNING_PREFIX);
    message.extend_from_slice(event_bytes);
    message
}

/// An Ed25519 secret key (the 32-byte seed).
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, SignatureError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SignatureError::Randomness(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(seed))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `"qtrace/v1/event\0" || event_bytes`.
    pub fn sign_event(&self, event_bytes: &[u8]) -> [u8; 64] {
        self.0.sign(&signed_message(event_bytes)).to_bytes()
    }

    /// The text of a secret key file (see the module docs).
    pub fn to_file_text(&self) -> String {
        format!("{SECRET_KEY_FILE_HEADER}\n{}\n", hex::encode(self.0.to_bytes()))
    }

    /// Parses the text of a secret key file.
    pub fn from_file_text(text: &str) -> Result<Self, SignatureError> {
        let mut lines = text.lines();
        if lines.next() != Some(SECRET_KEY_FILE_HEADER) {
            return Err(SignatureError::KeyFile(format!("first line must be {SECRET_KEY_FILE_HEADER:?}")));
        }
        let seed_hex =
            lines.next().ok_or_else(|| SignatureError::KeyFile("second line (the hex seed) is missing".into()))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(seed_hex.trim(), &mut seed)
            .map_err(|_| SignatureError::KeyFile("second line must be 64 hex digits".into()))?;
        if lines.any(|line| !line.trim().is_empty()) {
            return Err(SignatureError::KeyFile("unexpected text after the seed".into()));
        }
        Ok(Self::from_seed(&seed))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_strictly() {
        let key = SecretKey::from_seed(&[7; 32]);
        let public = key.public_key();
        let event = b"some event bytes";
        let sig = key.sign_event(event);
        assert_eq!(public.verify_event(event, &sig), Ok(()));
        // A different message, a flipped bit and a wrong length all fail.
        assert_eq!(public.verify_event(b"other", &sig), Err(SignatureError::Invalid));
        for bit in [0usize, 100, 300, 511] {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(public.verify_event(event, &bad).is_err(), "bit {bit}");
        }
        assert_eq!(public.verify_event(event, &sig[..63]), Err(SignatureError::SignatureLength(63)));
        // The prefix matters: a raw signature over the event bytes is refused.
        let raw = key.signing_key().sign(event).to_bytes();
        assert_eq!(public.verify_event(event, &raw), Err(SignatureError::Invalid));
    }

    #[test]
    fn non_canonical_s_is_refused() {
        // Adding the group order L to S gives a signature that a lax verifier
        // accepts; strict verification must refuse it.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let key = SecretKey::from_seed(&[9; 32]);
        let event = b"e";
        let mut sig = key.sign_event(event);
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = sig[32 + i] as u16 + L[i] as u16 + carry;
            sig[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert!(key.public_key().verify_event(event, &sig).is_err());
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point and a small-order point.
        let identity = {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        };
        assert_eq!(PublicKey::from_bytes(&identity), Err(SignatureError::WeakPublicKey));
        assert_eq!(PublicKey::from_bytes(&[0; 32]), Err(SignatureError::WeakPublicKey));
        assert_eq!(PublicKey::from_slice(&[1; 31]), Err(SignatureError::PublicKeyLength(31)));
    }

    #[test]
    fn key_file_round_trip_and_errors() {
        let key = SecretKey::from_seed(&[3; 32]);
        let text = key.to_file_text();
        assert_eq!(SecretKey::from_file_text(&text).map(|k| k.seed()), Ok([3; 32]));
        let cases = [
            "",
            "wrong header\n00\n",
            "qtrace-ed25519-secret-key-v1\n",
            "qtrace-ed25519-secret-key-v1\nabcd\n",
            "qtrace-ed25519-secret-key-v1\n0303030303030303030303030303030303030303030303030303030303030303\nmore\n",
        ];
        for case in cases {
            assert!(SecretKey::from_file_text(case).is_err(), "{case:?}");
        }
    }

    #[test]
    fn batch_verification_accepts_good_and_names_the_bad() {
        let keys: Vec<SecretKey> = (1..=20u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let events: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 10 + i as usize]).collect();
        let signers: Vec<[u8; 32]> = keys.iter().map(|k| k.public_key().to_bytes()).collect();
        let mut sigs: Vec<[u8; 64]> = keys.iter().zip(&events).map(|(k, e)| k.sign_event(e)).collect();
        let items = |sigs: &[[u8; 64]]| -> Result<(), (usize, SignatureError)> {
            let batch: Vec<BatchItem<'_>> =
                (0..20).map(|i| BatchItem { event: &events[i], signer: &signers[i], signature: &sigs[i] }).collect();
            verify_batch(&batch)
        };
        assert_eq!(items(&sigs), Ok(()));
        sigs[13][5] ^= 1;
        assert_eq!(items(&sigs).map_err(|(i, _)| i), Err(13));
        assert_eq!(verify_batch(&[]), Ok(()));
    }

    #[test]
    fn parallel_batch_verification_names_the_bad_one_in_every_part() {
        let keys: Vec<SecretKey> = (1..=20u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let events: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 10 + i as usize]).collect();
        let signers: Vec<[u8; 32]> = keys.iter().map(|k| k.public_key().to_bytes()).collect();
        let good: Vec<[u8; 64]> = keys.iter().zip(&events).map(|(k, e)| k.sign_event(e)).collect();
        // (threads, index of the damaged signature): first, middle and last
        // part, and more threads than items.
        let cases = [(1, None), (3, None), (32, None), (1, Some(0)), (3, Some(7)), (3, Some(19)), (32, Some(13))];
        for (threads, bad) in cases {
            let mut sigs = good.clone();
            if let Some(i) = bad {
                sigs[i][5] ^= 1;
            }
            let batch: Vec<BatchItem<'_>> =
                (0..20).map(|i| BatchItem { event: &events[i], signer: &signers[i], signature: &sigs[i] }).collect();
            let found = verify_batch_parallel(&batch, threads).map_err(|(i, _)| i);
            assert_eq!(found, bad.map_or(Ok(()), Err), "{threads} threads, bad {bad:?}");
        }
        assert_eq!(verify_batch_parallel(&[], 2), Ok(()));
    }
}
