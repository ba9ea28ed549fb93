//! A configured peer (`--peer NAME=URL,VKEY`) and its parsing.

use std::str::FromStr;

use qtrace_ledger::hash::LogId;
use qtrace_ledger::note::{CosignatureVerifier, Verifier};

/// A configured peer: `NAME=URL,VKEY`.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub url: String,
    pub vkey: Verifier,
    pub log_id: LogId,
}

impl Peer {
    /// The peer as a witness: its log key used for cosignatures.
    pub fn witness(&self) -> Option<CosignatureVerifier> {
        CosignatureVerifier::new(self.vkey.name().as_str(), *self.vkey.public_key()).ok()
    }
}

impl FromStr for Peer {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, rest) =
            text.split_once('=').ok_or_else(|| format!("{text:?}: expected NAME=URL,VKEY (no '=' found)"))?;
        let (url, vkey) =
            rest.split_once(',').ok_or_else(|| format!("{text:?}: expected NAME=URL,VKEY (no ',' found)"))?;
        if name.is_empty() {
            return Err(format!("{text:?}: the peer NAME is empty"));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{text:?}: URL must start with http:// or https://"));
        }
        let vkey = Verifier::parse(vkey.trim()).map_err(|e| format!("{text:?}: VKEY: {e}"))?;
        let log_id = LogId::of_key(&vkey.public_key().to_bytes());
        Ok(Peer { name: name.to_string(), url: url.to_string(), vkey, log_id })
    }
}
