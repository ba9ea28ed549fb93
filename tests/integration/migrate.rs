//! Upgrade in place (issue 14): a data directory written by the store layout
//! before the redesign (`testdata/layout-v1`, made by its `make.sh` with the
//! binaries of that layout: an own log of 647 entries, Hangzhou's and
//! Guangdong's logs mirrored, cosigned checkpoints, federation state) is
//! refused by the node with the command to run, upgraded by `qtrace-node
//! migrate` — also when that is killed at any moment and run again — and
//! then served with every entry, checkpoint and piece of node state
//! byte-identical and every answer the old node gave.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use qtrace_tests::*;

const FIXTURE: &[u8] = include_bytes!("../../testdata/layout-v1/layout-v1.tar.gz");
/// The latest checkpoint of the fixture's own log, as the old node printed it.
const CHECKPOINT: &str = include_str!("../../testdata/layout-v1/checkpoint.json");

/// Unpacks the fixture into `dir`: `sh/` (the data directory), the peers'
/// `hz/log.vkey` and `gd/log.vkey`, and the demo's signer keys.
fn unpack(dir: &Path) -> PathBuf {
    let gz = flate2::read::GzDecoder::new(FIXTURE);
    tar::Archive::new(gz).unpack(dir).expect("unpacking testdata/layout-v1/layout-v1.tar.gz");
    dir.join("sh")
}

/// What must survive a migration byte for byte, read with sled directly
/// (the node is stopped): each log tree's entries (`E…` keys) and signed
/// checkpoints with their cosignatures (`C…` keys), and the whole node-state
/// tree (`meta`: federation state, equivocation evidence) but for the store's
/// own layout marker. Keys are prefixed with their tree's name.
fn durable_bytes(data: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = sled::open(data.join("store")).expect("opening the store with sled");
    let mut out = BTreeMap::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).expect("tree");
        let is_log = name.starts_with(b"log/");
        let is_meta = name.as_ref() == b"meta";
        if !is_log && !is_meta {
            continue;
        }
        for kv in tree.iter() {
            let (k, v) = kv.expect("reading the store");
            let keep = if is_log { matches!(k.first(), Some(b'E' | b'C')) } else { k.as_ref() != b"layout" };
            if keep {
                let mut key = name.to_vec();
                key.push(b'|');
                key.extend_from_slice(&k);
                out.insert(key, v.to_vec());
            }
        }
    }
    out
}

/// How many keys of the log trees in `bytes` start with `byte` ("log/" and
/// 64 hex digits, then '|').
fn count_log_keys(bytes: &BTreeMap<Vec<u8>, Vec<u8>>, byte: u8) -> usize {
    bytes.keys().filter(|k| k.starts_with(b"log/") && k.get(68..70) == Some(&[b'|', byte][..])).count()
}

fn node_command(args: &[&str], data: &Path) -> Command {
    let mut command = Command::new(binary("qtrace-node"));
    command.args(args).arg("--data").arg(data).env("RUST_LOG", "warn");
    command
}

#[test]
fn an_old_layout_is_refused_then_upgraded_in_place_by_migrate() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = unpack(temp.path());
    let before = durable_bytes(&data);
    // The fixture is what its README says: 647 own entries and two mirrored
    // logs, checkpoints, and node state.
    let log_trees: std::collections::BTreeSet<&[u8]> =
        before.keys().filter_map(|k| k.strip_prefix(b"log/")).map(|k| &k[..64]).collect();
    assert_eq!(log_trees.len(), 3, "own log and two mirrors");
    assert_eq!(count_log_keys(&before, b'E'), 647 + 4 + 1, "entries of the three logs (Shanghai, Hangzhou, Guangdong)");
    assert!(before.keys().any(|k| k.starts_with(b"meta|")), "node state is in the fixture");

    // 1. The node refuses the old layout and names the command; so does audit.
    let out = node_command(&["--listen", "127.0.0.1:0", "--no-http"], &data).output().expect("running qtrace-node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the node served an old-layout store:\n{stderr}");
    assert!(stderr.contains("qtrace-node migrate --data"), "the refusal does not name the command:\n{stderr}");
    let out = node_command(&["audit"], &data).output().expect("running qtrace-node audit");
    assert!(!out.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("qtrace-node migrate --data"), "audit does not name the command:\n{said}");
    assert_eq!(durable_bytes(&data), before, "a refused start changed the store");

    // 2. Migration killed at several moments, then run to the end, then
    //    again (nothing left to do). What a kill interrupts depends on the
    //    machine's speed; every run must leave a store the next one finishes.
    for delay_ms in [0u64, 15, 40, 90, 200] {
        let mut child = node_command(&["migrate"], &data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting qtrace-node migrate");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    for run in ["to the end", "again"] {
        let out = node_command(&["migrate"], &data).output().expect("running qtrace-node migrate");
        assert!(
            out.status.success(),
            "migrate ({run}) failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // 3. Entries, checkpoints (with cosignatures) and node state are
    //    byte-identical; the audit of the new layout passes.
    assert_eq!(durable_bytes(&data), before, "migration changed entries, checkpoints or node state");
    let out = node_command(&["audit"], &data).output().expect("running qtrace-node audit");
    assert!(
        out.status.success(),
        "audit after migration failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // 4. The node serves the upgraded store: the same log (id, size, root)
    //    and the same answers the old node gave (recorded when the fixture
    //    was made), with the peers' registrations trusted as before.
    let peer = |name: &str| {
        let vkey = std::fs::read_to_string(temp.path().join(name).join("log.vkey")).expect("peer vkey");
        format!("{name}=http://127.0.0.1:9,{}", vkey.trim())
    };
    let (hz, gd) = (peer("hz"), peer("gd"));
    let node = Node::start_in(&data, &["--peer", &hz, "--peer", &gd]);
    let expected: serde_json::Value = serde_json::from_str(CHECKPOINT).expect("checkpoint.json");
    let now = qtrace(&node, &["checkpoint"]);
    assert_eq!(now.json["size"], expected["size"], "{}", now.json);
    assert_eq!(now.json["root"], expected["root"], "{}", now.json);
    assert_eq!(now.json["note"], expected["note"], "the latest checkpoint note changed");

    for (subject, verdict) in [
        (["check", "(01)09520123456788(10)V1-7"], "VALID"),
        (["check", "(01)09520123456788(10)V1-MIX-3"], "VALID"),
        (["check", "(01)09520123456788(10)DEMO-1"], "VALID"),
        (["verify", "--cert"], "VALID"),
        (["check", "(01)09520123456788(10)NOPE"], "NOT_FOUND"),
    ] {
        let args: Vec<&str> = if subject[1] == "--cert" {
            vec!["verify", "--cert", "913301007042187B2H/HZ-CQC-2026-7"]
        } else {
            subject.to_vec()
        };
        let run = qtrace(&node, &args);
        assert_eq!(run.json["verdict"], verdict, "{args:?}: {}", run.json);
    }
    let check = qtrace(&node, &["check", "(01)09520123456788(10)V1-7"]);
    let integrity = &check.json["checks"][0];
    assert_eq!(integrity["name"], "integrity");
    assert!(integrity["detail"].as_str().is_some_and(|d| d.starts_with("all 4 records are unaltered")), "{integrity}");
    let trace = qtrace(&node, &["trace", "--down", "11"]);
    let lots: Vec<&str> =
        trace.json["lots"].as_array().expect("lots").iter().filter_map(|l| l["lot"].as_str()).collect();
    assert_eq!(lots, ["V1-5", "V1-MIX-1", "V1-6"], "{}", trace.json);
}
