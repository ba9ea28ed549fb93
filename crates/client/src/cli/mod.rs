//! The `qtrace` command line: argument definitions, the context every
//! command runs in, output, and the mapping from failures to exit codes.

mod args;
mod epcis;
mod import;
mod qr;
mod query;
mod submit;
mod trace;
mod verdict;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use qtrace_client::connect::{self, ConnectError, code_name};
use qtrace_client::ids::Uscc;
use qtrace_client::input::RecordKey;
use qtrace_client::keyfile;
use qtrace_client::rpc::ledger_client::LedgerClient;
use qtrace_client::signing::SecretKey;
use qtrace_client::verify::{self, CheckError, CheckedEntry};
use serde_json::{Value, json};
use tonic::transport::Channel;

pub use args::*;

/// Printed under every command's `--help`.
const HELP_FOOTER: &str = "\
Environment 环境变量:
  QTRACE_NODE  node address, as --node (default http://127.0.0.1:7700)
  QTRACE_KEY   secret key file that signs records, as --key
  QTRACE_ORG   USCC (统一社会信用代码) of the signer's organisation, as --org
  QTRACE_CA    CA certificate (PEM) of an https:// node, as --ca
  QTRACE_VKEY  the log's C2SP verifier key, as --vkey (checkpoint, proof, consistency)
  QTRACE_TRUST trusted logs' verifier keys, comma-separated, as --trust (verify, check)
  QTRACE_RESOLVER  the resolver a QR code's link points at, as qr --base

Exit codes 退出码:
  0  done
  1  refused by the node (its gRPC code and message are printed, e.g.
     \"refused (PERMISSION_DENIED): ...\"), or what the node sent does not verify;
     for verify and check: a verdict other than VALID (WARNING, INVALID, NOT_FOUND)
  2  usage or bad input: unknown flag, invalid code or date, bad key file;
     nothing was sent
  3  node unreachable";

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options 全局选项";

#[derive(Debug, Parser)]
#[command(
    name = "qtrace",
    version,
    about = "qtrace: sign, submit and verify quality traceability records (质量追溯记录)",
    long_about = "qtrace: sign, submit and verify quality traceability records (质量追溯记录).\n\n\
        Every record command builds the record, checks it with the ledger's own rules before \
        signing (so a mistake is reported here, exit 2, with the node's exact message), signs it \
        with --key and submits it to --node. Records are named on the command line by their \
        sequence number (e.g. 42) or their entry hash (64 hex digits). Hashes print as lowercase hex.",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Address of the qtrace node: http://HOST:PORT, or https://HOST:PORT
    /// with --ca for a node serving TLS.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "QTRACE_NODE",
        default_value = connect::DEFAULT_NODE,
        value_name = "URL"
    )]
    pub node: String,
    /// Secret key file that signs records (made by `qtrace keygen`).
    #[arg(long, global = true, help_heading = GLOBAL, env = "QTRACE_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// USCC of the signer's organisation (统一社会信用代码). Needed by `cert ...`
    /// (the issuer) and `blacklist` (the deciding authority); the default
    /// for `key revoke --uscc` and a voluntary `recall --manufacturer`.
    #[arg(long, global = true, help_heading = GLOBAL, env = "QTRACE_ORG", value_name = "USCC")]
    pub org: Option<Uscc>,
    /// Print exactly one JSON object on stdout (also for failures), hashes
    /// in lowercase hex.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// CA certificate (PEM) that signed an https:// node's certificate.
    #[arg(long, global = true, help_heading = GLOBAL, env = "QTRACE_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM) for a node that requires mutual TLS.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a secret key file (mode 0600, never overwrites) and print its public key.
    Keygen {
        /// Where to write the new key file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Register or update an organisation (机构登记); signed by a regulator.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Bind a key to an organisation and a person, or revoke it (密钥登记/撤销).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Record a production run (生产): a new lot, or with --input a transformation (加工) of input lots.
    Produce(ProduceArgs),
    /// Record a shipment (发货) from one party to another.
    Ship(MoveArgs),
    /// Record a receipt (收货); name the shipment with --parent.
    Receive(MoveArgs),
    /// Record a retail sale (销售).
    Sell(SellArgs),
    /// Record a testing lab's inspection report (检验报告).
    Inspect(InspectArgs),
    /// Issue a certificate (发证) or change its status (暂停/恢复/撤销/注销/缩小范围/延续).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Record a recall (召回): voluntary (主动召回) or, with --ordered, ordered by a regulator (责令召回).
    Recall(RecallArgs),
    /// Publish a supervision spot-check result (监督抽查); signed by a regulator.
    Spotcheck(SpotCheckArgs),
    /// Put an organisation on the quality blacklist (质量失信黑名单); signed by a regulator.
    Blacklist(BlacklistArgs),
    /// Remove an organisation from the blacklist (移出黑名单, 信用修复); signed by a regulator.
    Delist(DelistArgs),
    /// Declare an earlier record wrong (更正); nothing is deleted.
    Correct(CorrectArgs),
    /// Show a record (记录), after recomputing its entry hash and verifying its signature.
    Get {
        /// The record: sequence number or entry hash (64 hex digits).
        #[arg(value_name = "RECORD")]
        record: RecordKey,
    },
    /// Show the log's latest signed checkpoint (检查点), verified with --vkey when given.
    Checkpoint(CheckpointArgs),
    /// Prove a record is in the log (包含证明): fetch and verify its inclusion proof locally.
    Proof(ProofArgs),
    /// Prove the log only grew between two sizes (一致性证明), verified locally.
    Consistency(ConsistencyArgs),
    /// Submit records in bulk from a JSON Lines file (批量导入); resumable.
    ///
    /// Records are sent with AppendBatch in chunks of up to 500, with a progress bar on stderr
    /// (hidden with --json or when stderr is not a terminal). After each chunk the node
    /// acknowledges, the number of lines done is written to FILE.jsonl.progress (atomically), and
    /// a later run skips that many lines, so an interrupted import resumes where it stopped. A
    /// crash between the node's acknowledgement and the progress write is harmless: the node
    /// answers a record it already holds with its original receipt (counted as a duplicate) and
    /// appends nothing. The progress file is removed once the whole file is done.
    ///
    /// The summary counts records appended, duplicates and refusals, and lists the first 20
    /// refusals with their line numbers, gRPC codes and messages; any refusal makes the exit
    /// code 1. Lines that are not valid JSON, base64 or hex, or whose event fails validation
    /// before signing, are refused here without being sent.
    ///
    /// With --epcis, FILE is a GS1 EPCIS 2.0 JSON(-LD) document: every event becomes a record
    /// signed with --key, or is refused with the reason (an aggregation, a party without a USCC
    /// in --party-map, an inspection by a key that is not a lab's, the ledger's own message). The
    /// summary lists each event by index, type and eventID; any refusal makes the exit code 1.
    Import(ImportArgs),
    /// Write a product's records as a GS1 EPCIS 2.0 JSON-LD document (EPCIS 导出).
    ///
    /// The node is queried by the product code (every page); each record is rechecked (entry hash
    /// recomputed, signature verified) and mapped to an EPCIS event whose eventID is
    /// ni:///sha-256;<entry hash>?ver=CBV2.0, so the same record always exports the same. Records
    /// that are not EPCIS events (certificates, recall progress, corrections) are listed under
    /// qtrace:otherRecords. `qtrace import --epcis` reads the document back to the same records.
    Export(epcis::ExportArgs),
    /// Verify a record or a certificate (核验, the regulator's view), or an evidence bundle offline.
    ///
    /// The verdict is computed here, from the evidence bundle the node sends (or a file with
    /// --offline) and the log keys given with --trust or --data. It shows every check with its
    /// evidence, the certificate status history and the accountable persons. Exit 0 only for VALID.
    Verify(verdict::VerifyArgs),
    /// Check a product code (查验, the consumer's view): genuine? certified? recalled? who is
    /// responsible? Exit 0 only for VALID.
    Check(verdict::CheckArgs),
    /// Write the evidence bundle (证据包) behind a verdict to a file, for `verify --offline`.
    Bundle(verdict::BundleArgs),
    /// Trace a record or a lot upstream (--up, 来源可查) or downstream (--down, 去向可追).
    Trace(trace::TraceArgs),
    /// Draw the QR code (二维码) of a product's GS1 Digital Link, or write it as SVG or PNG.
    Qr(qr::QrArgs),
}

/// Why a command failed; each kind has its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or input: nothing was sent (exit 2).
    Usage(String),
    /// The node answered with a refusal (exit 1).
    Refused { code: tonic::Code, message: String },
    /// What the node sent does not verify (exit 1).
    Unverified(String),
    /// A local operation failed after work started, e.g. writing a file (exit 1).
    Failed(String),
    /// The node could not be reached (exit 3).
    Unreachable(String),
    /// The command printed its own account of what failed (e.g. an import
    /// summary listing refusals); exit 1 without another message.
    Reported,
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused { .. } | Failure::Unverified(_) | Failure::Failed(_) | Failure::Reported => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::Refused { .. } => "refused",
            Failure::Unverified(_) => "unverified",
            Failure::Failed(_) => "failed",
            Failure::Unreachable(_) => "unreachable",
            Failure::Reported => "reported",
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Unverified(m) | Failure::Failed(m) | Failure::Unreachable(m) => m,
            Failure::Refused { message, .. } => message,
            Failure::Reported => "",
        }
    }

    /// The line a person reads on stderr.
    fn line(&self) -> String {
        match self {
            Failure::Usage(m) => format!("error: {m}"),
            Failure::Refused { code, message } => format!("refused ({}): {message}", code_name(*code)),
            Failure::Unverified(m) => format!("does not verify (验证失败): {m}"),
            Failure::Failed(m) => format!("failed: {m}"),
            Failure::Unreachable(m) => format!("unreachable (无法连接节点): {m}"),
            Failure::Reported => String::new(),
        }
    }

    fn json(&self) -> Value {
        let code = match self {
            Failure::Refused { code, .. } => Value::from(code_name(*code)),
            _ => Value::Null,
        };
        json!({"error": {"exit_code": self.exit_code(), "kind": self.kind(), "code": code, "message": self.message()}})
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        if connect::is_unreachable(&status) {
            Failure::Unreachable(status.message().to_owned())
        } else {
            Failure::Refused { code: status.code(), message: status.message().to_owned() }
        }
    }
}

impl From<ConnectError> for Failure {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::BadUrl { .. } | ConnectError::Tls { .. } => Failure::Usage(error.to_string()),
            _ => Failure::Unreachable(error.to_string()),
        }
    }
}

impl From<CheckError> for Failure {
    fn from(error: CheckError) -> Self {
        Failure::Unverified(error.to_string())
    }
}

/// What every command runs with: the global options and, once needed, the
/// connection to the node.
pub struct Ctx {
    pub node: String,
    pub key_path: Option<PathBuf>,
    pub org: Option<Uscc>,
    pub json: bool,
    tls: Option<(PathBuf, Option<(PathBuf, PathBuf)>)>,
    client: Option<LedgerClient<Channel>>,
}

impl Ctx {
    fn new(cli: &Cli) -> Self {
        let tls = cli.ca.clone().map(|ca| (ca, cli.tls_cert.clone().zip(cli.tls_key.clone())));
        Ctx {
            node: cli.node.clone(),
            key_path: cli.key.clone(),
            org: cli.org.clone(),
            json: cli.json,
            tls,
            client: None,
        }
    }

    /// Loads the signing key given by --key / QTRACE_KEY.
    pub fn key(&self) -> Result<SecretKey, Failure> {
        let path = self.key_path.as_ref().ok_or_else(|| {
            Failure::Usage("this command signs a record: give --key FILE or set QTRACE_KEY".to_owned())
        })?;
        let key = keyfile::read_secret_key(path).map_err(|e| Failure::Usage(e.to_string()))?;
        if keyfile::readable_by_others(path) == Some(true) {
            self.warn(&format!("{} can be read by other users; `chmod 600` it", path.display()));
        }
        Ok(key)
    }

    /// The signer's organisation from --org / QTRACE_ORG, which `what` needs.
    pub fn org(&self, what: &str) -> Result<Uscc, Failure> {
        self.org.clone().ok_or_else(|| {
            Failure::Usage(format!("{what} needs the signer's organisation: give --org USCC or set QTRACE_ORG"))
        })
    }

    /// The connection to the node, opened on first use.
    pub async fn client(&mut self) -> Result<&mut LedgerClient<Channel>, Failure> {
        if self.client.is_none() {
            let tls = match &self.tls {
                Some((ca, identity)) => Some(connect::Tls::from_files(
                    ca,
                    identity.as_ref().map(|(cert, key)| (cert.as_path(), key.as_path())),
                )?),
                None => None,
            };
            self.client = Some(connect::connect_with(&self.node, tls.as_ref()).await?);
        }
        self.client.as_mut().ok_or_else(|| Failure::Failed("no connection to the node".to_owned()))
    }

    /// Fetches a record and checks it: the entry hash is recomputed from its
    /// fields, the signature verified and the event decoded, and it must be
    /// the record that was asked for.
    pub async fn fetch(&mut self, key: RecordKey) -> Result<CheckedEntry, Failure> {
        let wire = self.client().await?.get_entry(key.to_request()).await?.into_inner();
        let checked = verify::check_entry(&wire)?;
        verify::check_answer(key, &checked)?;
        Ok(checked)
    }

    /// Prints a result: the JSON object with --json, otherwise the text.
    pub fn emit(&self, value: Value, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) leaves nothing useful to do.
        let _ = if self.json { writeln!(out, "{value}") } else { write!(out, "{text}") };
    }

    /// A warning on stderr, which --json leaves alone so stdout stays one object.
    pub fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

/// Adds the environment and exit-code footer to every command's help.
fn with_footer(command: clap::Command) -> clap::Command {
    command.after_help(HELP_FOOTER).mut_subcommands(with_footer)
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let parsed = with_footer(Cli::command()).try_get_matches().and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, json_requested(std::env::args_os().skip(1))),
    };
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return report(json, &Failure::Failed(format!("cannot start the async runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(json, &failure),
    }
}

/// Whether the raw arguments ask for `--json`: when clap refuses them there
/// are no parsed options to read it from. Anything after a lone `--` is a
/// value, not an option.
fn json_requested(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter().take_while(|a| a != "--").any(|a| a == "--json")
}

/// A command line clap refuses (a missing required flag, an unknown one, a
/// value its parser rejects): clap's text on stderr as without --json, and
/// with --json also the one `{"error": ...}` object on stdout, exit 2.
/// `--help` and `--version` are answers, not failures, and print as usual.
fn usage_error(error: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !json {
        // Prints to stdout or stderr as the kind asks, and exits with
        // clap's code (0 for help, 2 for usage).
        error.exit();
    }
    // The rendered text's first paragraph without its "error: " lead; the
    // usage and "--help" lines clap appends stay on stderr.
    let message = if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "no command given; `qtrace --help` lists them".to_owned()
    } else {
        let rendered = error.render().to_string();
        let message = rendered.split("\n\n").next().unwrap_or(&rendered);
        message.trim().trim_start_matches("error:").trim().to_owned()
    };
    let _ = error.print();
    println!("{}", Failure::Usage(message).json());
    ExitCode::from(2)
}

fn report(json: bool, failure: &Failure) -> ExitCode {
    if !matches!(failure, Failure::Reported) {
        eprintln!("{}", failure.line());
        if json {
            println!("{}", failure.json());
        }
    }
    ExitCode::from(failure.exit_code())
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let mut ctx = Ctx::new(&cli);
    match cli.command {
        Command::Keygen { out } => keygen(&ctx, &out),
        Command::Org(c) => submit::org(&mut ctx, c).await,
        Command::Key(c) => submit::key(&mut ctx, c).await,
        Command::Produce(a) => submit::produce(&mut ctx, a).await,
        Command::Ship(a) => submit::movement(&mut ctx, a, false).await,
        Command::Receive(a) => submit::movement(&mut ctx, a, true).await,
        Command::Sell(a) => submit::sell(&mut ctx, a).await,
        Command::Inspect(a) => submit::inspect(&mut ctx, a).await,
        Command::Cert(c) => submit::cert(&mut ctx, c).await,
        Command::Recall(a) => submit::recall(&mut ctx, a).await,
        Command::Spotcheck(a) => submit::spot_check(&mut ctx, a).await,
        Command::Blacklist(a) => submit::blacklist(&mut ctx, a).await,
        Command::Delist(a) => submit::delist(&mut ctx, a).await,
        Command::Correct(a) => submit::correct(&mut ctx, a).await,
        Command::Get { record } => query::get(&mut ctx, record).await,
        Command::Checkpoint(a) => query::checkpoint(&mut ctx, a).await,
        Command::Proof(a) => query::proof(&mut ctx, a).await,
        Command::Consistency(a) => query::consistency(&mut ctx, a).await,
        Command::Import(a) if a.epcis => epcis::import(&mut ctx, a).await,
        Command::Import(a) => import::run(&mut ctx, a).await,
        Command::Export(a) => epcis::export(&mut ctx, a).await,
        Command::Verify(a) => verdict::verify(&mut ctx, a).await,
        Command::Check(a) => verdict::check(&mut ctx, a).await,
        Command::Bundle(a) => verdict::bundle(&mut ctx, a).await,
        Command::Trace(a) => trace::run(&mut ctx, a).await,
        Command::Qr(a) => qr::run(&ctx, a),
    }
}

fn keygen(ctx: &Ctx, out: &std::path::Path) -> Result<(), Failure> {
    // A path that exists or cannot be written is the user's to fix (exit 2);
    // only a failing random number generator is not.
    let key = keyfile::generate(out).map_err(|e| match e {
        keyfile::KeyFileError::Generate(_) => Failure::Failed(e.to_string()),
        other => Failure::Usage(other.to_string()),
    })?;
    let public = key.public_key().to_hex();
    let text = format!(
        "{public}\n\nSecret key 私钥 written to {} (mode 0600). Keep it secret; register the public key \
         above with `qtrace key register --pubkey {public} ...` (signed by a regulator or your organisation's \
         admin key).\n",
        out.display()
    );
    // The public key alone goes to stdout first, so `$(qtrace keygen --out k)` captures it.
    if ctx.json {
        ctx.emit(json!({"public_key": public, "file": out.display().to_string()}), "");
    } else {
        println!("{public}");
        eprint!("{}", text.trim_start_matches(&public).trim_start());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_lists_every_variable_the_cli_reads() {
        fn collect(command: &clap::Command, into: &mut std::collections::BTreeSet<String>) {
            for arg in command.get_arguments() {
                if let Some(name) = arg.get_env() {
                    into.insert(name.to_string_lossy().into_owned());
                }
            }
            for sub in command.get_subcommands() {
                collect(sub, into);
            }
        }
        let mut read = std::collections::BTreeSet::new();
        collect(&Cli::command(), &mut read);
        let listed: std::collections::BTreeSet<String> =
            qtrace_client::ENVIRONMENT.iter().map(|v| v.to_string()).collect();
        assert_eq!(read, listed);
    }

    #[test]
    fn json_is_read_from_the_raw_arguments() {
        // (arguments, --json requested)
        let cases: &[(&[&str], bool)] = &[
            (&[], false),
            (&["--json"], true),
            (&["verify", "--json"], true),
            (&["--node", "http://x", "bundle", "--json", "09520123456788"], true),
            (&["import", "--", "--json"], false),
            (&["--jsonl"], false),
            (&["produce", "--lot", "--json"], true),
        ];
        for (args, want) in cases {
            let got = json_requested(args.iter().map(std::ffi::OsString::from));
            assert_eq!(got, *want, "{args:?}");
        }
    }
}
