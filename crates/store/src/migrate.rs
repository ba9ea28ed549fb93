//! Store layouts, and the in-place upgrade to layout 3.
//!
//! Layout 1 (qtrace up to issue 14) wrote, on every append, the entry and
//! all of its derived keys: `H` hash → seq, `N` one key per perfect Merkle
//! node, `D` dedup key → seq and `I` one key per lookup posting. Layout 2
//! kept the Merkle hashes as C2SP tiles (`T`, see [`crate::tiles`]) and let
//! the indexes (`H`, `D`, packed postings `P`, watermark `W`) follow the
//! log, in the log's own tree. Layout 3 moves those indexes to a second
//! sled database beside the store (`DIR.index`), so an append's flush no
//! longer writes index pages. A store marks its layout with the `meta` key
//! `layout` = `[3]`, written when it is created.
//!
//! [`SledStore::migrate`] upgrades a layout-1 or layout-2 store in place.
//! Per log tree it writes the tiles from the entries (layout 1 only),
//! checks every stored checkpoint's root against the tiles (same log, same
//! roots), then deletes the derived families the log tree no longer holds
//! (`H`, `N`, `D`, `I`, `P`, `W`), so the follower re-derives the indexes,
//! into the index database, from sequence 0. The marker is written last.
//! Entries (`E`), checkpoints (`C`) and the `meta` tree (cosignatures,
//! equivocation evidence, federation state) are not written at all.
//!
//! Killed at any moment and run again, it finishes: writing a tile from the
//! entries, checking a root and deleting a family are each idempotent, and
//! until the marker is written the store is refused by [`SledStore::open`],
//! so nothing else runs on a half-migrated store.

use std::path::Path;

use qtrace_ledger::entry::Entry;
use qtrace_ledger::hash::LogId;
use qtrace_ledger::merkle;
use qtrace_ledger::note::{Checkpoint, Note};

use crate::tiles::{self, Frontier};
use crate::{DEFAULT_CACHE_BYTES, Result, SledStore, StoreError, open_db, reclaim};

/// The layout this build reads and writes: layout 3, with entries stored
/// compressed once their log has a dictionary ([`crate::codec`]).
pub const LAYOUT: u8 = 4;
/// Layout 3: as [`LAYOUT`] with every entry stored as its bytes. A layout-3
/// store is a layout-4 store whose logs have no dictionary yet, so opening
/// one only rewrites its marker; the marker keeps a build that cannot read
/// compressed entries from opening a store that has them.
const LAYOUT_3: u8 = 3;
/// Layout 2: tiles, and the follower's indexes in the log's tree.
const LAYOUT_2: u8 = 2;
/// The `meta` key holding the layout marker.
pub(crate) const LAYOUT_KEY: &[u8] = b"layout";

/// Families deleted by the migration: layout 1's derived keys, and the
/// follower's postings and watermark (absent in layout 1; deleting them
/// makes a rerun start the follower from 0 too).
const OLD_FAMILIES: [u8; 6] = [b'H', b'N', b'D', b'I', b'P', b'W'];
/// Keys per sled batch while migrating, so memory stays flat.
const CHUNK: usize = 16_384;

/// Refuses an old or unknown layout; marks a store without logs as the
/// current layout, and a layout-3 store as layout 4 (the same keys; layout
/// 4 only adds compressed entry values and the `Z` dictionary, which a
/// layout-3 store has none of yet).
pub(crate) fn check_or_mark(db: &sled::Db, dir: &Path) -> Result<()> {
    let meta = db.open_tree("meta")?;
    match meta.get(LAYOUT_KEY)? {
        Some(found) if found.as_ref() == [LAYOUT] => Ok(()),
        Some(found) if found.as_ref() == [LAYOUT_3] => {
            meta.insert(LAYOUT_KEY, &[LAYOUT])?;
            db.flush()?;
            Ok(())
        }
        Some(found) if found.as_ref() == [LAYOUT_2] => Err(StoreError::OldLayout {
            store: dir.to_path_buf(),
            layout: LAYOUT_2,
            data_dir: dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(dir).to_path_buf(),
        }),
        Some(found) => Err(StoreError::UnknownLayout { found: found.to_vec() }),
        None if has_log_keys(db)? => Err(StoreError::OldLayout {
            store: dir.to_path_buf(),
            layout: 1,
            // The node keeps its store in DATA/store.
            data_dir: dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(dir).to_path_buf(),
        }),
        None => {
            meta.insert(LAYOUT_KEY, &[LAYOUT])?;
            db.flush()?;
            Ok(())
        }
    }
}

/// Whether any log tree holds a key (an empty log tree is the same in
/// every layout).
fn has_log_keys(db: &sled::Db) -> Result<bool> {
    for (_, tree) in log_trees(db)? {
        if !tree.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn log_trees(db: &sled::Db) -> Result<Vec<(LogId, sled::Tree)>> {
    let mut out = Vec::new();
    for name in db.tree_names() {
        if let Some(hex) = name.strip_prefix(b"log/")
            && let Ok(text) = std::str::from_utf8(hex)
            && let Ok(id) = LogId::from_hex(text)
        {
            out.push((id, db.open_tree(&name)?));
        }
    }
    Ok(out)
}

/// What [`SledStore::migrate`] is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateStep {
    /// Writing tiles from the entries: `done` of `total` entries.
    Tiles,
    /// Checking stored checkpoints against the tiles: `done` of `total`.
    Checkpoints,
    /// Deleting the old derived keys: `done` keys so far (`total` unknown,
    /// 0).
    DropOld,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateProgress {
    pub log: LogId,
    pub step: MigrateStep,
    pub done: u64,
    pub total: u64,
}

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateSummary {
    /// The store had the current layout already (or layout 3, whose
    /// marker alone is rewritten); nothing else was written.
    pub already_current: bool,
    /// Log trees migrated.
    pub logs: usize,
    /// Entries read (every log).
    pub entries: u64,
    /// Checkpoints whose root was checked against the tiles.
    pub checkpoints: u64,
    /// Tile keys written.
    pub tiles: u64,
    /// Old derived keys deleted.
    pub removed_keys: u64,
}

impl SledStore {
    /// Upgrades the store in `dir` (the node's `DATA/store`) from layout 1,
    /// 2 or 3 to layout [`LAYOUT`] in place, calling `progress` as it goes. A store
    /// with the current layout is left alone (`already_current`). Killed at
    /// any point, run it again.
    pub fn migrate(dir: &Path, progress: impl FnMut(&MigrateProgress)) -> Result<MigrateSummary> {
        let db = open_db(dir, DEFAULT_CACHE_BYTES)?;
        migrate_db(&db, progress)
    }
}

pub(crate) fn migrate_db(db: &sled::Db, mut progress: impl FnMut(&MigrateProgress)) -> Result<MigrateSummary> {
    let meta = db.open_tree("meta")?;
    // Layout 2 has its tiles already; layout 1 (no marker) has none.
    let has_tiles = match meta.get(LAYOUT_KEY)? {
        Some(found) if found.as_ref() == [LAYOUT] => {
            return Ok(MigrateSummary { already_current: true, ..MigrateSummary::default() });
        }
        Some(found) if found.as_ref() == [LAYOUT_3] => {
            meta.insert(LAYOUT_KEY, &[LAYOUT])?;
            db.flush()?;
            return Ok(MigrateSummary { already_current: true, ..MigrateSummary::default() });
        }
        Some(found) if found.as_ref() == [LAYOUT_2] => true,
        Some(found) => return Err(StoreError::UnknownLayout { found: found.to_vec() }),
        None => false,
    };
    let mut summary = MigrateSummary::default();
    for (log, tree) in log_trees(db)? {
        let (entries, tile_keys) =
            if has_tiles { (log_size(&tree)?, 0) } else { write_tiles(&tree, log, &mut progress)? };
        summary.entries += entries;
        summary.tiles += tile_keys;
        summary.checkpoints += check_checkpoints(&tree, log, entries, &mut progress)?;
        summary.removed_keys += drop_old(&tree, log, None, &mut progress)?;
        summary.logs += 1;
    }
    db.flush()?;
    // Last: only now may the store be opened.
    meta.insert(LAYOUT_KEY, &[LAYOUT])?;
    db.flush()?;
    Ok(summary)
}

/// Entries in a log tree: one past the last entry's sequence number.
fn log_size(tree: &sled::Tree) -> Result<u64> {
    match tree.scan_prefix([b'E']).next_back() {
        None => Ok(0),
        Some(kv) => Ok(crate::seq_from_key(&kv?.0)? + 1),
    }
}

/// Writes every tile of the log from its entries; returns the number of
/// entries and of tile keys written.
pub(crate) fn write_tiles(
    tree: &sled::Tree,
    log: LogId,
    progress: &mut impl FnMut(&MigrateProgress),
) -> Result<(u64, u64)> {
    let total = log_size(tree)?;
    let mut frontier = Frontier::default();
    let mut tile_keys = 0u64;
    let mut pending = 0usize;
    let mut expected = 0u64;
    for kv in tree.scan_prefix([b'E']) {
        let (k, v) = kv?;
        let seq = crate::seq_from_key(&k)?;
        // A gap is damage to the log itself; no layout can paper over it.
        if seq != expected {
            return Err(StoreError::Corrupt(format!("entry {expected} is missing")));
        }
        let entry = Entry::decode(&v)?;
        frontier.append(entry.hash().0)?;
        expected += 1;
        pending += 1;
        if pending >= CHUNK {
            tile_keys += apply_tiles(tree, &mut frontier)?;
            pending = 0;
            progress(&MigrateProgress { log, step: MigrateStep::Tiles, done: expected, total });
        }
    }
    tile_keys += apply_tiles(tree, &mut frontier)?;
    progress(&MigrateProgress { log, step: MigrateStep::Tiles, done: expected, total });
    Ok((expected, tile_keys))
}

fn apply_tiles(tree: &sled::Tree, frontier: &mut Frontier) -> Result<u64> {
    let mut batch = sled::Batch::default();
    let mut n = 0u64;
    for (k, v) in frontier.drain() {
        batch.insert(k, v);
        n += 1;
    }
    let applied = tree.apply_batch(batch);
    reclaim(n as usize);
    applied?;
    Ok(n)
}

/// Checks that every stored checkpoint of at most `size` entries commits to
/// the root the tiles give. The signature is not checked here (`qtrace-node
/// audit` does); a root that differs means the entries are not the ones the
/// log signed, and the migration stops rather than write a different tree.
pub(crate) fn check_checkpoints(
    tree: &sled::Tree,
    log: LogId,
    size: u64,
    progress: &mut impl FnMut(&MigrateProgress),
) -> Result<u64> {
    let total = tree.scan_prefix([b'C']).count() as u64;
    let mut done = 0u64;
    for kv in tree.scan_prefix([b'C']) {
        let (k, v) = kv?;
        let at = crate::seq_from_key(&k)?;
        let bad = |detail: String| StoreError::Corrupt(format!("checkpoint at size {at}: {detail}"));
        let text = std::str::from_utf8(&v).map_err(|_| bad("is not UTF-8".into()))?;
        let note = Note::parse(text).map_err(|e| bad(e.to_string()))?;
        let checkpoint = Checkpoint::parse_body(note.text()).map_err(|e| bad(e.to_string()))?;
        if checkpoint.size != at {
            return Err(bad(format!("the note says size {}", checkpoint.size)));
        }
        if at > size {
            return Err(bad(format!("the log has only {size} entries")));
        }
        let root = merkle::root(&tiles::nodes(tree), at).map_err(tiles::tree_error)?;
        if root != checkpoint.root {
            return Err(bad(format!("root {} but the entries give {}", hex(&checkpoint.root), hex(&root))));
        }
        done += 1;
        if done.is_multiple_of(1024) || done == total {
            progress(&MigrateProgress { log, step: MigrateStep::Checkpoints, done, total });
        }
    }
    Ok(done)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deletes the old derived families in batches; at most `limit` keys when
/// given (tests stop a migration half-way with it). Returns the keys
/// deleted.
pub(crate) fn drop_old(
    tree: &sled::Tree,
    log: LogId,
    limit: Option<u64>,
    progress: &mut impl FnMut(&MigrateProgress),
) -> Result<u64> {
    let mut removed = 0u64;
    for family in OLD_FAMILIES {
        loop {
            let room = limit.map_or(CHUNK as u64, |l| l.saturating_sub(removed).min(CHUNK as u64));
            if room == 0 {
                return Ok(removed);
            }
            let keys: Vec<sled::IVec> =
                tree.scan_prefix([family]).keys().take(room as usize).collect::<std::result::Result<_, _>>()?;
            if keys.is_empty() {
                break;
            }
            let mut batch = sled::Batch::default();
            for k in &keys {
                batch.remove(k.clone());
            }
            let applied = tree.apply_batch(batch);
            reclaim(keys.len());
            applied?;
            removed += keys.len() as u64;
            progress(&MigrateProgress { log, step: MigrateStep::DropOld, done: removed, total: 0 });
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use qtrace_ledger::merkle::MemTree;
    use tempfile::TempDir;

    use super::*;
    use crate::NewEntry;
    use crate::legacy::LegacyStore;
    use crate::tests::{new_entries, sample_log, sign, tree_of};

    fn ok<T>(r: Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    const META: [(&[u8], &[u8]); 2] = [(b"peer/abc", b"federation state"), (b"evidence/1", b"two checkpoints")];

    /// A layout-1 store of 300 entries appended in batches of 1, 3, 100
    /// and the rest, with meta values; the entries and their tree.
    fn legacy(dir: &Path) -> (LogId, Vec<NewEntry>, MemTree) {
        let log = sample_log(320);
        let new = new_entries(&log.entries);
        let store = ok(LegacyStore::create(dir));
        for (from, to) in [(0, 1), (1, 4), (4, 104), (104, 300)] {
            ok(store.append(log.log_id, &new[from..to], |size, root| sign(size, root).map(Some)));
        }
        for (k, v) in META {
            ok(store.put_meta(k, v));
        }
        let tree = tree_of(&new[..300]);
        (log.log_id, new, tree)
    }

    type Keys = BTreeMap<Vec<u8>, Vec<u8>>;

    /// Every key of the store: per tree name.
    fn contents(dir: &Path) -> BTreeMap<Vec<u8>, Keys> {
        let db = ok(open_db(dir, 1 << 20));
        let mut out = BTreeMap::new();
        for name in db.tree_names() {
            let tree = ok(db.open_tree(&name).map_err(StoreError::from));
            let keys: Keys = tree
                .iter()
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<std::result::Result<_, _>>()
                .unwrap_or_else(|e| panic!("{e}"));
            out.insert(name.to_vec(), keys);
        }
        out
    }

    fn family(keys: &Keys, prefixes: &[u8]) -> Keys {
        keys.iter().filter(|(k, _)| prefixes.contains(&k[0])).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn log_tree(log: LogId) -> Vec<u8> {
        format!("log/{}", log.to_hex()).into_bytes()
    }

    #[test]
    fn a_legacy_store_is_refused_then_migrated_keeping_entries_checkpoints_and_meta() {
        let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
        let store_dir = dir.path().join("store");
        let (log_id, new, tree) = legacy(&store_dir);
        let before = contents(&store_dir);
        let old = &before[&log_tree(log_id)];
        for prefix in [b'E', b'C', b'H', b'N', b'D', b'I'] {
            assert!(old.keys().any(|k| k[0] == prefix), "the legacy store has {} keys", prefix as char);
        }

        match SledStore::open(&store_dir) {
            Err(e @ StoreError::OldLayout { .. }) => {
                let message = e.to_string();
                let command = format!("qtrace-node migrate --data {}", dir.path().display());
                assert!(message.contains(&command), "{message}");
            }
            Err(other) => panic!("old layout: {other}"),
            Ok(_) => panic!("an old-layout store was opened"),
        }
        assert_eq!(contents(&store_dir), before, "a refused open writes nothing");

        let mut steps = Vec::new();
        let summary = ok(SledStore::migrate(&store_dir, |p| steps.push(p.step)));
        let want = MigrateSummary {
            already_current: false,
            logs: 1,
            entries: 300,
            checkpoints: 4,
            tiles: 3,
            removed_keys: family(old, b"HNDI").len() as u64,
        };
        assert_eq!(summary, want);
        for step in [MigrateStep::Tiles, MigrateStep::Checkpoints, MigrateStep::DropOld] {
            assert!(steps.contains(&step), "{step:?} reported: {steps:?}");
        }

        let after = contents(&store_dir);
        let new_log = &after[&log_tree(log_id)];
        assert_eq!(family(new_log, b"EC"), family(old, b"EC"), "entries and checkpoints byte-identical");
        let mut meta = after[&b"meta"[..]].clone();
        assert_eq!(meta.remove(LAYOUT_KEY), Some(vec![LAYOUT]));
        assert_eq!(meta, before[&b"meta"[..]], "meta byte-identical but for the marker");
        assert_eq!(family(new_log, b"HNDIPW"), Keys::new(), "no old derived key left");

        let store = ok(SledStore::open(&store_dir));
        let logs = ok(store.log(log_id));
        assert_eq!((logs.head().size, logs.head().root), (300, tree.root()));
        let tiles_of = |set: std::collections::BTreeSet<(Vec<u8>, Vec<u8>)>| -> Keys {
            set.into_iter().filter(|(k, _)| k[0] == b'T').collect()
        };
        assert_eq!(tiles_of(ok(logs.live_derived())), tiles_of(ok(logs.derived_from_entries())));
        for size in [1u64, 4, 104, 255, 256, 257, 300] {
            assert_eq!(ok(logs.root(size)), tree.root_at(size).unwrap_or_else(|e| panic!("{e}")));
            assert_eq!(
                ok(logs.inclusion_proof(size / 2, size)),
                tree.inclusion_proof(size / 2, size).unwrap_or_else(|e| panic!("{e}"))
            );
        }
        // The migrated log carries on.
        let head = ok(logs.append(&new[300..], true, sign));
        assert_eq!(head.root, tree_of(&new).root());
        drop((logs, store));

        let again = ok(SledStore::migrate(&store_dir, |_| {}));
        assert_eq!(again, MigrateSummary { already_current: true, ..MigrateSummary::default() });
    }

    /// A layout-2 store (issue 14's first redesign: the follower's indexes
    /// in the log's own tree), made from a layout-3 one by moving its index
    /// keys into the log tree, marking it 2 and deleting the index database.
    fn layout_2(store_dir: &Path) -> (LogId, Vec<NewEntry>, Keys) {
        let log = sample_log(300);
        let new = new_entries(&log.entries);
        {
            let store = ok(SledStore::open(store_dir));
            let logs = ok(store.log(log.log_id));
            ok(logs.append(&new[..200], true, sign));
            ok(logs.catch_up());
            let index = ok(store.index_db.open_tree(log_tree(log.log_id)).map_err(StoreError::from));
            let tree = ok(store.db.open_tree(log_tree(log.log_id)).map_err(StoreError::from));
            // Layout 2 kept postings and the watermark as they are now, and
            // one sled key per entry for its hash and dedup key.
            for kv in index.iter() {
                let (k, v) = ok(kv.map_err(StoreError::from));
                if matches!(k.first(), Some(b'P' | b'W')) {
                    ok(tree.insert(k, v).map_err(StoreError::from));
                }
            }
            for n in &new[..200] {
                let seq = n.entry.seq.to_be_bytes().to_vec();
                let dedup = crate::dedup_key(&n.entry.signer, &n.entry.event);
                ok(tree.insert([&[b'H'][..], &n.hash.0].concat(), seq.clone()).map_err(StoreError::from));
                ok(tree.insert([&[b'D'][..], &dedup].concat(), seq).map_err(StoreError::from));
            }
            ok(store.meta().and_then(|m| m.put(LAYOUT_KEY, &[LAYOUT_2])));
            ok(store.flush());
        }
        ok(std::fs::remove_dir_all(crate::index_dir(store_dir)).map_err(|e| StoreError::Corrupt(e.to_string())));
        let before = contents(store_dir);
        (log.log_id, new, before[&log_tree(log.log_id)].clone())
    }

    #[test]
    fn a_layout_2_store_is_refused_then_migrated_moving_its_indexes() {
        let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
        let store_dir = dir.path().join("store");
        let (log_id, new, old) = layout_2(&store_dir);
        for prefix in [b'E', b'C', b'T', b'H', b'D', b'P', b'W'] {
            assert!(old.keys().any(|k| k[0] == prefix), "the layout-2 log tree has {} keys", prefix as char);
        }
        match SledStore::open(&store_dir) {
            Err(e @ StoreError::OldLayout { layout: 2, .. }) => {
                let message = e.to_string();
                assert!(message.contains("layout 2") && message.contains("qtrace-node migrate --data"), "{message}");
            }
            Err(other) => panic!("layout 2: {other}"),
            Ok(_) => panic!("a layout-2 store was opened"),
        }
        assert!(!crate::index_dir(&store_dir).exists(), "a refused open creates no index database");
        let summary = ok(SledStore::migrate(&store_dir, |_| {}));
        let want = MigrateSummary {
            already_current: false,
            logs: 1,
            entries: 200,
            checkpoints: 1,
            tiles: 0,
            removed_keys: family(&old, b"HDPW").len() as u64,
        };
        assert_eq!(summary, want);
        let after = &contents(&store_dir)[&log_tree(log_id)];
        assert_eq!(family(after, b"ECT"), family(&old, b"ECT"), "entries, checkpoints and tiles byte-identical");
        assert_eq!(family(after, b"HDPW"), Keys::new(), "no index key left in the log tree");
        let store = ok(SledStore::open(&store_dir));
        let logs = ok(store.log(log_id));
        ok(logs.catch_up());
        assert!(ok(logs.live_derived()) == ok(logs.derived_from_entries()), "the indexes, rebuilt beside");
        for n in &new[..200] {
            assert_eq!(ok(logs.duplicate_of(&n.entry.signer, &n.entry.event)), Some(n.entry.seq));
            assert_eq!(ok(logs.seq_of(&n.hash)), Some(n.entry.seq));
        }
        ok(logs.append(&new[200..], true, sign));
        assert_eq!(logs.head().root, tree_of(&new).root());
    }

    #[test]
    fn a_migration_stopped_anywhere_finishes_when_run_again() {
        let reference = {
            let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
            legacy(dir.path());
            ok(SledStore::migrate(dir.path(), |_| {}));
            contents(dir.path())
        };
        type Stop = fn(&sled::Db, LogId);
        fn tree(db: &sled::Db, log: LogId) -> sled::Tree {
            ok(db.open_tree(log_tree(log)).map_err(StoreError::from))
        }
        let cases: Vec<(&str, Stop)> = vec![
            ("before anything", |_, _| {}),
            ("after the tiles", |db, log| {
                ok(write_tiles(&tree(db, log), log, &mut |_| {}));
            }),
            ("with a partial tile at an earlier width", |db, log| {
                ok(write_tiles(&tree(db, log), log, &mut |_| {}));
                let t = tree(db, log);
                let k = crate::tiles::tile_key(qtrace_ledger::tiles::TileId::new(0, 1));
                let tile = ok(t.get(&k).map_err(StoreError::from)).map(|v| v.to_vec()).unwrap_or_default();
                ok(t.insert(k, &tile[..32 * 3]).map_err(StoreError::from));
            }),
            ("after the checkpoints were checked", |db, log| {
                let t = tree(db, log);
                let (n, _) = ok(write_tiles(&t, log, &mut |_| {}));
                ok(check_checkpoints(&t, log, n, &mut |_| {}));
            }),
            ("ten old keys deleted", |db, log| {
                let t = tree(db, log);
                ok(write_tiles(&t, log, &mut |_| {}));
                assert_eq!(ok(drop_old(&t, log, Some(10), &mut |_| {})), 10);
            }),
            ("every old key deleted, no marker yet", |db, log| {
                let t = tree(db, log);
                ok(write_tiles(&t, log, &mut |_| {}));
                ok(drop_old(&t, log, None, &mut |_| {}));
            }),
            ("old keys half deleted before any tile", |db, log| {
                ok(drop_old(&tree(db, log), log, Some(1500), &mut |_| {}));
            }),
        ];
        for (name, stop) in cases {
            let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
            let (log_id, _, _) = legacy(dir.path());
            {
                let db = ok(open_db(dir.path(), 1 << 20));
                stop(&db, log_id);
                ok(db.flush().map(|_| ()).map_err(StoreError::from));
            }
            assert!(
                matches!(SledStore::open(dir.path()), Err(StoreError::OldLayout { .. })),
                "{name}: a half-migrated store is refused"
            );
            let summary = ok(SledStore::migrate(dir.path(), |_| {}));
            assert!(!summary.already_current, "{name}");
            assert_eq!(contents(dir.path()), reference, "{name}: run again, the migration finishes");
        }
    }

    #[test]
    fn a_checkpoint_the_entries_do_not_give_stops_the_migration() {
        let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
        let (log_id, _, _) = legacy(dir.path());
        {
            let db = ok(open_db(dir.path(), 1 << 20));
            let t = ok(db.open_tree(log_tree(log_id)).map_err(StoreError::from));
            // A well-signed checkpoint at size 104 over another root.
            let forged = ok(sign(104, &[7; 32]).map_err(|e| StoreError::Corrupt(e.to_string())));
            ok(t.insert(crate::key(b'C', &104u64.to_be_bytes()), forged.as_bytes()).map_err(StoreError::from));
            ok(db.flush().map(|_| ()).map_err(StoreError::from));
        }
        match SledStore::migrate(dir.path(), |_| {}) {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("checkpoint at size 104: root 0707"), "{message}");
            }
            other => panic!("a forged root: {other:?}"),
        }
        assert!(matches!(SledStore::open(dir.path()), Err(StoreError::OldLayout { .. })), "no marker written");
    }

    #[test]
    fn layout_markers() {
        let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
        drop(ok(SledStore::open(dir.path())));
        assert_eq!(contents(dir.path())[&b"meta"[..]].get(LAYOUT_KEY), Some(&vec![LAYOUT]), "a new store is marked");
        // Layout 3 (every entry stored as its bytes) is read as it is and
        // marked as the current layout, by opening it or by `migrate`.
        for via_migrate in [false, true] {
            let store = ok(SledStore::open(dir.path()));
            ok(store.meta().and_then(|m| m.put(LAYOUT_KEY, &[LAYOUT_3])));
            drop(store);
            if via_migrate {
                assert!(ok(SledStore::migrate(dir.path(), |_| {})).already_current);
            } else {
                drop(ok(SledStore::open(dir.path())));
            }
            assert_eq!(contents(dir.path())[&b"meta"[..]].get(LAYOUT_KEY), Some(&vec![LAYOUT]), "layout 3 marked");
        }
        let store = ok(SledStore::open(dir.path()));
        ok(store.meta().and_then(|m| m.put(LAYOUT_KEY, &[5])));
        drop(store);
        match SledStore::open(dir.path()) {
            Err(StoreError::UnknownLayout { found }) => assert_eq!(found, [5]),
            other => panic!("layout 5: {:?}", other.map(|_| ())),
        }
        assert!(matches!(SledStore::migrate(dir.path(), |_| {}), Err(StoreError::UnknownLayout { .. })));
        let temporary = ok(SledStore::temporary());
        assert_eq!(ok(ok(temporary.meta()).get(LAYOUT_KEY)), Some(vec![LAYOUT]));
    }
}
