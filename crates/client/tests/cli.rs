//! The `qtrace` binary as a user runs it, without a node: help text, key
//! generation, and the exit codes for bad input (2) and an unreachable node
//! (3). Tests against a real node live in the workspace's `tests/` crate.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

/// Valid identifiers from the shared test vectors.
const REGULATOR: &str = "9144030071526726XG";
const MAKER: &str = "914403007152672A21";
const GTIN: &str = "09520123456788";
/// A whole product line, written so that it is not read as a sequence number.
const GTIN_LINE: &str = "(01)09520123456788";
/// Nothing listens on port 1, so connecting fails at once.
const NO_NODE: &str = "http://127.0.0.1:1";

/// Runs `qtrace` with `args`, isolated from the caller's QTRACE_* variables.
///
/// Not `qtrace_tests::qtrace`: that crate depends on this one (a dev-
/// dependency back would link a second qtrace-client), and its runner talks
/// to a running node in `--json` mode, while these tests run without one and
/// read the text. What must not drift, the variables to clear, is the
/// library's one list.
fn qtrace(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qtrace"));
    for variable in qtrace_client::ENVIRONMENT {
        command.env_remove(variable);
    }
    command.args(args).output().expect("running qtrace")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn keygen(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let out = qtrace(&["keygen", "--out", path.to_str().expect("UTF-8 temp path")]);
    assert_eq!(out.status.code(), Some(0), "keygen: {}", text(&out.stderr));
    path.to_str().expect("UTF-8 temp path").to_owned()
}

#[test]
fn help_names_the_environment_and_the_exit_codes() {
    let commands: &[&[&str]] = &[
        &[],
        &["keygen"],
        &["org", "register"],
        &["org", "update"],
        &["key", "register"],
        &["key", "revoke"],
        &["produce"],
        &["ship"],
        &["receive"],
        &["sell"],
        &["inspect"],
        &["cert", "issue"],
        &["cert", "suspend"],
        &["cert", "restore"],
        &["cert", "withdraw"],
        &["cert", "cancel"],
        &["cert", "reduce"],
        &["cert", "renew"],
        &["recall"],
        &["spotcheck"],
        &["blacklist"],
        &["delist"],
        &["correct"],
        &["get"],
        &["checkpoint"],
        &["proof"],
        &["consistency"],
        &["import"],
        &["verify"],
        &["check"],
        &["bundle"],
        &["trace"],
        &["qr"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = qtrace(&args);
        let help = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{command:?}");
        for want in
            ["QTRACE_NODE", "QTRACE_KEY", "QTRACE_ORG", "QTRACE_VKEY", "Exit codes", "3  node unreachable", "--json"]
        {
            assert!(help.contains(want), "{command:?} --help lacks {want:?}:\n{help}");
        }
    }
    let import = text(&qtrace(&["import", "--help"]).stdout);
    for want in ["FILE.jsonl.progress", "duplicate", "first 20"] {
        assert!(import.contains(want), "import --help lacks {want:?}:\n{import}");
    }
    let root = text(&qtrace(&["--help"]).stdout);
    assert!(root.contains("[default: http://127.0.0.1:7700]"), "{root}");
}

#[test]
fn keygen_writes_a_private_file_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("signer.key");
    let path_text = path.to_str().expect("UTF-8 temp path");
    let out = qtrace(&["keygen", "--out", path_text]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let public = text(&out.stdout);
    let public = public.trim_end();
    assert_eq!(public.len(), 64, "stdout is the public key: {public:?}");
    assert!(public.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{public}");
    let mode = std::fs::metadata(&path).expect("key file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let secret = std::fs::read_to_string(&path).expect("key file");
    assert!(secret.starts_with("qtrace-ed25519-secret-key-v1\n"), "{secret}");

    // A second keygen on the same path is refused and leaves the key alone.
    let again = qtrace(&["keygen", "--out", path_text]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already exists"), "{}", text(&again.stderr));
    assert_eq!(std::fs::read_to_string(&path).expect("key file"), secret);

    // --json prints one object naming the key and the file.
    let other = dir.path().join("other.key");
    let out = qtrace(&["--json", "keygen", "--out", other.to_str().expect("UTF-8 temp path")]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(value["public_key"].as_str().map(str::len), Some(64), "{value}");
    assert_eq!(value["file"], other.to_str().expect("UTF-8 temp path"));
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

#[test]
fn bad_input_exits_2_before_contacting_a_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = keygen(dir.path(), "signer.key");
    let bad_key = dir.path().join("bad.key");
    std::fs::write(&bad_key, "not a key\n").expect("write");
    let bad_key = bad_key.to_str().expect("UTF-8 temp path");
    let long_reason = "x".repeat(2001);
    let blacklist = |key: &str, reason: &str| {
        let global = ["--node", NO_NODE, "--key", key, "--org", REGULATOR];
        let command = ["blacklist", "--uscc", MAKER, "--reason", reason, "--basis", "产品质量法"];
        strings(&[&global[..], &command[..]].concat())
    };
    let inspect = |product: &str, conclusion: &str, extra: &[&str]| {
        let command = [
            "inspect",
            "--product",
            product,
            "--report-no",
            "R1",
            "--standard",
            "GB 19644",
            "--conclusion",
            conclusion,
        ];
        strings(&[&command[..], extra].concat())
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (inspect("09520123456789", "conformant", &[]), "GTIN check digit is 9, expected 8"),
        (inspect(GTIN, "good", &[]), "invalid value 'good'"),
        (inspect(GTIN, "conformant", &["--item", "melamine"]), "is not NAME=VALUE[UNIT]"),
        (
            strings(&["org", "register", "--uscc", "91310000MA1K2Q7A5M", "--name", "n", "--role", "regulator"]),
            "USCC check character is M, expected L",
        ),
        (strings(&["org", "register", "--uscc", MAKER, "--name", "n", "--role", "factory"]), "invalid value 'factory'"),
        (
            strings(&["org", "register", "--uscc", MAKER, "--name", "n", "--role", "testing_lab", "--scope", "0952"]),
            "--accreditation-no",
        ),
        (
            strings(&["produce", "--gtin", GTIN, "--lot", "L1", "--at", "2026-11-21 10:00:00+08:00"]),
            "date and time are separated by 'T'",
        ),
        (strings(&["produce", "--gtin", GTIN, "--lot", "L1", "--quantity", "5"]), "--unit"),
        (strings(&["produce", "--gtin", GTIN, "--lot", "L1", "--input", "zz"]), "is not a record"),
        (strings(&["recall", "--gtin", GTIN, "--risk-class", "4", "--reason", "r"]), "4 is not in 1..=3"),
        (strings(&["get", "3f3f"]), "is not a record"),
        (strings(&["consistency", "0", "5"]), "invalid value '0'"),
        (blacklist(bad_key, "reason"), "not a qtrace secret key file"),
        (blacklist(&key, &long_reason), "blacklisted.reason: is 2001 bytes; at most 2000 are allowed"),
        (
            strings(&["--node", NO_NODE, "--key", &key, "cert", "suspend", "--number", "C1", "--reason", "r"]),
            "needs the signer's organisation",
        ),
        (
            strings(&[
                "--node",
                NO_NODE,
                "--key",
                &key,
                "produce",
                "--gtin",
                GTIN,
                "--lot",
                "L1",
                "--production-date",
                "2026-11-21",
                "--expiry-date",
                "2026-11-20",
            ]),
            "production.expiry_date: 2026-11-20 is before production_date 2026-11-21",
        ),
        (strings(&["--node", NO_NODE, "produce", "--gtin", GTIN, "--lot", "L1"]), "give --key FILE"),
        (strings(&["--node", NO_NODE, "check", "09520123456789/L1"]), "GTIN check digit is 9, expected 8"),
        (strings(&["--node", NO_NODE, "check", "(01)0952"]), "is not a product code"),
        (strings(&["verify"]), "the following required arguments were not provided"),
        (strings(&["verify", "3", "--cert", "913301007042187B2H/C1"]), "cannot be used with"),
        (strings(&["verify", "--cert", "913301007042187B2H"]), "is not USCC/NUMBER"),
        (strings(&["verify", "--cert", "913301007042187B2H/C1", "--at", "2026-13-01"]), "invalid value '2026-13-01'"),
        (strings(&["verify", "--offline", "bundle.bin"]), "needs the trusted log keys"),
        (strings(&["--node", NO_NODE, "verify", "3", "--trust", "not-a-key"]), "not a C2SP verifier key"),
        (strings(&["bundle", GTIN]), "--out <FILE>"),
        (strings(&["trace", "3"]), "--up"),
        (strings(&["trace", "3", "--up", "--down"]), "cannot be used with"),
        (strings(&["--node", NO_NODE, "trace", GTIN_LINE, "--up"]), "names no lot"),
        (strings(&["qr", GTIN, "--out", "label.jpg"]), "name a .svg or .png file"),
        (strings(&["qr", GTIN, "--base", "ftp://id.example.cn"]), "is not a resolver address"),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = qtrace(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: stderr lacks {want:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: without --json stdout stays empty: {}", text(&out.stdout));

        // With --json the same refusal, whether clap's or ours, is one JSON
        // object on stdout with the same exit code, and stderr still explains.
        let with_json = [&["--json"], &args[..]].concat();
        let out = qtrace(&with_json);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{with_json:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(want), "{with_json:?}: stderr lacks {want:?}");
        let value: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{with_json:?}: stdout is not one JSON object ({e}): {stdout:?}"));
        assert_eq!(value["error"]["exit_code"], 2, "{with_json:?}: {value}");
        assert_eq!(value["error"]["kind"], "usage", "{with_json:?}: {value}");
        assert_eq!(value["error"]["code"], serde_json::Value::Null, "{with_json:?}: {value}");
        let message = value["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{with_json:?}: message lacks {want:?}: {value}");
    }
    // No command at all is a usage error too.
    let out = qtrace(&["--json"]);
    assert_eq!(out.status.code(), Some(2));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(value["error"]["kind"], "usage", "{value}");

    // With --json, a failure after parsing is one JSON object on stdout too.
    let args = [strings(&["--json"]), blacklist(&key, &long_reason)].concat();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = qtrace(&args);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(value["error"]["exit_code"], 2, "{value}");
    assert_eq!(value["error"]["kind"], "usage", "{value}");
}

#[test]
fn qr_codes_need_no_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let described = qtrace(&["--json", "qr", "09520123456788/L1"]);
    let value: serde_json::Value = serde_json::from_slice(&described.stdout).expect("one JSON object");
    let modules = value["modules"].as_u64().expect("modules") as usize;
    let out = qtrace(&["qr", "09520123456788/L1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.last(), Some(&"http://127.0.0.1:7780/01/09520123456788/10/L1"), "{shown}");
    // The symbol and its quiet zone of 4 modules, two rows per line.
    assert_eq!(lines.len() - 1, (modules + 8).div_ceil(2), "{shown}");
    assert_eq!(value["terminal"].as_str().map(|t| t.lines().count()), Some(lines.len() - 1));
    let png = dir.path().join("label.png");
    let out = qtrace(&["--json", "qr", "(01)09520123456788(10)L1", "--out", png.to_str().expect("UTF-8 temp path")]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(value["format"], "png", "{value}");
    assert_eq!(value["bytes"].as_u64(), std::fs::metadata(&png).ok().map(|m| m.len()), "{value}");
    let with_base = qtrace(&["--json", "qr", "09520123456788", "--base", "https://id.example.cn/"]);
    let value: serde_json::Value = serde_json::from_slice(&with_base.stdout).expect("one JSON object");
    assert_eq!(value["url"], "https://id.example.cn/01/09520123456788", "{value}");
}

#[test]
fn an_unreachable_node_exits_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = keygen(dir.path(), "signer.key");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&jsonl, "{\"event_b64\": \"CAE=\", \"signer\": \"00\", \"signature\": \"00\"}\n").expect("write");
    let jsonl = jsonl.to_str().expect("UTF-8 temp path");
    let commands: &[&[&str]] = &[
        &["--key", &key, "--org", REGULATOR, "blacklist", "--uscc", MAKER, "--reason", "r", "--basis", "b"],
        &["--key", &key, "produce", "--gtin", GTIN, "--lot", "L1", "--quantity", "5", "--unit", "EA"],
        &["--key", &key, "ship", "--gtin", GTIN, "--lot", "L1", "--from", MAKER, "--to", REGULATOR, "--parent", "7"],
        &["get", "0"],
        &["checkpoint"],
        &["proof", "3"],
        &["consistency", "1", "2"],
        &["import", jsonl],
        &["check", "09520123456788/L1"],
        &["verify", "3"],
        &["verify", "--cert", "913301007042187B2H/CQC-1"],
        &["bundle", "09520123456788/L1", "--out", "never-written.bundle"],
        &["trace", "3", "--up"],
    ];
    for command in commands {
        let mut args = vec!["--node", NO_NODE];
        args.extend_from_slice(command);
        let out = qtrace(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{command:?}: {stderr}");
        assert!(stderr.contains("cannot reach the node at http://127.0.0.1:1"), "{command:?}: {stderr}");
    }
    let out = qtrace(&["--json", "--node", "127.0.0.1:1", "get", "0"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(value["error"]["kind"], "unreachable", "{value}");
    assert_eq!(value["error"]["exit_code"], 3, "{value}");
}
