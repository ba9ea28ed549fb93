//! The consumer page in a real browser: Debian's Chromium, headless, loads
//! the resolver's pages for a genuine, a recalled and a forged product,
//! and the test reads the text it rendered and saves phone-sized
//! screenshots under `target/test-artifacts/`.
//!
//! Without Chromium the test fails, unless `QTRACE_SKIP_BROWSER=1` says
//! to skip it (`.ci/run` installs Chromium first).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qtrace_tests::*;

use crate::resolver::{FORGED_LOT, GOOD_LOT, RECALLED_LOT, UNSOURCED_LOT, lot_path, record_story};

/// The Chromium binary: `QTRACE_CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("QTRACE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// `target/test-artifacts/`, beside the test binary's profile directory.
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target
    let target = exe.ancestors().nth(3).expect("target directory");
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("creating target/test-artifacts");
    dir
}

/// Runs headless Chromium with the flags that work on this machine's closed
/// network (no background connections), a fresh profile, and `args`;
/// returns its standard output. Kills it (by process id) after 90 s.
fn run_chromium(binary: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile directory");
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    // Read both pipes on threads so a chatty browser cannot block on them.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).ok();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).ok();
        text
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").arg("-KILL").arg(child.id().to_string()).status();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within 90 s; stderr:\n{}", err.join().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    assert!(status.success(), "chromium {args:?} failed ({status}); stderr:\n{stderr}");
    stdout
}

/// The text a reader sees: the rendered DOM's body without tags, style or
/// entities.
fn visible_text(dom: &str) -> String {
    let body = dom.split_once("<body").map(|(_, b)| b).unwrap_or(dom);
    let mut text = String::new();
    let mut in_tag = false;
    for ch in body.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(ch),
            _ => {}
        }
    }
    let text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_page_in_headless_chromium() {
    let Some(binary) = chromium() else {
        if std::env::var("QTRACE_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("SKIPPED: QTRACE_SKIP_BROWSER=1 and no chromium on the PATH");
            return;
        }
        panic!(
            "chromium is not installed: install Debian's package (`apt-get install -y chromium`, as .ci/run does), \
             point QTRACE_CHROMIUM at a Chromium binary, or set QTRACE_SKIP_BROWSER=1 to skip this test"
        );
    };
    let node = Node::start();
    let mut client = node.client().await;
    record_story(&node, &mut client).await;
    let base = node.http_url();
    let dir = artifacts();

    // (name, path, phrases the reader must see, whether to save the whole page too).
    let valid: &[&str] =
        &["有效", "VALID", "✓ 正品 Genuine", "✓ 已认证 Certified", "✓ 未召回 Not recalled", "责任主体", "示例乳业"];
    let recalled: &[&str] = &["无效", "INVALID", "✗ 已召回 Recalled", "已召回：请停止使用", "RM-BAD", "三聚氰胺"];
    let forged: &[&str] = &["无效", "INVALID", "✗ 认证无效 Certificate invalid", "伪造证书", "CQC-NEVER-ISSUED"];
    let bad_code: &[&str] = &["无效产品码", "INVALID CODE", "校验码错误", "GTIN check digit is 7, expected 8"];
    let unknown: &[&str] = &["未找到", "NOT FOUND", "查无此产品", "12315"];
    // The banner names the reason; the path, where the problem is, comes
    // before the sections that passed.
    let unsourced: &[&str] = &["警告", "WARNING", "来源不明 Source not on record", "来源不明或记录不全"];
    let unsourced_order: &[&str] = &[
        "来源不明 Source not on record",
        "追溯路径 Traceability path",
        "来源不明或记录不全",
        "Genuine: the records are unaltered",
        "认证状态 Certification",
    ];
    let cases = [
        ("valid", lot_path(GOOD_LOT), valid, true),
        ("recalled", lot_path(RECALLED_LOT), recalled, true),
        ("unsourced", lot_path(UNSOURCED_LOT), unsourced, true),
        ("forged", lot_path(FORGED_LOT), forged, true),
        ("bad-check-digit", format!("/01/09520123456787/10/{GOOD_LOT}"), bad_code, false),
        ("unknown", lot_path("NO-SUCH-LOT"), unknown, false),
    ];
    for (name, path, expected, whole_page) in cases {
        let url = format!("{base}{path}");
        let browser = binary.clone();
        let dom_url = url.clone();
        let dom =
            tokio::task::spawn_blocking(move || run_chromium(&browser, &["--dump-dom".into(), dom_url])).await.unwrap();
        let text = visible_text(&dom);
        for phrase in expected {
            assert!(text.contains(phrase), "{name}: {phrase:?} is not on the rendered page:\n{text}");
        }
        // Sections with a problem come first: these phrases appear in this order.
        let in_order: &[&str] = if name == "unsourced" { unsourced_order } else { &[] };
        let mut from = 0;
        for phrase in in_order {
            let at = text[from..].find(phrase).unwrap_or_else(|| {
                panic!("{name}: {phrase:?} is not on the rendered page after {:?}:\n{text}", in_order)
            });
            from += at + phrase.len();
        }

        // A phone's viewport (412×915 CSS pixels at 2×), and the whole page.
        let shots: &[(&str, u32)] = if whole_page { &[("", 915), ("-full", 3600)] } else { &[("", 915)] };
        for &(suffix, height) in shots {
            let file = dir.join(format!("resolver-{name}{suffix}.png"));
            let _ = std::fs::remove_file(&file);
            let browser = binary.clone();
            let args = vec![
                format!("--screenshot={}", file.display()),
                format!("--window-size=412,{height}"),
                "--force-device-scale-factor=2".into(),
                url.clone(),
            ];
            tokio::task::spawn_blocking(move || run_chromium(&browser, &args)).await.unwrap();
            let png = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(
                png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
                "{} is not a screenshot",
                file.display()
            );
            eprintln!("screenshot: {}", file.display());
        }
    }
}
