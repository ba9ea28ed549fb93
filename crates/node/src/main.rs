//! `qtrace-node`: the gRPC server of one agency's qtrace log.

mod appender;
mod audit;
mod federation;
mod http;
mod logs;
mod metrics;
mod migrate;
mod page;
mod service;
mod setup;
mod snapshot;
mod status;
mod storeview;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use qtrace_rpc::rpc::ledger_server::LedgerServer;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::appender::{Appender, DEFAULT_QUEUE_LIMIT};
use crate::service::LedgerService;

/// sled allocates for every key it reads or writes; mimalloc serves those
/// small allocations faster than glibc (measured: a downstream trace 1.5x
/// faster) and returns freed memory to the system.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Largest gRPC message the node accepts or sends.
const MAX_MESSAGE_BYTES: usize = 96 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "qtrace-node",
    version,
    about = "qtrace node: validates, authorises, sequences and durably appends signed quality records \
             (质量追溯记录) to this agency's log, and serves proofs over gRPC.",
    long_about = "qtrace node: validates, authorises, sequences and durably appends signed quality records \
                  (质量追溯记录) to this agency's log, and serves proofs over gRPC.\n\n\
                  With no arguments it runs on the embedded development default: a sled store in \
                  ./qtrace-data, gRPC on 127.0.0.1:7700, and on first start a log key and a development \
                  root authority key created in the data directory (their paths are printed). For a real \
                  deployment give --genesis FILE (TOML: log_name, operator_uscc, operator_name, \
                  root_authority_keys = [\"<64 hex>\", ...]).\n\n\
                  gRPC health (grpc.health.v1) and server reflection are served, so \
                  `grpcurl -plaintext 127.0.0.1:7700 list` works. SIGINT/SIGTERM stop accepting, finish \
                  and flush the batch in flight, and exit 0. Log verbosity: RUST_LOG (default info)."
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Data directory: sled store, log key, verifier key, node.addr.
    #[arg(long, default_value = "./qtrace-data", env = "QTRACE_DATA")]
    data: PathBuf,
    /// gRPC listen address; port 0 picks a free port (the bound address is
    /// printed and written to DATA/node.addr).
    #[arg(long, default_value = "127.0.0.1:7700", env = "QTRACE_LISTEN")]
    listen: SocketAddr,
    /// Genesis file (TOML) for a new log; without it a development
    /// authority key is created in the data directory.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// The log's origin (checkpoint name) for a new log, e.g.
    /// "qtrace.example.cn/sh-amr". Fixed by the genesis entry thereafter.
    #[arg(long)]
    name: Option<String>,
    /// Most events waiting to be appended before new ones are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_QUEUE_LIMIT)]
    queue_limit: usize,
    /// sled page cache in MiB, for reads and unflushed writes: half for the
    /// logs (entries, tiles), half for their indexes.
    /// sled treats it as a target, not a cap, and also keeps about 100 bytes
    /// per stored entry of bookkeeping in memory (README, "Memory"). Used by
    /// `mirror` too.
    #[arg(long, default_value_t = qtrace_store::DEFAULT_CACHE_BYTES >> 20)]
    cache_mb: u64,
    /// Deepest trace (steps from the start) a trace or verdict may walk.
    #[arg(long, default_value_t = 64)]
    max_trace_depth: u32,
    /// Most records a trace or verdict may reach.
    #[arg(long, default_value_t = 20_000)]
    max_trace_nodes: usize,
    /// A peer agency's node to mirror and cosign: NAME=URL,VKEY where VKEY is
    /// the peer log's C2SP verifier key (its DATA/log.vkey). Repeatable.
    #[arg(long = "peer", value_name = "NAME=URL,VKEY")]
    peers: Vec<federation::Peer>,
    /// A file of peers, one NAME=URL,VKEY per line ('#' starts a comment).
    #[arg(long, value_name = "FILE")]
    peers_file: Option<PathBuf>,
    /// Witness policy: how many peers must cosign the checkpoint that proves
    /// a record for a verdict to be VALID rather than WARNING (k of n).
    #[arg(long, default_value_t = 0)]
    witness_quorum: usize,
    /// How often to poll each peer for new entries, in milliseconds.
    #[arg(long, default_value_t = 500)]
    mirror_interval_ms: u64,
    /// Entries verified and stored together while catching up with a peer.
    #[arg(long, default_value_t = federation::DEFAULT_CHUNK)]
    mirror_chunk: usize,
    /// Serve gRPC over TLS with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: require every client (and peer) to present a certificate
    /// signed by this CA (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// CA (PEM) that signed the certificates of https:// peers. With
    /// --tls-cert/--tls-key this node also presents its own certificate to
    /// peers (mutual TLS).
    #[arg(long, value_name = "FILE")]
    peer_ca: Option<PathBuf>,
    /// Allow plaintext gRPC on an address other than loopback. Without TLS,
    /// anyone on the network can read and alter traffic; use only behind a
    /// trusted TLS-terminating proxy.
    #[arg(long)]
    allow_plaintext: bool,
    /// HTTP address of the consumer resolver (GS1 Digital Link pages,
    /// /evidence) and /metrics; port 0 picks a free port (the bound address
    /// is written to DATA/http.addr).
    #[arg(long, default_value = "127.0.0.1:7780", env = "QTRACE_HTTP")]
    http: SocketAddr,
    /// Do not serve the HTTP resolver and metrics.
    #[arg(long, conflicts_with = "http")]
    no_http: bool,
    /// Before serving, drop and rebuild every derived key (hash, Merkle
    /// node, duplicate and lookup indexes) from the log entries. The
    /// entries and checkpoints are never touched.
    #[arg(long)]
    rebuild_indexes: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Re-verify the whole store offline: every entry's signature and chain
    /// link, the Merkle tree against every stored checkpoint, and every
    /// index against the entries. Exits 0 when consistent, 1 at the first
    /// inconsistency (which it names). Stop the node first.
    Audit {
        /// Data directory to audit.
        #[arg(long, default_value = "./qtrace-data", env = "QTRACE_DATA")]
        data: PathBuf,
    },
    /// Catch up with peers by hand, with a progress bar, then exit (the
    /// node must not be running on DATA). Verifies every entry, the chain
    /// and the peer's signed checkpoint before storing anything.
    Mirror {
        /// Data directory of this node.
        #[arg(long, default_value = "./qtrace-data", env = "QTRACE_DATA")]
        data: PathBuf,
        /// Peer to mirror: NAME=URL,VKEY. Repeatable.
        #[arg(long = "peer", value_name = "NAME=URL,VKEY", required = true)]
        peers: Vec<federation::Peer>,
        /// CA (PEM) that signed the certificates of https:// peers.
        #[arg(long, value_name = "FILE")]
        peer_ca: Option<PathBuf>,
    },
    /// Upgrade a data directory written by an earlier store layout in place
    /// (存储升级), then build its indexes; stop the node first. Entries,
    /// checkpoints, cosignatures and equivocation evidence are kept byte for
    /// byte (same log, same roots: every stored checkpoint is checked
    /// against the rebuilt tree); only derived state is rewritten. Killed at
    /// any moment, run it again: it finishes. A current store is left as is.
    Migrate {
        /// Data directory to upgrade.
        #[arg(long, default_value = "./qtrace-data", env = "QTRACE_DATA")]
        data: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(Command::Audit { data }) = &args.command {
        return run_audit(data);
    }
    if let Some(Command::Migrate { data }) = &args.command {
        return run_migrate(data, args.cache_mb.saturating_mul(1 << 20));
    }
    if let Some(Command::Mirror { data, peers, peer_ca }) = &args.command {
        return match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => match runtime.block_on(run_mirror(
                data,
                peers,
                peer_ca.as_deref(),
                args.cache_mb.saturating_mul(1 << 20),
            )) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("qtrace-node mirror: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("qtrace-node: cannot start the runtime: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("qtrace-node: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qtrace-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_audit(data: &std::path::Path) -> std::process::ExitCode {
    use std::io::IsTerminal;
    let result = setup::open_existing(data).and_then(|(log, verifier)| {
        audit::audit(&log, &verifier, std::io::stderr().is_terminal()).map_err(anyhow::Error::from)
    });
    match result {
        Ok(summary) => {
            println!(
                "audit passed (审计通过): {} entries, {} checkpoints and {} derived keys are consistent",
                summary.entries, summary.checkpoints, summary.derived_keys
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("audit FAILED (审计失败): {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_migrate(data: &std::path::Path, cache_bytes: u64) -> std::process::ExitCode {
    match migrate::run(data, cache_bytes) {
        Ok(text) => {
            println!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qtrace-node migrate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Builds the federation state for a node's data directory, with the
/// registry rebuilt from the own log and the kept mirrors of the peers.
fn federation_for(
    opened: &setup::Opened,
    peers: Vec<federation::Peer>,
    interval: std::time::Duration,
    chunk: usize,
    tls: Option<qtrace_rpc::connect::Tls>,
) -> anyhow::Result<(Arc<federation::Federation>, setup::Trust)> {
    let logs = Arc::new(logs::Logs::new(opened.log.clone(), opened.store.clone()));
    let cosigner = qtrace_ledger::note::Cosigner::new(&opened.origin, opened.log_key.signing_key().clone())
        .map_err(|e| anyhow::anyhow!("log origin {:?} cannot name a witness key: {e}", opened.origin))?;
    // Mirrors kept from earlier runs: their registry records (organisations
    // and keys registered on a peer's log) count too.
    for log_id in opened.store.logs()? {
        if log_id != opened.log_id() && peers.iter().any(|p| p.log_id == log_id) {
            logs.mirror(log_id)?;
        }
    }
    let trust = setup::Trust {
        own: opened.log_key.public_key().to_bytes(),
        peers: peers.iter().map(|p| p.vkey.public_key().to_bytes()).collect(),
    };
    let registry = setup::rebuild_registry(&trust, &logs.own, &logs.mirrors()).context(
        "refusing to start: the registry cannot be rebuilt from the stored entries; run `qtrace-node audit` on the \
         data directory to locate the problem",
    )?;
    let settings = federation::Settings { peers, interval, chunk, tls };
    let fed = Arc::new(federation::Federation::new(
        settings,
        logs,
        Arc::new(snapshot::Registries::new(registry)),
        cosigner,
        opened.signer.verifier(),
        opened.store.meta()?,
    )?);
    Ok((fed, trust))
}

fn read_peers(args: &Args) -> anyhow::Result<Vec<federation::Peer>> {
    let mut peers = args.peers.clone();
    if let Some(path) = &args.peers_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let peer = line.parse().map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
            peers.push(peer);
        }
    }
    Ok(peers)
}

/// TLS settings for reaching https:// peers.
fn peer_tls(
    ca: Option<&std::path::Path>,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> anyhow::Result<Option<qtrace_rpc::connect::Tls>> {
    let Some(ca) = ca else { return Ok(None) };
    let identity = cert.zip(key);
    Ok(Some(qtrace_rpc::connect::Tls::from_files(ca, identity)?))
}

async fn run_mirror(
    data: &std::path::Path,
    peers: &[federation::Peer],
    peer_ca: Option<&std::path::Path>,
    cache_bytes: u64,
) -> anyhow::Result<()> {
    let opened = setup::open(data, None, None, false, cache_bytes)?;
    let (fed, _) = federation_for(
        &opened,
        peers.to_vec(),
        std::time::Duration::from_millis(500),
        federation::DEFAULT_CHUNK,
        peer_tls(peer_ca, None, None)?,
    )?;
    for peer in peers {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} entries ({per_sec}, {eta} left)")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("mirroring {} (镜像同步)", peer.name));
        let mut client = None;
        let progress = federation::Progress::Bar(bar.clone());
        while federation::round(&fed, peer, &mut client, &progress).await? {}
        bar.finish_and_clear();
        let size = fed.logs.get(&peer.log_id).map(|l| l.head().size).unwrap_or(0);
        println!("{}: {} entries mirrored, verified and cosigned (log {})", peer.name, size, peer.log_id);
    }
    opened.store.flush()?;
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let peers = read_peers(&args)?;
    let tls = args.tls_cert.is_some();
    if !tls && !args.listen.ip().is_loopback() {
        if !args.allow_plaintext {
            anyhow::bail!(
                "refusing to serve plaintext gRPC on {} (not loopback): give --tls-cert/--tls-key, or \
                 --allow-plaintext if a trusted proxy terminates TLS",
                args.listen
            );
        }
        eprintln!(
            "qtrace-node: WARNING: serving plaintext gRPC on {}; anyone on the network can read and alter \
             traffic (明文传输，存在被窃听和篡改的风险)",
            args.listen
        );
    }
    let opened = setup::open(
        &args.data,
        args.name.as_deref(),
        args.genesis.as_deref(),
        args.rebuild_indexes,
        args.cache_mb.saturating_mul(1 << 20),
    )?;
    let head = opened.log.head();
    let vkey = opened.signer.verifier().to_string();
    if opened.created {
        tracing::info!(origin = %opened.origin, "created a new log with its genesis entry");
    }
    println!("qtrace-node: log {} ({})", opened.log_id(), opened.origin);
    println!("  verifier key (C2SP vkey): {vkey}");
    println!("  entries: {}  root: {}", head.size, hex::encode(head.root));
    if let Some(path) = &opened.authority_key_path {
        println!("  development root authority key: {}", path.display());
    }

    let (entries_tx, _) = broadcast::channel(4_096);
    let (fed, trust) = federation_for(
        &opened,
        peers.clone(),
        std::time::Duration::from_millis(args.mirror_interval_ms),
        args.mirror_chunk,
        peer_tls(args.peer_ca.as_deref(), args.tls_cert.as_deref(), args.tls_key.as_deref())?,
    )?;
    let (appender, writer) = Appender::start(
        opened.log.clone(),
        fed.logs.clone(),
        fed.registry.clone(),
        trust,
        opened.signer.clone(),
        opened.origin.clone(),
        entries_tx.clone(),
        args.queue_limit,
    );
    let service = LedgerService {
        log: opened.log.clone(),
        logs: fed.logs.clone(),
        federation: fed.clone(),
        witness_quorum: args.witness_quorum,
        appender: appender.clone(),
        entries: entries_tx,
        trace_limits: qtrace_ledger::trace::Limits { max_depth: args.max_trace_depth, max_nodes: args.max_trace_nodes },
        origin: opened.origin.clone(),
        signer: opened.signer.clone(),
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<LedgerServer<LedgerService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(qtrace_ledger::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let shutdown = shutdown_signal()?;
    // The resolver and /metrics, bound before gRPC so that DATA/http.addr
    // exists by the time DATA/node.addr does.
    let http_server = if args.no_http {
        let _ = std::fs::remove_file(args.data.join("http.addr"));
        None
    } else {
        let resolver = http::Resolver {
            verdicts: service.verdicts(),
            origin: opened.origin.clone(),
            log_id: opened.log_id(),
            vkey,
        };
        let server = http::start(args.http, &args.data, resolver).await?;
        println!("  listening on {} (HTTP: resolver /01/..., /metrics)", server.addr);
        Some(server)
    };
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let bound = listener.local_addr()?;
    std::fs::write(args.data.join("node.addr"), format!("{bound}\n")).context("writing DATA/node.addr")?;
    println!("  listening on {bound} (gRPC)");
    tracing::info!(%bound, "serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut mirrors = Vec::new();
    for peer in peers {
        tracing::info!(peer = %peer.name, url = %peer.url, log = %peer.log_id, "mirroring peer");
        mirrors.push(tokio::spawn(federation::run(fed.clone(), peer, stop_rx.clone())));
    }

    let ledger = LedgerServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut server = tonic::transport::Server::builder();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &args.tls_client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        server = server.tls_config(config).context("configuring TLS")?;
        println!(
            "  TLS: on{}",
            if args.tls_client_ca.is_some() { " (mutual: client certificates required)" } else { "" }
        );
    }
    server
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ledger)
        // TCP_NODELAY: without it a unary reply's trailer waits ~40 ms for the
        // client's delayed ACK (Nagle's algorithm), which capped one client
        // at about 20 appends/s.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .context("serving gRPC")?;

    let _ = stop_tx.send(true);
    for mirror in mirrors {
        let _ = mirror.await;
    }
    if let Some(server) = http_server {
        server.shutdown().await;
    }
    // The server has stopped accepting and finished its in-flight calls.
    // Close the queue and let the writer finish and flush what it holds.
    appender.close();
    drop(appender);
    tokio::task::spawn_blocking(move || writer.join()).await.ok();
    opened.store.flush()?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now, before the node says it
/// is serving (DATA/node.addr), so a signal from then on stops it cleanly;
/// the returned future ends at the first of them. (Installed only when the
/// server first polled it, a SIGTERM right after node.addr appeared still
/// met the default action and killed the node.)
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received; stopping"),
            _ = terminate.recv() => tracing::info!("SIGTERM received; stopping"),
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received; stopping");
        }
    })
}
