//! Opening a node's data directory: keys, store, genesis; and the one
//! registry rebuild from stored entries.
//!
//! Layout of the data directory:
//!
//! | path            | what                                                      |
//! |-----------------|-----------------------------------------------------------|
//! | `store/`        | the sled database                                         |
//! | `log.key`       | the log's Ed25519 secret key (0600): signs checkpoints    |
//! | `log.vkey`      | the log's C2SP verifier key string                        |
//! | `authority.key` | development root authority key (only without --genesis)   |
//! | `node.addr`     | the gRPC address the running node is bound to             |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use prost::Message;
use qtrace_ledger::entry::Entry;
use qtrace_ledger::event::{IndexKey, decode_event};
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::note::{self, Signer, Verifier};
use qtrace_ledger::pb::{self, event::Body};
use qtrace_ledger::registry::Registry;
use qtrace_ledger::signing::{PublicKey, SecretKey};
use qtrace_rpc::keyfile;
use qtrace_store::{LogStore, NewEntry, SledStore};

use crate::snapshot::{Cut, Snapshot};
use serde::Deserialize;

/// USCC of the development operator (the published example code).
pub const DEV_OPERATOR_USCC: &str = "9144030071526726XG";
pub const DEV_OPERATOR_NAME: &str = "qtrace development authority (开发用监管机构)";
pub const DEFAULT_ORIGIN: &str = "qtrace.local/dev";

/// The `--genesis` file (TOML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    /// The log's origin line, e.g. "qtrace.example.cn/sh-amr".
    pub log_name: String,
    pub operator_uscc: String,
    #[serde(default)]
    pub operator_name: String,
    /// Root authority public keys, 64 hex digits each.
    pub root_authority_keys: Vec<String>,
}

/// Everything a running node holds.
pub struct Opened {
    pub store: SledStore,
    pub log: Arc<LogStore>,
    pub log_key: SecretKey,
    pub signer: Signer,
    pub origin: String,
    pub created: bool,
    pub authority_key_path: Option<PathBuf>,
}

impl Opened {
    pub fn log_id(&self) -> LogId {
        self.log.log_id()
    }
}

pub fn open(
    data: &Path,
    name: Option<&str>,
    genesis: Option<&Path>,
    rebuild_indexes: bool,
    cache_bytes: u64,
) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(data).with_context(|| format!("creating data directory {}", data.display()))?;
    let log_key_path = data.join("log.key");
    let log_key = if log_key_path.exists() {
        keyfile::read_secret_key(&log_key_path)?
    } else {
        let key = SecretKey::generate()?;
        keyfile::write_secret_key(&log_key_path, &key)?;
        key
    };
    let log_id = LogId::of_key(&log_key.public_key().to_bytes());
    let store = SledStore::open_with_cache(&data.join("store"), cache_bytes).context("opening the sled store")?;
    let refuse = || {
        format!(
            "refusing to start: the store in {} is inconsistent; run `qtrace-node audit --data {}` to locate the \
             problem (if only indexes are damaged, `--rebuild-indexes` rebuilds them from the entries)",
            data.display(),
            data.display()
        )
    };
    if rebuild_indexes {
        // Derived keys are rebuilt before the log is loaded, since loading
        // reads the Merkle nodes that may be the damaged part.
        tracing::info!("rebuilding derived state (indexes, Merkle nodes) from the entries");
        store.rebuild_derived(log_id).with_context(refuse)?;
    }
    let log = Arc::new(store.log(log_id).with_context(refuse)?);

    let mut authority_key_path = None;
    let created = log.head().size == 0;
    let origin = if created {
        let genesis_body = match genesis {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let file: GenesisFile = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
                let mut keys = Vec::new();
                for (i, hex_key) in file.root_authority_keys.iter().enumerate() {
                    let key = PublicKey::from_hex(hex_key)
                        .with_context(|| format!("{}: root_authority_keys[{i}]", path.display()))?;
                    keys.push(key.to_bytes().to_vec());
                }
                pb::LogGenesis {
                    origin: name.map(str::to_string).unwrap_or(file.log_name),
                    operator_uscc: file.operator_uscc,
                    operator_name: if file.operator_name.is_empty() {
                        "operator".to_string()
                    } else {
                        file.operator_name
                    },
                    root_authority_keys: keys,
                }
            }
            None => {
                let path = data.join("authority.key");
                let key = if path.exists() {
                    keyfile::read_secret_key(&path)?
                } else {
                    let key = SecretKey::generate()?;
                    keyfile::write_secret_key(&path, &key)?;
                    key
                };
                authority_key_path = Some(path);
                pb::LogGenesis {
                    origin: name.unwrap_or(DEFAULT_ORIGIN).to_string(),
                    operator_uscc: DEV_OPERATOR_USCC.to_string(),
                    operator_name: DEV_OPERATOR_NAME.to_string(),
                    root_authority_keys: vec![key.public_key().to_bytes().to_vec()],
                }
            }
        };
        let origin = genesis_body.origin.clone();
        append_genesis(&log, &log_key, genesis_body)?;
        origin
    } else {
        let path = data.join("authority.key");
        if path.exists() {
            authority_key_path = Some(path);
        }
        let origin = stored_origin(&log)?;
        if let Some(name) = name
            && name != origin
        {
            bail!("this log's origin is {origin:?} (fixed in its genesis entry); --name {name:?} cannot change it");
        }
        origin
    };
    let signer = Signer::new(&origin, log_key.signing_key().clone())
        .map_err(|e| anyhow::anyhow!("log origin {origin:?} cannot name a C2SP key: {e}"))?;
    startup_check(&log, &signer.verifier()).with_context(refuse)?;
    std::fs::write(data.join("log.vkey"), format!("{}\n", signer.verifier()))?;
    Ok(Opened { store, log, log_key, signer, origin, created, authority_key_path })
}

/// Opens an existing data directory read-only in spirit (for audit): the
/// log and its verifier key.
pub fn open_existing(data: &Path) -> anyhow::Result<(LogStore, Verifier)> {
    let log_key_path = data.join("log.key");
    if !log_key_path.exists() {
        bail!("{} has no log.key: not a qtrace data directory", data.display());
    }
    let log_key = keyfile::read_secret_key(&log_key_path)?;
    let log_id = LogId::of_key(&log_key.public_key().to_bytes());
    let store = SledStore::open(&data.join("store")).context("opening the sled store")?;
    let log = store.log(log_id)?;
    if log.head().size == 0 {
        bail!("the log in {} is empty", data.display());
    }
    let origin = stored_origin(&log)?;
    let signer = Signer::new(&origin, log_key.signing_key().clone())
        .map_err(|e| anyhow::anyhow!("log origin {origin:?} cannot name a C2SP key: {e}"))?;
    Ok((log, signer.verifier()))
}

/// A quick check at start: the newest checkpoint is signed by the log key
/// and matches the stored tree, and the last entry is intact and linked.
/// (`qtrace-node audit` checks everything.)
pub fn startup_check(log: &LogStore, verifier: &Verifier) -> anyhow::Result<()> {
    let head = log.head();
    if head.size == 0 {
        return Ok(());
    }
    let (size, note_text) = log.latest_checkpoint()?.context("the log has entries but no checkpoint")?;
    let opened = note::open_checkpoint(&note_text, verifier, &[])
        .map_err(|e| anyhow::anyhow!("the latest checkpoint does not verify: {e}"))?;
    if size != head.size || opened.checkpoint.size != head.size {
        bail!("the latest checkpoint is for {} entries but {} are stored", opened.checkpoint.size, head.size);
    }
    if opened.checkpoint.root != head.root {
        bail!(
            "the latest checkpoint's root {} differs from the stored tree's root {}",
            hex::encode(opened.checkpoint.root),
            hex::encode(head.root)
        );
    }
    let last = log.entry(head.size - 1)?.context("the last entry is missing")?;
    last.verify_signature()?;
    decode_event(&last.event).map_err(|e| anyhow::anyhow!("entry {}: {e}", last.seq))?;
    if last.hash() != head.last_hash {
        bail!("entry {} does not hash to the stored leaf", last.seq);
    }
    let prev = if head.size >= 2 {
        Some(log.entry(head.size - 2)?.context("entry before the last is missing")?.hash())
    } else {
        None
    };
    last.check_link(&log.log_id(), prev.as_ref())?;
    Ok(())
}

pub(crate) fn append_genesis(log: &LogStore, log_key: &SecretKey, genesis: pb::LogGenesis) -> anyhow::Result<()> {
    let now = now_micros();
    let event = pb::Event {
        event_time: Some(pb::EventTime { unix_millis: now / 1000, offset_minutes: 0 }),
        body: Some(Body::Genesis(genesis.clone())),
        ..Default::default()
    };
    let bytes = event.encode_to_vec();
    decode_event(&bytes).map_err(|e| anyhow::anyhow!("genesis: {e}"))?;
    let entry = Entry {
        seq: 0,
        prev_hash: EntryHash(log.log_id().0),
        logged_at_micros: now,
        signer: log_key.public_key().to_bytes(),
        signature: log_key.sign_event(&bytes),
        event: bytes,
    };
    let hash = entry.hash();
    let signer = Signer::new(&genesis.origin, log_key.signing_key().clone())
        .map_err(|e| anyhow::anyhow!("genesis origin {:?}: {e}", genesis.origin))?;
    log.append(&[NewEntry { entry, hash }], true, |size, root| sign_checkpoint(&signer, &genesis.origin, size, root))
        .context("appending genesis")?;
    Ok(())
}

/// Signs a C2SP checkpoint for the log's current size and root.
pub fn sign_checkpoint(signer: &Signer, origin: &str, size: u64, root: &[u8; 32]) -> Result<String, note::NoteError> {
    let checkpoint = note::Checkpoint { origin: origin.to_string(), size, root: *root, extensions: Vec::new() };
    note::sign_checkpoint(&checkpoint, signer)
}

fn stored_origin(log: &LogStore) -> anyhow::Result<String> {
    let entry = log.entry(0)?.context("the log has entries but no entry 0")?;
    let event = decode_event(&entry.event).map_err(|e| anyhow::anyhow!("entry 0: {e}"))?;
    match event.event.body {
        Some(Body::Genesis(g)) => Ok(g.origin),
        _ => bail!("entry 0 is not a genesis entry"),
    }
}

/// Whose records count in the registry: this node's own log and the logs of
/// its configured peers (organisations and keys registered by a trusted
/// authority on any of them are honoured).
#[derive(Debug, Clone)]
pub struct Trust {
    /// This node's log public key.
    pub own: [u8; 32],
    /// The peers' log public keys.
    pub peers: Vec<[u8; 32]>,
}

impl Trust {
    /// An empty registry that trusts exactly these logs.
    fn empty_registry(&self) -> Registry {
        let mut registry = Registry::new(self.own);
        for peer in &self.peers {
            registry.trust_log(*peer);
        }
        registry
    }

    fn trusts(&self, log: &LogId) -> bool {
        LogId::of_key(&self.own) == *log || self.peers.iter().any(|p| LogId::of_key(p) == *log)
    }
}

/// Rebuilds the registry from stored entries: every entry of the own log,
/// in order, then the registry records of each mirrored log of a trusted
/// peer (mirrors of other logs are ignored) up to the mirror's newest
/// stored checkpoint, and the cut it reflects: the own log's head (every
/// batch stores its checkpoint) and each mirror's newest checkpoint, which
/// views read the logs at. The one rebuild the node has: at start, and in
/// the writer when its working copy is unknown after a storage failure. An
/// entry that is missing, cannot be read or does not decode is an error
/// naming it, never skipped: a registry built without it would authorise
/// differently.
pub fn rebuild_registry(trust: &Trust, own: &LogStore, mirrors: &[Arc<LogStore>]) -> anyhow::Result<Snapshot> {
    let mut registry = trust.empty_registry();
    let size = own.head().size;
    let mut cut = Cut::default().with(own.log_id(), size);
    let mut expected = 0;
    for entry in own.range(0, size) {
        let entry = entry.with_context(|| format!("reading entry {expected} of the own log"))?;
        // Replaying reads every entry anyway; a gap is caught for free.
        if entry.seq != expected {
            bail!("entry {expected} is missing");
        }
        expected += 1;
        let event = decode_event(&entry.event).map_err(|e| anyhow::anyhow!("entry {}: {e}", entry.seq))?;
        registry.apply(entry.seq, &entry.signer, &event);
    }
    if expected != size {
        bail!("the log holds {expected} entries but its tree has {size}");
    }
    for mirror in mirrors {
        let log = mirror.log_id();
        if log == own.log_id() {
            continue;
        }
        // Entries past the newest stored checkpoint (a catch-up stopped
        // between two) are taken when the mirror reaches its next one.
        let checkpointed = mirror
            .latest_checkpoint()
            .with_context(|| format!("reading the newest checkpoint of mirrored log {log}"))?
            .map_or(0, |(size, _)| size);
        cut = cut.with(log, checkpointed);
        if !trust.trusts(&log) {
            continue;
        }
        // The registry needs every registry record of the mirror, indexed
        // or not: index the rest here rather than wait a bounded time.
        mirror.catch_up().with_context(|| format!("indexing mirrored log {log}"))?;
        let seqs = mirror
            .lookup(&IndexKey::Registry, None, usize::MAX)
            .with_context(|| format!("listing the registry records of mirrored log {log}"))?;
        for seq in seqs.into_iter().take_while(|seq| *seq < checkpointed) {
            let entry = mirror
                .entry(seq)
                .with_context(|| format!("reading entry {seq} of mirrored log {log}"))?
                .with_context(|| format!("entry {seq} of mirrored log {log} is indexed but missing"))?;
            let event =
                decode_event(&entry.event).map_err(|e| anyhow::anyhow!("entry {seq} of mirrored log {log}: {e}"))?;
            registry.apply_in(log, seq, &entry.signer, &event);
        }
    }
    Ok(Snapshot { registry, cut })
}

pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
