//! The corrupt disk: a store built by a real node, then damaged offline
//! with sled directly, one way per copy. `qtrace-node audit` must catch
//! every damage and say where it is; the node's startup check must refuse
//! what it is meant to catch (it is deliberately cheap: the newest
//! checkpoint against the tree's frontier, the last entry, and the run of
//! sequence numbers it replays into the registry; it verifies no other
//! signature, Merkle node or checkpoint); `--rebuild-indexes` must repair
//! damage to derived state and nothing else.

use std::path::Path;

use qtrace_ledger::hash::LogId;
use qtrace_ledger::pb;
use qtrace_tests::*;

/// The store the cases corrupt: 41 entries (32 + 8 + 1, so the tree's
/// frontier is the level-5 node 0, the level-3 node 4 and leaf 40), with a
/// checkpoint at every size from 1 to 21, at 33 and from 34 to 41.
const SIZE: u64 = 41;
/// A production record in the middle, away from the frontier.
const MIDDLE: u64 = 15;
const MIDDLE_LOT: &str = "AUDIT-LOT-06";
const LAST_LOT: &str = "AUDIT-LOT-LAST";
/// A checkpoint that is neither the first nor the latest.
const OLDER_CHECKPOINT: u64 = 20;

/// What the node does when started on a damaged copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Serves: the cheap startup check does not look there.
    Serves,
    /// Exits non-zero saying "refusing to start".
    Refuses,
}

/// What `--rebuild-indexes` does to a damaged copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rebuild {
    /// Serves, and the audit passes afterwards: the damage was derived state.
    Repairs,
    /// The node refuses to start, and the audit still finds the damage.
    Refuses,
    /// The node refuses to start, and the audit still finds the damage,
    /// now saying these (the rebuild replaced the derived state that the
    /// audit complained about first).
    RefusesSaying(&'static [&'static str]),
    /// The node serves (the damage is where startup does not look), and
    /// the audit still finds the damage.
    ServesUnrepaired,
}

struct Case {
    name: &'static str,
    /// Which of the log's trees `damage` changes.
    database: Database,
    damage: fn(&sled::Tree),
    /// Substrings of the audit's output that locate the damage.
    audit_says: &'static [&'static str],
    start: Start,
    rebuild: Rebuild,
}

/// The store's two sled databases: the log part (`DATA/store`: entries,
/// tiles, checkpoints) and the indexes beside it (`DATA/store.index`).
#[derive(Debug, Clone, Copy)]
enum Database {
    Log,
    Index,
}

fn entry_key(seq: u64) -> Vec<u8> {
    let mut key = vec![b'E'];
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn checkpoint_key(size: u64) -> Vec<u8> {
    let mut key = vec![b'C'];
    key.extend_from_slice(&size.to_be_bytes());
    key
}

/// The key of a Merkle tile (C2SP tlog-tiles: tile level, tile index).
fn tile_key(level: u8, index: u64) -> Vec<u8> {
    let mut key = vec![b'T', level];
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The lot index key of `lot` of the test GTIN, for entry `seq`.
/// The open postings block of a lot's index key (`P`, then the index key
/// bytes, then the open block's suffix 0xFFFFFFFF; see
/// crates/store/src/postings.rs).
fn lot_index_key(lot: &str) -> Vec<u8> {
    let mut key = vec![b'P', b'l'];
    key.extend_from_slice(GTIN.as_bytes());
    key.extend_from_slice(lot.as_bytes());
    key.push(0);
    key.extend_from_slice(&u32::MAX.to_be_bytes());
    key
}

fn get(tree: &sled::Tree, key: &[u8]) -> Vec<u8> {
    tree.get(key).expect("sled read").unwrap_or_else(|| panic!("key {} is in the store", hex::encode(key))).to_vec()
}

fn put(tree: &sled::Tree, key: &[u8], value: &[u8]) {
    tree.insert(key, value).expect("sled write");
}

/// Flips one bit of a lot name inside an entry's event, so the event still
/// decodes and validates (another valid lot) but its signature no longer
/// verifies.
fn flip_in_event(tree: &sled::Tree, seq: u64, lot: &str) {
    let mut bytes = get(tree, &entry_key(seq));
    let at = bytes
        .windows(lot.len())
        .position(|w| w == lot.as_bytes())
        .unwrap_or_else(|| panic!("entry {seq} names lot {lot}"));
    bytes[at + lot.len() - 1] ^= 1;
    let event = &bytes[qtrace_ledger::entry::ENTRY_HEADER_LEN..];
    qtrace_ledger::event::decode_event(event).expect("the damaged event is still a valid event");
    put(tree, &entry_key(seq), &bytes);
}

fn swap_entries(tree: &sled::Tree, a: u64, b: u64) {
    let (first, second) = (get(tree, &entry_key(a)), get(tree, &entry_key(b)));
    put(tree, &entry_key(a), &second);
    put(tree, &entry_key(b), &first);
}

/// Changes the stored hash of leaf `leaf`, which lives in the level-0 tile
/// `leaf / 256` at position `leaf % 256`.
fn change_leaf(tree: &sled::Tree, leaf: u64) {
    let key = tile_key(0, leaf / 256);
    let mut tile = get(tree, &key);
    tile[(leaf % 256) as usize * 32] ^= 0x80;
    put(tree, &key, &tile);
}

/// Replaces the root line of a stored checkpoint note with another root.
fn change_checkpoint_root(tree: &sled::Tree, size: u64) {
    let note = String::from_utf8(get(tree, &checkpoint_key(size))).expect("note is text");
    let mut lines: Vec<String> = note.split('\n').map(str::to_string).collect();
    // Another first base64 character is another root (its first six bits).
    let first = if lines[2].starts_with('A') { "B" } else { "A" };
    lines[2].replace_range(..1, first);
    put(tree, &checkpoint_key(size), lines.join("\n").as_bytes());
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "(a) a byte of a middle entry's event flipped",
            database: Database::Log,
            damage: |t| flip_in_event(t, MIDDLE, MIDDLE_LOT),
            audit_says: &["entry 15: ", "signature"],
            start: Start::Serves,
            rebuild: Rebuild::Refuses,
        },
        Case {
            name: "(a) a byte of the last entry's event flipped",
            database: Database::Log,
            damage: |t| flip_in_event(t, SIZE - 1, LAST_LOT),
            audit_says: &["entry 40: ", "signature"],
            start: Start::Refuses,
            rebuild: Rebuild::Refuses,
        },
        Case {
            name: "(b) a middle entry dropped",
            database: Database::Log,
            damage: |t| {
                t.remove(entry_key(MIDDLE)).expect("sled remove");
            },
            audit_says: &["entry 15: is missing"],
            start: Start::Refuses,
            rebuild: Rebuild::Refuses,
        },
        Case {
            name: "(b) the last entry dropped",
            database: Database::Log,
            damage: |t| {
                t.remove(entry_key(SIZE - 1)).expect("sled remove");
            },
            // The follower's watermark (41) is past the log's end, which
            // the store notices first when it opens the log.
            audit_says: &["entry 40 was indexed but is missing from the log"],
            start: Start::Refuses,
            // Rebuilt from the 40 entries left, the index no longer covers
            // entry 40; the checkpoint still does.
            rebuild: Rebuild::RefusesSaying(&["checkpoint at size 41"]),
        },
        Case {
            name: "(c) two middle entries swapped",
            database: Database::Log,
            damage: |t| swap_entries(t, MIDDLE, MIDDLE + 1),
            audit_says: &["entry 15: ", "entry 16"],
            start: Start::Refuses,
            rebuild: Rebuild::Refuses,
        },
        Case {
            name: "(c) the last two entries swapped",
            database: Database::Log,
            damage: |t| swap_entries(t, SIZE - 2, SIZE - 1),
            audit_says: &["entry 39: ", "entry 40"],
            start: Start::Refuses,
            rebuild: Rebuild::Refuses,
        },
        Case {
            name: "(d) a lot index key removed",
            database: Database::Index,
            damage: |t| {
                let key = lot_index_key(MIDDLE_LOT);
                assert!(t.remove(key).expect("sled remove").is_some(), "the lot index key exists");
            },
            audit_says: &["derived state: ", "lookup index", "is missing"],
            start: Start::Serves,
            rebuild: Rebuild::Repairs,
        },
        Case {
            name: "(d) a bogus index key added",
            database: Database::Index,
            // A well-formed open block (no sealed block; a run of one
            // posting, MIDDLE) under a lot no entry names.
            damage: |t| put(t, &lot_index_key("NO-SUCH-LOT"), &[0, 1, MIDDLE as u8]),
            audit_says: &["derived state: ", "lookup index", "not derived from any entry"],
            start: Start::Serves,
            rebuild: Rebuild::Repairs,
        },
        // The Merkle hashes are C2SP tiles: the nodes of levels 1 to 7 are
        // hashed up from the level-0 tile when needed, so a leaf hash inside
        // the tree also feeds the frontier node (level 5, index 0) the node
        // loads at start, and the node refuses to start (with the old
        // per-node layout it served, the damage being off the frontier).
        Case {
            name: "(e) a Merkle leaf hash inside the tree changed",
            database: Database::Log,
            damage: |t| change_leaf(t, MIDDLE),
            audit_says: &["entry 15: Merkle node level 0 index 15"],
            start: Start::Refuses,
            rebuild: Rebuild::Repairs,
        },
        Case {
            name: "(e) the Merkle leaf hash on the tree's frontier changed",
            database: Database::Log,
            damage: |t| change_leaf(t, SIZE - 1),
            audit_says: &["entry 40: Merkle node level 0 index 40"],
            start: Start::Refuses,
            rebuild: Rebuild::Repairs,
        },
        Case {
            name: "(e) the Merkle tile holding the frontier removed",
            database: Database::Log,
            damage: |t| {
                assert!(t.remove(tile_key(0, 0)).expect("sled remove").is_some(), "the tile exists");
            },
            audit_says: &["tile (level 0, index 0)", "not stored"],
            start: Start::Refuses,
            rebuild: Rebuild::Repairs,
        },
        Case {
            name: "(f) the latest checkpoint's root line altered",
            database: Database::Log,
            damage: |t| change_checkpoint_root(t, SIZE),
            audit_says: &["checkpoint at size 41: ", "signature"],
            start: Start::Refuses,
            rebuild: Rebuild::Refuses,
        },
        Case {
            name: "(f) an older checkpoint's root line altered",
            database: Database::Log,
            damage: |t| change_checkpoint_root(t, OLDER_CHECKPOINT),
            audit_says: &["checkpoint at size 20: ", "signature"],
            start: Start::Serves,
            rebuild: Rebuild::ServesUnrepaired,
        },
    ]
}

/// Builds the store the cases damage: the cast, productions appended one
/// by one and in a batch, inspections, a certificate, and a last production.
async fn build_store(data: &Path) -> LogId {
    let mut node = Node::start_in(data, &[]);
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;
    for i in 0..12 {
        cast.factory.append(&mut client, production(GTIN, &format!("AUDIT-LOT-{i:02}"))).await.expect("production");
    }
    let events = (12..24).map(|i| cast.factory.sign(&production(GTIN, &format!("AUDIT-LOT-{i:02}")))).collect();
    let results = client.append_batch(pb::AppendBatchRequest { events }).await.expect("batch").into_inner().results;
    assert!(results.iter().all(|r| matches!(r.outcome, Some(pb::append_result::Outcome::Receipt(_)))));
    for i in 0..6 {
        let lot = format!("AUDIT-LOT-{i:02}");
        cast.lab.append(&mut client, inspection(GTIN, &lot, &format!("SH-AUDIT-{i}"), true)).await.expect("report");
    }
    cast.body.append(&mut client, certificate(CERT_BODY, "CQC-AUDIT", FACTORY, GTIN, vec![])).await.expect("cert");
    let last = cast.factory.append(&mut client, production(GTIN, LAST_LOT)).await.expect("last production");
    assert_eq!(last.seq, SIZE - 1, "the store has the planned shape");
    let log_id = node.log_id();
    assert!(node.stop().success(), "SIGTERM exits 0");
    log_id
}

/// Opens a stopped node's store with sled directly and damages it.
fn damage(data: &Path, log_id: &LogId, database: Database, how: fn(&sled::Tree)) {
    let dir = match database {
        Database::Log => data.join("store"),
        Database::Index => data.join("store.index"),
    };
    let db = sled::open(dir).expect("opening the copy's sled store");
    let tree = db.open_tree(format!("log/{}", log_id.to_hex())).expect("the log's tree");
    how(&tree);
    db.flush().expect("sled flush");
}

/// Starts a node on `data` and says what it did; a serving node is stopped.
fn start(data: &Path, extra: &[&str]) -> Result<(), String> {
    match try_start_in(data, extra) {
        Started::Serving(mut node) => {
            assert!(node.stop().success(), "a node that served exits 0 on SIGTERM");
            Ok(())
        }
        Started::Exited { status, output } => {
            assert!(!status.success(), "a node that did not serve exited 0: {output}");
            Err(output)
        }
    }
}

/// Whether the audit fails and names every part of the case's location;
/// the complaint if not.
fn audit_locates(case: &Case, copy: &Path, when: &str) -> Result<(), String> {
    audit_says(case, case.audit_says, copy, when)
}

fn audit_says(case: &Case, says: &[&str], copy: &Path, when: &str) -> Result<(), String> {
    let (passed, output) = audit(copy);
    if passed {
        return Err(format!("{}: audit passed {when}:\n{output}", case.name));
    }
    match says.iter().find(|needle| !output.contains(**needle)) {
        Some(needle) => Err(format!("{}: audit {when} does not say {needle:?}:\n{output}", case.name)),
        None => Ok(()),
    }
}

/// Runs one case on its own copy of the store: every expectation that
/// fails is a line of the result.
fn check_case(case: &Case, data: &Path, copy: &Path, log_id: &LogId) -> Vec<String> {
    let mut failures = Vec::new();
    copy_dir(data, copy);
    damage(copy, log_id, case.database, case.damage);
    failures.extend(audit_locates(case, copy, "on the damaged store").err());

    match (case.start, start(copy, &[])) {
        (Start::Serves, Ok(())) => {}
        (Start::Refuses, Err(output)) if output.contains("refusing to start") => {}
        (want, got) => failures.push(format!("{}: expected startup to give {want:?}, got {got:?}", case.name)),
    }

    match (case.rebuild, start(copy, &["--rebuild-indexes"])) {
        (Rebuild::Repairs, Ok(())) => {
            let (passed, output) = audit(copy);
            if !passed {
                failures.push(format!("{}: --rebuild-indexes did not repair derived state:\n{output}", case.name));
            }
        }
        (Rebuild::Refuses, Err(output)) if output.contains("refusing to start") => {
            failures.extend(audit_locates(case, copy, "after --rebuild-indexes").err());
        }
        (Rebuild::RefusesSaying(says), Err(output)) if output.contains("refusing to start") => {
            failures.extend(audit_says(case, says, copy, "after --rebuild-indexes").err());
        }
        (Rebuild::ServesUnrepaired, Ok(())) => {
            failures.extend(audit_locates(case, copy, "after --rebuild-indexes").err());
        }
        (want, got) => {
            failures.push(format!("{}: expected --rebuild-indexes to give {want:?}, got {got:?}", case.name));
            failures.extend(audit_locates(case, copy, "after --rebuild-indexes").err());
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_locates_every_corruption_and_startup_and_rebuild_do_their_part() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let log_id = build_store(&data).await;
    let (passed, output) = audit(&data);
    assert!(passed && output.contains("41 entries"), "the undamaged store audits clean:\n{output}");

    let mut failures = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        failures.extend(check_case(case, &data, &temp.path().join(format!("copy-{i}")), &log_id));
    }
    assert!(failures.is_empty(), "{} expectations failed:\n{}", failures.len(), failures.join("\n"));
}
