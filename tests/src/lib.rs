//! Helpers shared by the integration tests: start and stop real
//! `qtrace-node` processes on 127.0.0.1 with temporary data directories,
//! and build, sign and submit events.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use qtrace_client::keyfile;
use qtrace_client::rpc::ledger_client::LedgerClient;
use qtrace_ledger::hash::LogId;
use qtrace_ledger::note::Verifier;
use qtrace_ledger::pb::{self, event::Body};
use qtrace_ledger::signing::SecretKey;
use tonic::transport::Channel;

/// Organisations used across the tests (valid USCCs from the shared vectors).
pub const REGULATOR: &str = "9144030071526726XG";
pub const LAB: &str = "91310000MA1K2Q7A5L";
pub const CERT_BODY: &str = "913301007042187B2H";
pub const FACTORY: &str = "92320900MA1N3T5C5Q";
pub const RETAILER: &str = "914403007152672A21";
pub const GTIN: &str = "09520123456788";
pub const GTIN2: &str = "06931234567899";

/// Path of a workspace binary, next to the test executable's directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    build_binaries_once(dir);
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built; run the tests with `cargo test --workspace`", path.display());
    path
}

/// `cargo test` builds other packages' binaries only as test harnesses, so
/// the real `qtrace-node` and `qtrace` are built here, once per test run,
/// with the same profile (a no-op when they are up to date; never stale).
fn build_binaries_once(dir: &Path) {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut command = Command::new(cargo);
        // Cargo gives this test process the variables of the qtrace-tests
        // package (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...). Passed on, they
        // change the environment some build scripts watch (ring's does), so
        // the nested build and the next `cargo test` would rebuild each
        // other's dependencies every time.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let package_scoped = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            if package_scoped || name == "CARGO_TARGET_TMPDIR" {
                command.env_remove(name.as_ref());
            }
        }
        command.args(["build", "--quiet", "-p", "qtrace-node", "-p", "qtrace-client", "--bins", "--manifest-path"]);
        command.arg(&manifest);
        if dir.file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("running cargo build for the qtrace binaries");
        assert!(status.success(), "cargo build of qtrace-node and qtrace failed");
    });
}

/// A running `qtrace-node` process.
pub struct Node {
    pub child: Option<Child>,
    pub data: PathBuf,
    pub url: String,
    _temp: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a node on a fresh temporary data directory.
    pub fn start() -> Node {
        let temp = tempfile::tempdir().expect("temp dir");
        let data = temp.path().join("data");
        let mut node = Node::start_in(&data, &[]);
        node._temp = Some(temp);
        node
    }

    /// Starts a node on `data` (port 0), waiting until it is serving.
    pub fn start_in(data: &Path, extra: &[&str]) -> Node {
        let _ = std::fs::remove_file(data.join("node.addr"));
        let listen: &[&str] = if extra.contains(&"--listen") { &[] } else { &["--listen", "127.0.0.1:0"] };
        let _ = std::fs::remove_file(data.join("http.addr"));
        let child = Command::new(binary("qtrace-node"))
            .arg("--data")
            .arg(data)
            .args(listen)
            .args(http_args(extra))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting qtrace-node");
        let addr_file = data.join("node.addr");
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && text.ends_with('\n')
            {
                break text.trim().to_string();
            }
            assert!(Instant::now() < deadline, "qtrace-node did not start within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        Node { child: Some(child), data: data.to_path_buf(), url: format!("http://{addr}"), _temp: None }
    }

    /// The base URL of the node's HTTP resolver and metrics
    /// (`DATA/http.addr`, written before `DATA/node.addr`).
    pub fn http_url(&self) -> String {
        let text = std::fs::read_to_string(self.data.join("http.addr")).expect("DATA/http.addr: is HTTP on?");
        format!("http://{}", text.trim())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("node is running")
    }

    /// Sends a signal to the node by process id and waits for it to exit.
    pub fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let status = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        assert!(status.map(|s| s.success()).unwrap_or(false), "kill -{signal} failed");
        child.wait().expect("waiting for qtrace-node")
    }

    /// SIGTERM: the node finishes in-flight work and exits 0.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM")
    }

    /// SIGKILL: the node dies at once.
    pub fn kill(&mut self) {
        let _ = self.signal("KILL");
    }

    pub fn authority_key(&self) -> SecretKey {
        keyfile::read_secret_key(&self.data.join("authority.key")).expect("authority key")
    }

    pub fn vkey(&self) -> Verifier {
        let text = std::fs::read_to_string(self.data.join("log.vkey")).expect("log.vkey");
        Verifier::parse(text.trim()).expect("valid vkey")
    }

    pub fn log_id(&self) -> LogId {
        let key = self.vkey();
        LogId::of_key(&key.public_key().to_bytes())
    }

    pub async fn client(&self) -> LedgerClient<Channel> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match LedgerClient::connect(self.url.clone()).await {
                Ok(client) => return client.max_decoding_message_size(64 * 1024 * 1024),
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot connect to {}: {e}", self.url);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A test signer: a key and the organisation it acts for.
#[derive(Clone)]
pub struct Actor {
    pub key: SecretKey,
    pub uscc: String,
}

impl Actor {
    pub fn new(seed: u8, uscc: &str) -> Actor {
        Actor { key: SecretKey::from_seed(&[seed; 32]), uscc: uscc.to_string() }
    }

    pub fn sign(&self, event: &pb::Event) -> pb::SignedEvent {
        let bytes = event.encode_to_vec();
        pb::SignedEvent {
            signature: self.key.sign_event(&bytes).to_vec(),
            signer: self.key.public_key().to_bytes().to_vec(),
            event: bytes,
        }
    }

    pub async fn append(
        &self,
        client: &mut LedgerClient<Channel>,
        event: pb::Event,
    ) -> Result<pb::AppendReceipt, tonic::Status> {
        client.append(pb::AppendRequest { event: Some(self.sign(&event)) }).await.map(tonic::Response::into_inner)
    }
}

/// Milliseconds now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// An event "now" in China Standard Time about `subject`.
pub fn event(subject: pb::subject::Kind, body: Body) -> pb::Event {
    pb::Event {
        event_time: Some(pb::EventTime { unix_millis: now_millis(), offset_minutes: 480 }),
        subject: Some(pb::Subject { kind: Some(subject) }),
        body: Some(body),
        ..Default::default()
    }
}

pub fn org_subject(uscc: &str) -> pb::subject::Kind {
    pb::subject::Kind::OrganisationUscc(uscc.to_string())
}

pub fn product(gtin: &str, lot: &str) -> pb::ProductKey {
    pb::ProductKey { gtin: gtin.to_string(), lot: lot.to_string(), serial: String::new() }
}

/// The one organisation registration of benchmarks, fuzz seeds and tests
/// (`qtrace_ledger::testkit::register_org`), stamped now.
pub fn register_org(uscc: &str, name: &str, roles: &[pb::Role], scope: &[&str]) -> pb::Event {
    pb::Event {
        event_time: Some(pb::EventTime { unix_millis: now_millis(), offset_minutes: 480 }),
        ..qtrace_ledger::testkit::register_org(uscc, name, roles, scope)
    }
}

/// The regulator's blacklisting (质量失信黑名单) of `uscc` for melamine
/// adulteration, open-ended.
pub fn blacklisting(uscc: &str) -> pb::Event {
    event(
        org_subject(uscc),
        Body::Blacklisted(pb::Blacklisted {
            uscc: uscc.into(),
            reason: "melamine adulteration".into(),
            legal_basis: "《产品质量法》第四十九条".into(),
            authority_uscc: REGULATOR.into(),
            listed_on: "2026-11-20".into(),
            until: String::new(),
        }),
    )
}

pub fn register_key(actor: &Actor, person: &str, title: &str) -> pb::Event {
    event(
        org_subject(&actor.uscc),
        Body::KeyRegistered(pb::KeyRegistered {
            uscc: actor.uscc.clone(),
            public_key: actor.key.public_key().to_bytes().to_vec(),
            person: person.into(),
            title: title.into(),
            admin: false,
        }),
    )
}

pub fn production(gtin: &str, lot: &str) -> pb::Event {
    event(
        pb::subject::Kind::Product(product(gtin, lot)),
        Body::Production(pb::Production {
            output: Some(pb::LotQuantity {
                product: Some(product(gtin, lot)),
                quantity: Some(pb::Quantity { value: 1000.0, unit: "EA".into() }),
            }),
            production_date: "2026-11-01".into(),
            expiry_date: "2028-11-01".into(),
            factory_gln: String::new(),
        }),
    )
}

pub fn inspection(gtin: &str, lot: &str, report: &str, conformant: bool) -> pb::Event {
    event(
        pb::subject::Kind::Product(product(gtin, lot)),
        Body::Inspection(pb::Inspection {
            report_number: report.into(),
            product: Some(product(gtin, lot)),
            standards: vec!["GB 19644-2010".into()],
            items: vec![pb::TestItem {
                name: "melamine (三聚氰胺)".into(),
                value: if conformant { "not detected" } else { "2563" }.into(),
                unit: "mg/kg".into(),
                limit: "<= 2.5".into(),
                result: if conformant { pb::Conclusion::Conformant } else { pb::Conclusion::NonConformant } as i32,
            }],
            conclusion: if conformant { pb::Conclusion::Conformant } else { pb::Conclusion::NonConformant } as i32,
            destructive: true,
            client_uscc: String::new(),
        }),
    )
}

pub fn cert_key(issuer: &str, number: &str) -> pb::CertificateKey {
    pb::CertificateKey { issuer_uscc: issuer.into(), number: number.into() }
}

pub fn certificate(issuer: &str, number: &str, holder: &str, gtin: &str, based_on: Vec<pb::RecordRef>) -> pb::Event {
    let mut e = event(
        pb::subject::Kind::Certificate(cert_key(issuer, number)),
        Body::CertificateIssued(pb::CertificateIssued {
            certificate: Some(cert_key(issuer, number)),
            holder_uscc: holder.into(),
            manufacturer_uscc: holder.into(),
            factory_name: "Example Dairy No. 1 Plant".into(),
            factory_gln: String::new(),
            products: vec![pb::CertifiedProduct {
                gtin: gtin.into(),
                name: "infant formula".into(),
                model: "900 g".into(),
            }],
            standards: vec!["GB 10765-2021".into()],
            certification_mode: "型式试验+初始工厂检查+获证后监督".into(),
            issued_on: "2026-01-01".into(),
            valid_until: "2029-12-31".into(),
            scope: String::new(),
        }),
    );
    e.parents = based_on;
    e
}

pub fn cert_change(issuer: &str, number: &str, body: Body) -> pb::Event {
    event(pb::subject::Kind::Certificate(cert_key(issuer, number)), body)
}

/// A reference to an entry from its receipt.
pub fn record_ref(receipt: &pb::AppendReceipt) -> pb::RecordRef {
    pb::RecordRef { log_id: receipt.log_id.clone(), seq: receipt.seq, entry_hash: receipt.entry_hash.clone() }
}

/// The standard cast of a test: a regulator (the root authority), a lab, a
/// certification body, a manufacturer and a retailer, each registered with
/// one key.
pub struct Cast {
    pub root: Actor,
    pub lab: Actor,
    pub body: Actor,
    pub factory: Actor,
    pub retailer: Actor,
}

impl Cast {
    pub async fn register(node: &Node, client: &mut LedgerClient<Channel>) -> Cast {
        let root = Actor { key: node.authority_key(), uscc: REGULATOR.into() };
        let cast = Cast {
            lab: Actor::new(11, LAB),
            body: Actor::new(12, CERT_BODY),
            factory: Actor::new(13, FACTORY),
            retailer: Actor::new(14, RETAILER),
            root,
        };
        let orgs = [
            (LAB, "Shanghai Food Testing Lab (上海食品检验所)", pb::Role::TestingLab, &["0952", "0693"][..]),
            (CERT_BODY, "Hangzhou Certification Centre (杭州认证中心)", pb::Role::CertificationBody, &["0952"][..]),
            (FACTORY, "Example Dairy Co. (示例乳业)", pb::Role::Manufacturer, &[][..]),
            (RETAILER, "Example Mart (示例超市)", pb::Role::Retailer, &[][..]),
        ];
        for (uscc, name, role, scope) in orgs {
            cast.root.append(client, register_org(uscc, name, &[role], scope)).await.expect("register org");
        }
        for (actor, person) in
            [(&cast.lab, "李娜"), (&cast.body, "王强"), (&cast.factory, "张伟"), (&cast.retailer, "陈静")]
        {
            cast.root.append(client, register_key(actor, person, "首席质量官")).await.expect("register key");
        }
        cast
    }
}

/// More organisations for the longer stories (valid USCCs).
pub const FARM: &str = "91330100MA27XY3Q11";
pub const DISTRIBUTOR: &str = "91440300MA5FGH2KXN";

pub fn lot_quantity(gtin: &str, lot: &str, amount: f64, unit: &str) -> pb::LotQuantity {
    pb::LotQuantity {
        product: Some(product(gtin, lot)),
        quantity: Some(pb::Quantity { value: amount, unit: unit.into() }),
    }
}

/// Inputs turned into one output lot; the input records are the parents.
pub fn transformation(inputs: &[(&str, &str)], output: (&str, &str), parents: Vec<pb::RecordRef>) -> pb::Event {
    let mut e = event(
        pb::subject::Kind::Product(product(output.0, output.1)),
        Body::Transformation(pb::Transformation {
            inputs: inputs.iter().map(|(g, l)| lot_quantity(g, l, 5_000.0, "LTR")).collect(),
            outputs: vec![lot_quantity(output.0, output.1, 2_000.0, "EA")],
            production_date: "2026-11-05".into(),
            expiry_date: "2028-11-04".into(),
            factory_gln: String::new(),
        }),
    );
    e.parents = parents;
    e
}

/// A movement of one lot between two organisations.
pub fn shipment(gtin: &str, lot: &str, from: &str, to: &str, parents: Vec<pb::RecordRef>) -> pb::Event {
    let mut e = event(
        pb::subject::Kind::Product(product(gtin, lot)),
        Body::Shipment(pb::Shipment {
            items: vec![lot_quantity(gtin, lot, 500.0, "EA")],
            source: Some(pb::Party { uscc: from.into(), location_gln: String::new() }),
            destination: Some(pb::Party { uscc: to.into(), location_gln: String::new() }),
            shipment_number: format!("DESADV-{lot}-{to}"),
        }),
    );
    e.parents = parents;
    e.biz_step = "shipping".into();
    e
}

pub fn receipt(gtin: &str, lot: &str, from: &str, to: &str, shipment: &pb::AppendReceipt) -> pb::Event {
    let mut e = event(
        pb::subject::Kind::Product(product(gtin, lot)),
        Body::Receipt(pb::Receipt {
            items: vec![lot_quantity(gtin, lot, 500.0, "EA")],
            source: Some(pb::Party { uscc: from.into(), location_gln: String::new() }),
            destination: Some(pb::Party { uscc: to.into(), location_gln: String::new() }),
            shipment_number: format!("DESADV-{lot}-{to}"),
        }),
    );
    e.parents = vec![record_ref(shipment)];
    e.biz_step = "receiving".into();
    e
}

pub fn sale(gtin: &str, lot: &str, serial: &str) -> pb::Event {
    let key = pb::ProductKey { gtin: gtin.into(), lot: lot.into(), serial: serial.into() };
    let mut e = event(
        pb::subject::Kind::Product(key.clone()),
        Body::Sale(pb::Sale {
            items: vec![pb::LotQuantity {
                product: Some(key),
                quantity: Some(pb::Quantity { value: 1.0, unit: "EA".into() }),
            }],
            store_gln: String::new(),
        }),
    );
    e.biz_step = "retail_selling".into();
    e.disposition = "retail_sold".into();
    e
}

pub fn recall(gtin: &str, lots: &[&str], ordered: bool, manufacturer: &str, reason: &str) -> pb::Event {
    event(
        pb::subject::Kind::Product(product(gtin, lots.first().copied().unwrap_or(""))),
        Body::Recall(pb::Recall {
            recall_number: format!("RC-{}", lots.join("-")),
            gtin: gtin.into(),
            lots: lots.iter().map(|l| l.to_string()).collect(),
            risk_class: 1,
            reason: reason.into(),
            initiator: if ordered { pb::RecallInitiator::Ordered } else { pb::RecallInitiator::Voluntary } as i32,
            manufacturer_uscc: manufacturer.into(),
            remedy: "stop eating; return to the shop for a refund".into(),
            ..Default::default()
        }),
    )
}

pub fn suspend(issuer: &str, number: &str, reason: &str) -> pb::Event {
    cert_change(
        issuer,
        number,
        Body::CertificateSuspended(pb::CertificateSuspended {
            certificate: Some(cert_key(issuer, number)),
            reason: reason.into(),
            until: String::new(),
        }),
    )
}

/// Says, in the record's documents, which certificate the product is sold under.
pub fn claiming(mut e: pb::Event, issuer: &str, number: &str) -> pb::Event {
    e.documents.push(pb::Document { kind: "certificate".into(), id: format!("{issuer}/{number}"), sha256: Vec::new() });
    e
}

/// Asks the node for a verdict.
pub async fn verify(client: &mut LedgerClient<Channel>, subject: pb::verdict_subject::Kind) -> pb::VerdictReport {
    client
        .verify(pb::VerifyRequest { subject: Some(pb::VerdictSubject { kind: Some(subject) }), ..Default::default() })
        .await
        .expect("verify")
        .into_inner()
}

pub fn code(text: &str) -> pb::verdict_subject::Kind {
    pb::verdict_subject::Kind::ProductCode(text.to_string())
}

/// A node planned before it starts, so peers can name each other: its data
/// directory holds a log key made here, and its port is chosen free.
pub struct Planned {
    pub label: String,
    pub data: PathBuf,
    pub origin: String,
    pub listen: String,
    pub url: String,
    pub vkey: String,
}

impl Planned {
    pub fn new(root: &Path, label: &str, seed: u8) -> Planned {
        let data = root.join(label);
        std::fs::create_dir_all(&data).expect("data dir");
        let key = SecretKey::from_seed(&[seed; 32]);
        keyfile::write_secret_key(&data.join("log.key"), &key).expect("log key");
        let origin = format!("qtrace.test/{label}");
        let vkey = qtrace_ledger::note::Signer::new(&origin, key.signing_key().clone())
            .expect("signer")
            .verifier()
            .to_string();
        let port = free_port();
        Planned {
            label: label.to_string(),
            data,
            origin,
            listen: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}"),
            vkey,
        }
    }

    /// A second node holding the same log key and origin: a log that can
    /// show two histories (for equivocation tests).
    pub fn twin(&self, root: &Path, dir: &str) -> Planned {
        let data = root.join(dir);
        std::fs::create_dir_all(&data).expect("data dir");
        std::fs::copy(self.data.join("log.key"), data.join("log.key")).expect("copy log key");
        let port = free_port();
        Planned {
            label: self.label.clone(),
            data,
            origin: self.origin.clone(),
            listen: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}"),
            vkey: self.vkey.clone(),
        }
    }

    /// The `--peer` value naming this node.
    pub fn as_peer(&self) -> String {
        format!("{}={},{}", self.label, self.url, self.vkey)
    }

    /// Starts the node with these peers and extra flags.
    pub fn start(&self, peers: &[&Planned], extra: &[&str]) -> Node {
        let peer_args: Vec<String> = peers.iter().map(|p| p.as_peer()).collect();
        let mut args: Vec<&str> = vec!["--name", &self.origin, "--listen", &self.listen, "--mirror-interval-ms", "100"];
        for peer in &peer_args {
            args.push("--peer");
            args.push(peer);
        }
        args.extend_from_slice(extra);
        Node::start_in(&self.data, &args)
    }
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Polls `check` until it returns Some, for up to `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {seconds} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many entries of `log` a node holds (own or mirrored).
pub async fn held(client: &mut LedgerClient<Channel>, log: &LogId) -> u64 {
    client
        .list_logs(pb::ListLogsRequest {})
        .await
        .map(|r| r.into_inner().logs.into_iter().find(|l| l.log_id == log.0).map(|l| l.size).unwrap_or(0))
        .unwrap_or(0)
}

/// Copies a directory tree (a stopped node's data directory) file by file.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the copy");
    for item in std::fs::read_dir(from).expect("reading the directory") {
        let item = item.expect("directory entry");
        let target = to.join(item.file_name());
        if item.file_type().expect("file type").is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).expect("copying a file");
        }
    }
}

/// How a `qtrace-node` started by [`try_start_in`] came out.
pub enum Started {
    /// It is serving.
    Serving(Node),
    /// It exited before serving: its status and everything it printed.
    Exited { status: std::process::ExitStatus, output: String },
}

/// Starts a node on `data` like [`Node::start_in`], but also reports a node
/// that exits instead of serving (a refused store, a bad flag), with what it
/// printed on stdout and stderr.
pub fn try_start_in(data: &Path, extra: &[&str]) -> Started {
    use std::io::{Read, Seek};
    let _ = std::fs::remove_file(data.join("node.addr"));
    let mut output = tempfile::tempfile().expect("temp file for the node's output");
    let mut child = Command::new(binary("qtrace-node"))
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .args(http_args(extra))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(output.try_clone().expect("output handle"))
        .stderr(output.try_clone().expect("output handle"))
        .spawn()
        .expect("starting qtrace-node");
    let addr_file = data.join("node.addr");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("polling qtrace-node") {
            let mut text = String::new();
            output.rewind().expect("rewinding the output");
            output.read_to_string(&mut text).expect("reading the output");
            return Started::Exited { status, output: text };
        }
        if let Ok(text) = std::fs::read_to_string(&addr_file)
            && text.ends_with('\n')
        {
            let url = format!("http://{}", text.trim());
            return Started::Serving(Node { child: Some(child), data: data.to_path_buf(), url, _temp: None });
        }
        assert!(Instant::now() < deadline, "qtrace-node neither served nor exited within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `qtrace-node audit --data DATA`: whether it passed, and its output
/// (stdout then stderr).
pub fn audit(data: &Path) -> (bool, String) {
    let output = Command::new(binary("qtrace-node"))
        .arg("audit")
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running qtrace-node audit");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Test nodes serve HTTP on a free port rather than the default 7780, so
/// that tests can run side by side.
fn http_args(extra: &[&str]) -> &'static [&'static str] {
    if extra.contains(&"--http") || extra.contains(&"--no-http") { &[] } else { &["--http", "127.0.0.1:0"] }
}

/// An HTTP response as [`http_get`] reads it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 GET over a `TcpStream` (`Connection: close`), enough to
/// test the resolver without an HTTP client dependency. `base` is
/// `http://host:port`; `accept` is the Accept header, if any.
pub fn http_get(base: &str, path: &str, accept: Option<&str>) -> HttpResponse {
    use std::io::{Read, Write};
    let host = base.strip_prefix("http://").expect("an http:// base URL");
    let mut stream = std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("connecting to {host}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("read timeout");
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("sending the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    HttpResponse { status, headers, body: String::from_utf8(body).expect("a UTF-8 body") }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else { return out };
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
}

/// What one run of `qtrace` produced.
pub struct Run {
    pub code: i32,
    pub json: serde_json::Value,
    pub stderr: String,
}

/// The `qtrace` binary, isolated from the caller's QTRACE_* variables
/// (every one the CLI reads, `qtrace_client::ENVIRONMENT`).
pub fn qtrace_command() -> Command {
    let mut command = Command::new(binary("qtrace"));
    for variable in qtrace_client::ENVIRONMENT {
        command.env_remove(variable);
    }
    command
}

/// Runs `qtrace --node <node> --json ARGS`, isolated from the caller's
/// QTRACE_* variables. Stdout must be one JSON object.
pub fn qtrace(node: &Node, args: &[&str]) -> Run {
    qtrace_at(&node.url, args)
}

/// [`qtrace`] against a node known by its URL only.
pub fn qtrace_at(url: &str, args: &[&str]) -> Run {
    let out = qtrace_command().args(["--node", url, "--json"]).args(args).output().expect("running qtrace");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("qtrace {args:?}: stdout is not one JSON object ({e}):\n{stdout}\nstderr: {stderr}")
    });
    Run { code: out.status.code().unwrap_or(-1), json, stderr }
}
