//! What the benchmarks share (feature `bench`, for benchmarks only): the
//! printed table with its ratios and the `BENCH-SUMMARY` JSON, a few
//! helpers, and in [`workload`] the realistic events the store and append
//! benchmarks write. Used by qtrace-store's `benches/store.rs` and
//! `benches/verdict.rs` and by qtrace-node's `benches/append.rs` and
//! `benches/mirror.rs`, so there is one copy. Each benchmark sets the node's
//! allocator (mimalloc) itself: a library must not choose the allocator of
//! every binary that links it.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use serde_json::{Map, Value, json};

use crate::pb;
use crate::signing::SecretKey;

/// Whether `QTRACE_BENCH_SCALE` or the arguments (`small`, `full`,
/// `--scale NAME`, `--scale=NAME`; the last wins) ask for the small scale;
/// the full one is the default.
pub fn small_scale() -> Result<bool, String> {
    let mut name = std::env::var("QTRACE_BENCH_SCALE").unwrap_or_default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "small" || arg == "full" {
            name = arg;
        } else if arg == "--scale" {
            name = args.next().unwrap_or_default();
        } else if let Some(value) = arg.strip_prefix("--scale=") {
            name = value.to_string();
        }
        // Anything else (cargo bench passes `--bench`) is ignored.
    }
    match name.as_str() {
        "small" => Ok(true),
        "" | "full" => Ok(false),
        other => Err(format!("unknown scale {other:?}: use small or full")),
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// `make(i)` for every `i` of `range`, in order, computed on every core (one
/// contiguous part each): how the benchmarks sign their events before a
/// clock starts.
pub fn across_cores<T: Send>(range: std::ops::Range<u64>, make: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let threads = cores() as u64;
    let per_thread = (range.end.saturating_sub(range.start)).div_ceil(threads).max(1);
    let make = &make;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = (range.start + t * per_thread).min(range.end);
                let end = (start + per_thread).min(range.end);
                scope.spawn(move || (start..end).map(make).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| panic!("a worker thread panicked"))).collect()
    })
}
/// Busy time of all CPUs together, from the first line of /proc/stat
/// (user, nice, system, irq, softirq and steal, in ticks of 10 ms).
pub fn machine_busy() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return Duration::ZERO };
    let Some(line) = stat.lines().next() else { return Duration::ZERO };
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().map(|&i| ticks.get(i).copied().unwrap_or(0)).sum();
    Duration::from_millis(busy * 10)
}
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
pub fn sign(key: &SecretKey, event: &pb::Event) -> pb::SignedEvent {
    let bytes = event.encode_to_vec();
    pb::SignedEvent {
        signature: key.sign_event(&bytes).to_vec(),
        signer: key.public_key().to_bytes().to_vec(),
        event: bytes,
    }
}

pub struct Ratio {
    value: f64,
    against: String,
}

impl Ratio {
    pub fn new(value: f64, against: &str) -> Ratio {
        Ratio { value, against: against.to_string() }
    }

    /// A limit measured in this run against the reference figure for this
    /// machine kind (shared/CRATES.md).
    pub fn reference(value: f64, reference: f64) -> Ratio {
        Ratio::new(value / reference, &format!("÷ reference {}", number(reference)))
    }
}

pub enum Line {
    Section(String),
    Note(String),
    Row { figure: String, value: f64, unit: &'static str, ratios: Vec<Ratio> },
}

/// The printed table and the JSON summary, filled side by side.
pub struct Report {
    lines: Vec<Line>,
    /// Top-level fields of the JSON summary; a bench may add its own.
    pub summary: Map<String, Value>,
    limits: Map<String, Value>,
    limit_values: BTreeMap<String, f64>,
    figures: Map<String, Value>,
    ratios: Map<String, Value>,
}

impl Report {
    pub fn new(bench: &str, scale: &str) -> Report {
        let mut summary = Map::new();
        summary.insert("bench".into(), json!(bench));
        summary.insert("scale".into(), json!(scale));
        summary.insert("cores".into(), json!(cores()));
        Report {
            lines: Vec::new(),
            summary,
            limits: Map::new(),
            limit_values: BTreeMap::new(),
            figures: Map::new(),
            ratios: Map::new(),
        }
    }

    pub fn section(&mut self, title: &str) {
        self.lines.push(Line::Section(title.to_string()));
    }

    pub fn note(&mut self, text: &str) {
        self.lines.push(Line::Note(text.to_string()));
    }

    pub fn limit(&mut self, key: &str, figure: &str, value: f64, unit: &'static str, ratios: Vec<Ratio>) {
        self.limits.insert(key.into(), json!(round(value)));
        self.limit_values.insert(key.into(), value);
        self.lines.push(Line::Row { figure: figure.to_string(), value, unit, ratios });
    }

    pub fn limit_value(&self, key: &str) -> f64 {
        self.limit_values.get(key).copied().unwrap_or(f64::NAN)
    }

    /// A figure; its first ratio goes into the summary's ratios.
    pub fn figure(&mut self, key: &str, figure: &str, value: f64, unit: &'static str, ratios: Vec<Ratio>) {
        self.figures.insert(key.into(), json!(round(value)));
        if let Some(first) = ratios.first()
            && first.value.is_finite()
        {
            self.ratios.insert(key.into(), json!(round(first.value)));
        }
        self.lines.push(Line::Row { figure: figure.to_string(), value, unit, ratios });
    }

    /// A descriptive number with no limit to compare it with.
    pub fn info(&mut self, key: &str, figure: &str, value: f64, unit: &'static str) {
        self.figures.insert(key.into(), json!(round(value)));
        self.lines.push(Line::Row { figure: figure.to_string(), value, unit, ratios: Vec::new() });
    }

    pub fn print(&self) {
        let figure_width = self
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Row { figure, .. } => Some(figure.chars().count()),
                Line::Section(_) | Line::Note(_) => None,
            })
            .max()
            .unwrap_or(10);
        println!();
        println!("{:<figure_width$} | {:>12} | {:<8} | {:>8} | against", "figure", "value", "unit", "ratio");
        println!("{}", "-".repeat(figure_width + 75));
        for line in &self.lines {
            match line {
                Line::Section(title) => println!("\n## {title}"),
                Line::Note(text) => println!("note: {text}"),
                Line::Row { figure, value, unit, ratios } => {
                    let pad = figure_width.saturating_sub(figure.chars().count());
                    let head = format!("{figure}{} | {:>12} | {:<8}", " ".repeat(pad), number(*value), unit);
                    match ratios.split_first() {
                        None => println!("{head} |          |"),
                        Some((first, rest)) => {
                            println!("{head} | {:>8} | {}", ratio(first.value), first.against);
                            for r in rest {
                                println!(
                                    "{} | {:>12} | {:<8} | {:>8} | {}",
                                    " ".repeat(figure_width),
                                    "",
                                    "",
                                    ratio(r.value),
                                    r.against
                                );
                            }
                        }
                    }
                }
            }
        }
        println!();
    }

    pub fn summary(mut self, seconds: f64, complete: bool) -> String {
        self.summary.insert("seconds".into(), json!(round(seconds)));
        self.summary.insert("complete".into(), json!(complete));
        self.summary.insert("limits".into(), Value::Object(self.limits));
        self.summary.insert("figures".into(), Value::Object(self.figures));
        self.summary.insert("ratios".into(), Value::Object(self.ratios));
        Value::Object(self.summary).to_string()
    }
}

/// Three significant digits are all a noisy benchmark supports.
pub fn round(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let digits = 3 - value.abs().log10().ceil() as i32;
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

pub fn number(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_string()
    } else if value.abs() >= 1_000.0 {
        let whole = value.round() as i64;
        let text = whole.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in text.chars().enumerate() {
            if i > 0 && (text.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if whole < 0 { format!("-{out}") } else { out }
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

pub fn ratio(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_string()
    } else if value >= 100.0 {
        format!("{value:.0}×")
    } else if value >= 10.0 {
        format!("{value:.1}×")
    } else if value >= 0.01 {
        format!("{value:.3}")
    } else {
        format!("{value:.1e}")
    }
}

/// The realistic signed events the store and append benchmarks write.
pub mod workload {
    use crate::pb::{self, event::Body, subject::Kind};

    /// The factory (manufacturer) that signs productions and shipments.
    pub const FACTORY: &str = "92320900MA1N3T5C5Q";
    /// The testing lab that signs inspections.
    pub const LAB: &str = "91310000MA1K2Q7A5L";
    /// Where shipments go.
    pub const RETAILER: &str = "914403007152672A21";
    pub const GTINS: [&str; 2] = ["09520123456788", "06931234567899"];
    pub const GLN_FACTORY: &str = "6931234000013";
    pub const GLN_WAREHOUSE: &str = "0614141000012";

    pub fn product(gtin: &str, lot: &str) -> pb::ProductKey {
        pb::ProductKey { gtin: gtin.into(), lot: lot.into(), serial: String::new() }
    }

    pub fn lot_of(i: u64) -> String {
        format!("L26{:08}", i)
    }

    pub fn attribute(name: &str, value: &str) -> pb::Attribute {
        pb::Attribute { name: name.into(), value: value.into() }
    }

    /// Production `i`: a new lot of one of two GTINs, ~430 bytes (every
    /// event of the mirror benchmark, half of the workload's).
    pub fn production(i: u64, millis: i64) -> pb::Event {
        let gtin = GTINS[(i % 2) as usize];
        let lot = lot_of(i);
        let event_time = Some(pb::EventTime { unix_millis: millis, offset_minutes: 480 });
        let document_hash = crate::hash::sha256(&i.to_be_bytes()).to_vec();
        pb::Event {
            event_time,
            subject: Some(pb::Subject { kind: Some(Kind::Product(product(gtin, &lot))) }),
            location: Some(pb::Location {
                read_point_gln: GLN_FACTORY.into(),
                business_location_gln: GLN_FACTORY.into(),
                region: "320900".into(),
            }),
            biz_step: "commissioning".into(),
            disposition: "active".into(),
            documents: vec![pb::Document {
                kind: "batch_record".into(),
                id: format!("BR-{i:010}"),
                sha256: document_hash,
            }],
            attributes: vec![
                attribute("line", "3"),
                attribute("shift", "B"),
                attribute("operator", "张伟"),
                attribute("net_content", "900 g"),
                attribute("storage", "常温 below 25 °C, dry"),
            ],
            nonce: i,
            body: Some(Body::Production(pb::Production {
                output: Some(pb::LotQuantity {
                    product: Some(product(gtin, &lot)),
                    quantity: Some(pb::Quantity { value: 1_000.0 + (i % 500) as f64, unit: "EA".into() }),
                }),
                production_date: "2026-11-01".into(),
                expiry_date: "2028-10-31".into(),
                factory_gln: GLN_FACTORY.into(),
            })),
            ..Default::default()
        }
    }

    /// Event `i` of the workload: five productions, three shipments and two
    /// inspections in every ten, each a few hundred bytes, as a factory and its
    /// lab would write them.
    pub fn event_at(i: u64, millis: i64) -> pb::Event {
        let gtin = GTINS[(i % 2) as usize];
        let event_time = Some(pb::EventTime { unix_millis: millis, offset_minutes: 480 });
        let document_hash = crate::hash::sha256(&i.to_be_bytes()).to_vec();
        match i % 10 {
            0..=4 => production(i, millis),
            5..=7 => {
                let items = [lot_of(i.saturating_sub(5)), lot_of(i.saturating_sub(4))]
                    .iter()
                    .zip(GTINS)
                    .map(|(lot, gtin)| pb::LotQuantity {
                        product: Some(product(gtin, lot)),
                        quantity: Some(pb::Quantity { value: 240.0, unit: "EA".into() }),
                    })
                    .collect::<Vec<_>>();
                pb::Event {
                    event_time,
                    subject: items[0].product.clone().map(|p| pb::Subject { kind: Some(Kind::Product(p)) }),
                    location: Some(pb::Location {
                        read_point_gln: GLN_FACTORY.into(),
                        business_location_gln: GLN_WAREHOUSE.into(),
                        region: "320900".into(),
                    }),
                    biz_step: "shipping".into(),
                    disposition: "in_transit".into(),
                    documents: vec![
                        pb::Document { kind: "desadv".into(), id: format!("DESADV-{i:010}"), sha256: document_hash },
                        pb::Document {
                            kind: "po".into(),
                            id: format!("PO-2026-{:06}", i % 1_000_000),
                            sha256: Vec::new(),
                        },
                    ],
                    attributes: vec![attribute("carrier", "顺丰冷链 SF cold chain"), attribute("vehicle", "苏J·12345")],
                    nonce: i,
                    body: Some(Body::Shipment(pb::Shipment {
                        items,
                        source: Some(pb::Party { uscc: FACTORY.into(), location_gln: GLN_FACTORY.into() }),
                        destination: Some(pb::Party { uscc: RETAILER.into(), location_gln: GLN_WAREHOUSE.into() }),
                        shipment_number: format!("SH-{i:010}"),
                    })),
                    ..Default::default()
                }
            }
            _ => {
                let tested = lot_of(i.saturating_sub(8));
                let item = |name: &str, value: &str, unit: &str, limit: &str| pb::TestItem {
                    name: name.into(),
                    value: value.into(),
                    unit: unit.into(),
                    limit: limit.into(),
                    result: pb::Conclusion::Conformant as i32,
                };
                pb::Event {
                    event_time,
                    subject: Some(pb::Subject { kind: Some(Kind::Product(product(gtin, &tested))) }),
                    biz_step: "inspecting".into(),
                    documents: vec![pb::Document {
                        kind: "inspection_report".into(),
                        id: format!("SH-2026-{i:08}"),
                        sha256: document_hash,
                    }],
                    nonce: i,
                    body: Some(Body::Inspection(pb::Inspection {
                        report_number: format!("SH-2026-{i:08}"),
                        product: Some(product(gtin, &tested)),
                        standards: vec!["GB 10765-2021".into(), "GB 19644-2010".into()],
                        items: vec![
                            item("melamine (三聚氰胺)", "not detected", "mg/kg", "<= 2.5"),
                            item("protein (蛋白质)", "2.31", "g/100 kJ", "0.45 - 0.70"),
                            item("aflatoxin M1 (黄曲霉毒素M1)", "< 0.02", "µg/kg", "<= 0.5"),
                        ],
                        conclusion: pb::Conclusion::Conformant as i32,
                        destructive: true,
                        client_uscc: FACTORY.into(),
                    })),
                    ..Default::default()
                }
            }
        }
    }
}

/// Readers of /proc and the file system (Linux) for the benchmarks' CPU,
/// memory and I/O accounting. Anything unreadable reads as zero or `None`:
/// a figure goes missing, the benchmark does not stop.
pub mod procfs {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    /// One thread's name, on-CPU time and runqueue wait.
    pub struct ThreadTimes {
        pub name: String,
        pub run: Duration,
        pub wait: Duration,
    }

    /// Per-thread (name, on-CPU time, runqueue wait) from
    /// /proc/PID/task/TID/{comm,schedstat}; threads that vanish are skipped.
    pub fn threads(pid: u32) -> BTreeMap<u32, ThreadTimes> {
        let mut out = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
        for task in dir.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_string();
            let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
            let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
            let run = Duration::from_nanos(fields.next().unwrap_or(0));
            let wait = Duration::from_nanos(fields.next().unwrap_or(0));
            out.insert(tid, ThreadTimes { name, run, wait });
        }
        out
    }

    /// On-CPU time of this process's live threads.
    pub fn own_cpu() -> Duration {
        threads(std::process::id()).values().map(|t| t.run).sum()
    }

    /// The fields of /proc/PID/stat after the command name (which may hold
    /// spaces): the state is at 0, utime and stime at 11 and 12.
    pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 1..];
        Some(after.split_whitespace().map(str::to_string).collect())
    }

    /// The process state letter (R, S, D, Z, ...).
    pub fn process_state(pid: u32) -> Option<char> {
        stat_fields(pid)?.first()?.chars().next()
    }

    /// utime + stime of a whole process, ended threads included (in clock
    /// ticks, 100 per second on Linux).
    pub fn process_cpu(pid: u32) -> Duration {
        let Some(fields) = stat_fields(pid) else { return Duration::ZERO };
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }

    /// A `kB` field of /proc/PID/status in bytes (0 when unreadable).
    pub fn status_bytes(pid: u32, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let value = l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?;
                    value.trim().parse::<u64>().ok()
                })
            })
            .map_or(0, |kb| kb * 1024)
    }

    /// MemAvailable of /proc/meminfo in bytes.
    pub fn memory_available() -> u64 {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let value = l.strip_prefix("MemAvailable:")?.trim().strip_suffix("kB")?;
                    value.trim().parse::<u64>().ok()
                })
            })
            .map_or(0, |kb| kb * 1024)
    }

    /// One counter of /proc/PID/io (0 when unreadable); `write_bytes` is
    /// what the process caused to be sent to the storage layer.
    pub fn io_field(pid: u32, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/io"))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix(field).and_then(|v| v.strip_prefix(':')).and_then(|v| v.trim().parse::<u64>().ok())
                })
            })
            .unwrap_or(0)
    }

    /// Bytes the files under `dir` occupy on disk (allocated blocks).
    pub fn dir_bytes(dir: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(items) = std::fs::read_dir(dir) else { return 0 };
        items
            .flatten()
            .map(|item| match item.metadata() {
                Ok(meta) if meta.is_dir() => dir_bytes(&item.path()),
                Ok(meta) => meta.blocks() * 512,
                Err(_) => 0,
            })
            .sum()
    }
}

/// A `qtrace-node` process the benchmarks start and stop by its process id.
pub mod node {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::time::{Duration, Instant};

    type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

    /// A running node with a fresh data directory, removed when dropped.
    pub struct NodeProcess {
        child: Option<Child>,
        pub data: PathBuf,
        /// http://host:port of its gRPC side.
        pub url: String,
        /// host:port of its HTTP side (resolver and /metrics).
        pub http: Option<String>,
        _temp: tempfile::TempDir,
    }

    impl NodeProcess {
        /// Starts `binary` (the release `qtrace-node` cargo built for the
        /// benchmark, `env!("CARGO_BIN_EXE_qtrace-node")`) on port 0 with a
        /// fresh data directory and `extra` arguments, and waits until it
        /// serves.
        pub fn start(binary: &Path, extra: &[&str], stderr: Stdio) -> Result<NodeProcess> {
            let temp = tempfile::tempdir()?;
            let data = temp.path().join("data");
            let child = Command::new(binary)
                .arg("--data")
                .arg(&data)
                .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .map_err(|e| format!("starting {}: {e}", binary.display()))?;
            let mut node = NodeProcess { child: Some(child), data, url: String::new(), http: None, _temp: temp };
            let addr_file = node.data.join("node.addr");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(text) = std::fs::read_to_string(&addr_file)
                    && text.ends_with('\n')
                {
                    node.url = format!("http://{}", text.trim());
                    // The node binds its HTTP side first.
                    node.http = std::fs::read_to_string(node.data.join("http.addr")).ok().map(|t| t.trim().to_string());
                    return Ok(node);
                }
                if let Some(child) = node.child.as_mut()
                    && let Some(status) = child.try_wait()?
                {
                    return Err(format!("qtrace-node exited at start with {status}").into());
                }
                if Instant::now() > deadline {
                    return Err("qtrace-node did not write node.addr within 60 s".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        pub fn pid(&self) -> u32 {
            self.child.as_ref().map_or(0, Child::id)
        }

        /// SIGKILL to the child if it still runs, and its exit status.
        pub fn kill(&mut self) -> Result<ExitStatus> {
            let mut child = self.child.take().ok_or("the node is not running")?;
            if child.try_wait()?.is_none() {
                child.kill()?;
            }
            Ok(child.wait()?)
        }

        /// SIGTERM by process id, then waits for the exit status.
        pub fn stop(&mut self) -> Result<ExitStatus> {
            let mut child = self.child.take().ok_or("the node is not running")?;
            let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
            if !sent.success() {
                return Err(format!("kill -TERM {} failed", child.id()).into());
            }
            Ok(child.wait()?)
        }
    }

    impl Drop for NodeProcess {
        fn drop(&mut self) {
            // Only on an early error: the normal path stops the node itself.
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
