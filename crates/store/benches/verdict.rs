//! Verdict and trace benchmark at scale (not a timed test; nothing is
//! asserted about time).
//!
//! Builds a log of 1,000,000 entries (`QTRACE_BENCH_SCALE=small` or `--scale small`: 20,000)
//! holding a realistic registry, one raw-milk lot made into 10,000 powder
//! lots (small: 1,000), each shipped and sold, and filler production lots.
//! Then measures, beside the in-run ed25519 verify rate:
//! - the consumer check (`verdict::verify_product`) of random powder lots,
//!   p50 and p99;
//! - the downstream trace (去向可追) from the raw-milk lot over every powder
//!   lot;
//! - beside the trace, the work no trace can skip: its own record reads and
//!   index lookups timed alone at sled's rates, and the same calls made
//!   through the view (each record read, decoded and hashed) in parallel,
//!   with none of the trace's ordering or bookkeeping.
//!
//! Run: `cargo bench -p qtrace-store --bench verdict`
//! (`QTRACE_TRACE_RUNS`: how many times the trace is timed, default 9).

// The benchmarks' shared helpers, and with them the node's allocator, so
// the store is read as the node reads it.
#[allow(dead_code)]
/// The node's allocator, so the trace is measured as the node runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use qtrace_ledger::benchkit as common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prost::Message;
use qtrace_ledger::entry::Entry;
use qtrace_ledger::event::{self, IndexKey};
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::ids::{Date, ProductCode};
use qtrace_ledger::note::{self, Signer};
use qtrace_ledger::pb::{self, event::Body};
use qtrace_ledger::registry::Registry;
use qtrace_ledger::signing::SecretKey;
use qtrace_ledger::testkit;
use qtrace_ledger::trace::{self, Direction, Limits};
use qtrace_ledger::verdict::{self, Trust};
use qtrace_ledger::view::{Proven, Record, RecordId, View, ViewError};
use qtrace_store::{LogStore, NewEntry, SledStore, StoreError};

const REGULATOR: &str = "9144030071526726XG";
const FARM: &str = "91330100MA27XY3Q11";
const FACTORY: &str = "92320900MA1N3T5C5Q";
const LAB: &str = "91310000MA1K2Q7A5L";
const BODY: &str = "913301007042187B2H";
const RETAILER: &str = "914403007152672A21";
const RAW: &str = "06931234567899";
const POWDER: &str = "09520123456788";
const FILLER: &str = "04006381333931";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let small = common::small_scale()?;
    let (total, lots, checks) = if small { (20_000u64, 1_000u64, 200usize) } else { (1_000_000, 10_000, 2_000) };
    println!("verdict benchmark: {total} entries, {lots} powder lots from one raw-milk lot");

    let verify_rate = ed25519_verify_rate();
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(dir.path())?;
    let built = Instant::now();
    let world = build(&store, total, lots)?;
    println!("  built the log in {:.1} s", built.elapsed().as_secs_f64());

    let view = SnapshotView::new(&world)?;
    let trust = Trust { logs: vec![world.signer.verifier()], witnesses: Vec::new() };
    let options = verdict::Options { limits: Limits { max_depth: 64, max_nodes: 200_000 }, ..Default::default() };

    // Consumer checks of random powder lots.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut times = Vec::with_capacity(checks);
    let mut last = None;
    for _ in 0..checks {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let i = (rng >> 33) % lots;
        let code = ProductCode::parse(&format!("(01){POWDER}(10)P-{i}"))?;
        let start = Instant::now();
        let report = verdict::verify_product(&view, &trust, &code, options)?;
        times.push(start.elapsed());
        last = Some(report.verdict);
    }
    let (p50, p99) = percentiles(&mut times);
    println!(
        "  consumer check (查验) of a powder lot: p50 {:.2} ms, p99 {:.2} ms (verdict {:?})",
        ms(p50),
        ms(p99),
        last
    );

    // Downstream trace from the raw-milk lot over every powder lot.
    let raw_origin =
        trace::lot_origins(&view, &(qtrace_ledger::ids::Gtin::parse(RAW)?, qtrace_ledger::ids::Lot::parse("RAW-0")?))?;
    let ids: Vec<RecordId> = raw_origin.iter().map(|r| r.id).collect();
    let mut trace_times = Vec::new();
    let mut reached = (0, 0);
    let runs: usize = std::env::var("QTRACE_TRACE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(9);
    for _ in 0..runs {
        let start = Instant::now();
        let t = trace::trace(&view, &ids, Direction::Downstream, options.limits, false)?;
        trace_times.push(start.elapsed());
        reached = (t.nodes.len(), t.lots.len());
    }
    let (trace_p50, _) = percentiles(&mut trace_times);
    println!(
        "  downstream trace (去向可追) from the raw-milk lot: {} records, {} lots, median {:.1} ms",
        reached.0,
        reached.1,
        ms(trace_p50)
    );
    let per_record = trace_p50.as_secs_f64() / reached.0.max(1) as f64;
    println!(
        "  ratios: one check = {:.1} ed25519 verifies; trace = {:.2} µs per record",
        ms(p50) / 1e3 * verify_rate,
        per_record * 1e6
    );
    println!("  in-run limit: ed25519 verify_strict {:.0}/s (single core)", verify_rate);

    // The store work a trace cannot avoid: its record reads and index
    // lookups, noted on one run and timed alone, first at sled's rates and
    // then through the view, with every record decoded and hashed.
    let counting = Counting::new(&view);
    let t = trace::trace(&counting, &ids, Direction::Downstream, options.limits, false)?;
    let (read_ids, looked_up) = counting.calls();
    let (reads, lookups) = (read_ids.len(), looked_up.len());
    let seqs: Vec<u64> = t.nodes.iter().map(|n| n.record.id.seq).collect();
    // On as many threads as a trace uses.
    let threads = rayon::current_num_threads().min(trace::MAX_THREADS);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let rates = pool.install(|| StoreRates::measure(&world.log, &seqs).map_err(|e| e.to_string()))?;
    let floor = reads as f64 / rates.reads_n + lookups as f64 / rates.lookups_n;
    println!(
        "  in-run limits: sled entry reads {:.0}/s on 1 thread, {:.0}/s on {threads}; index lookups {:.0}/s on 1 thread, {:.0}/s on {threads}",
        rates.reads_1, rates.reads_n, rates.lookups_1, rates.lookups_n
    );
    println!(
        "  the trace's {reads} reads and {lookups} lookups alone would take {:.1} ms at those rates on {threads} threads (all lookups at the parent-index rate; a lower bound, as levels under 64 records and the in-order merge run on one thread): trace = {:.2} x that",
        floor * 1e3,
        trace_p50.as_secs_f64() / floor
    );
    let replay = pool.install(|| replay_time(&view, &read_ids, &looked_up).map_err(|e| e.to_string()))?;
    println!(
        "  the same reads and lookups made through the view (each record read, decoded and hashed), in parallel on {threads} threads with nothing ordered or merged: {:.1} ms; trace = {:.2} x that",
        ms(replay),
        trace_p50.as_secs_f64() / replay.as_secs_f64()
    );
    println!(
        "BENCH-SUMMARY {{\"entries\":{total},\"lots\":{lots},\"check_p50_ms\":{:.3},\"check_p99_ms\":{:.3},\"trace_ms\":{:.1},\"trace_records\":{},\"trace_store_floor_ms\":{:.1},\"trace_replay_ms\":{:.1},\"ed25519_verify_per_s\":{:.0}}}",
        ms(p50),
        ms(p99),
        ms(trace_p50),
        reached.0,
        floor * 1e3,
        ms(replay),
        verify_rate
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentiles(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn ed25519_verify_rate() -> f64 {
    let key = SecretKey::from_seed(&[9; 32]);
    let public = key.public_key();
    let event = vec![7u8; 400];
    let sig = key.sign_event(&event);
    let n = 5_000;
    let start = Instant::now();
    for _ in 0..n {
        let _ = std::hint::black_box(public.verify_event(&event, &sig));
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct World {
    log: LogStore,
    signer: Signer,
    registry: Registry,
}

struct Writer<'a> {
    log: &'a LogStore,
    signer: &'a Signer,
    registry: &'a mut Registry,
    pending: Vec<NewEntry>,
    prev: EntryHash,
    next: u64,
    millis: i64,
}

impl Writer<'_> {
    fn push(&mut self, key: &SecretKey, mut event: pb::Event) -> Result<pb::RecordRef> {
        self.millis += 1;
        event.event_time = Some(pb::EventTime { unix_millis: self.millis, offset_minutes: 480 });
        let bytes = event.encode_to_vec();
        let valid = event::decode_event(&bytes).map_err(|e| format!("{e}"))?;
        let entry = Entry {
            seq: self.next,
            prev_hash: self.prev,
            logged_at_micros: self.millis * 1000,
            signer: key.public_key().to_bytes(),
            signature: key.sign_event(&bytes),
            event: bytes,
        };
        let hash = entry.hash();
        self.registry.apply(entry.seq, &entry.signer, &valid);
        let reference =
            pb::RecordRef { log_id: self.log.log_id().0.to_vec(), seq: entry.seq, entry_hash: hash.0.to_vec() };
        self.pending.push(NewEntry { entry, hash });
        self.prev = hash;
        self.next += 1;
        if self.pending.len() >= 10_000 {
            self.flush()?;
        }
        Ok(reference)
    }

    fn flush(&mut self) -> Result<()> {
        let signer = self.signer;
        let origin = signer.name().as_str().to_string();
        self.log.append(&std::mem::take(&mut self.pending), false, |size, root| {
            let cp = note::Checkpoint { origin: origin.clone(), size, root: *root, extensions: Vec::new() };
            note::sign_checkpoint(&cp, signer)
        })?;
        Ok(())
    }
}

fn subject_product(gtin: &str, lot: &str) -> Option<pb::Subject> {
    Some(pb::Subject { kind: Some(pb::subject::Kind::Product(product(gtin, lot))) })
}

fn product(gtin: &str, lot: &str) -> pb::ProductKey {
    pb::ProductKey { gtin: gtin.into(), lot: lot.into(), serial: String::new() }
}

fn lq(gtin: &str, lot: &str) -> pb::LotQuantity {
    pb::LotQuantity {
        product: Some(product(gtin, lot)),
        quantity: Some(pb::Quantity { value: 1.0, unit: "EA".into() }),
    }
}

fn key_for(uscc: &str, key: &SecretKey) -> pb::Event {
    pb::Event {
        subject: Some(pb::Subject { kind: Some(pb::subject::Kind::OrganisationUscc(uscc.into())) }),
        body: Some(Body::KeyRegistered(pb::KeyRegistered {
            uscc: uscc.into(),
            public_key: key.public_key().to_bytes().to_vec(),
            person: "张伟".into(),
            title: "首席质量官".into(),
            admin: false,
        })),
        ..Default::default()
    }
}

fn build(store: &SledStore, total: u64, lots: u64) -> Result<World> {
    let log_key = SecretKey::from_seed(&[1; 32]);
    let signer = Signer::new("qtrace.bench/verdict", log_key.signing_key().clone())?;
    let log = store.log(LogId::of_key(&log_key.public_key().to_bytes()))?;
    // Built faster than the follower indexes: no push-back while building;
    // the follower catches up before anything is measured.
    log.set_limits(qtrace_store::Limits { max_lag: u64::MAX, ..log.limits() });
    let mut registry = Registry::new(log_key.public_key().to_bytes());
    let root = SecretKey::from_seed(&[2; 32]);
    let (farm, factory, lab, body, retailer) = (
        SecretKey::from_seed(&[3; 32]),
        SecretKey::from_seed(&[4; 32]),
        SecretKey::from_seed(&[5; 32]),
        SecretKey::from_seed(&[6; 32]),
        SecretKey::from_seed(&[7; 32]),
    );
    let log_id = log.log_id();
    let mut w = Writer {
        log: &log,
        signer: &signer,
        registry: &mut registry,
        pending: Vec::new(),
        prev: EntryHash(log_id.0),
        next: 0,
        millis: 1_700_000_000_000,
    };
    let genesis = pb::Event {
        body: Some(Body::Genesis(pb::LogGenesis {
            origin: "qtrace.bench/verdict".into(),
            operator_uscc: REGULATOR.into(),
            operator_name: "bench regulator".into(),
            root_authority_keys: vec![root.public_key().to_bytes().to_vec()],
        })),
        ..Default::default()
    };
    w.push(&log_key, genesis)?;
    for (uscc, role, scope, key) in [
        (FARM, pb::Role::Manufacturer, &[][..], &farm),
        (FACTORY, pb::Role::Manufacturer, &[][..], &factory),
        (LAB, pb::Role::TestingLab, &["0"][..], &lab),
        (BODY, pb::Role::CertificationBody, &["0952"][..], &body),
        (RETAILER, pb::Role::Retailer, &[][..], &retailer),
    ] {
        w.push(&root, testkit::register_org(uscc, uscc, &[role], scope))?;
        w.push(&root, key_for(uscc, key))?;
    }
    let raw = w.push(
        &farm,
        pb::Event {
            subject: subject_product(RAW, "RAW-0"),
            body: Some(Body::Production(pb::Production { output: Some(lq(RAW, "RAW-0")), ..Default::default() })),
            ..Default::default()
        },
    )?;
    let report = w.push(
        &lab,
        pb::Event {
            subject: subject_product(RAW, "RAW-0"),
            parents: vec![raw.clone()],
            body: Some(Body::Inspection(pb::Inspection {
                report_number: "R-1".into(),
                product: Some(product(RAW, "RAW-0")),
                conclusion: pb::Conclusion::Conformant as i32,
                ..Default::default()
            })),
            ..Default::default()
        },
    )?;
    w.push(
        &body,
        pb::Event {
            subject: Some(pb::Subject {
                kind: Some(pb::subject::Kind::Certificate(pb::CertificateKey {
                    issuer_uscc: BODY.into(),
                    number: "C-1".into(),
                })),
            }),
            parents: vec![report],
            body: Some(Body::CertificateIssued(pb::CertificateIssued {
                certificate: Some(pb::CertificateKey { issuer_uscc: BODY.into(), number: "C-1".into() }),
                holder_uscc: FACTORY.into(),
                products: vec![pb::CertifiedProduct {
                    gtin: POWDER.into(),
                    name: "powder".into(),
                    model: String::new(),
                }],
                issued_on: "2020-01-01".into(),
                valid_until: "2099-12-31".into(),
                ..Default::default()
            })),
            ..Default::default()
        },
    )?;
    for i in 0..lots {
        let lot = format!("P-{i}");
        let made = w.push(
            &factory,
            pb::Event {
                subject: subject_product(POWDER, &lot),
                parents: vec![raw.clone()],
                documents: vec![pb::Document {
                    kind: "certificate".into(),
                    id: format!("{BODY}/C-1"),
                    sha256: Vec::new(),
                }],
                body: Some(Body::Transformation(pb::Transformation {
                    inputs: vec![lq(RAW, "RAW-0")],
                    outputs: vec![lq(POWDER, &lot)],
                    ..Default::default()
                })),
                ..Default::default()
            },
        )?;
        let shipped = w.push(
            &factory,
            pb::Event {
                subject: subject_product(POWDER, &lot),
                parents: vec![made],
                body: Some(Body::Shipment(pb::Shipment {
                    items: vec![lq(POWDER, &lot)],
                    source: Some(pb::Party { uscc: FACTORY.into(), location_gln: String::new() }),
                    destination: Some(pb::Party { uscc: RETAILER.into(), location_gln: String::new() }),
                    shipment_number: String::new(),
                })),
                ..Default::default()
            },
        )?;
        w.push(
            &retailer,
            pb::Event {
                subject: subject_product(POWDER, &lot),
                parents: vec![shipped],
                body: Some(Body::Sale(pb::Sale { items: vec![lq(POWDER, &lot)], store_gln: String::new() })),
                ..Default::default()
            },
        )?;
    }
    let mut i = 0u64;
    while w.next < total {
        w.push(
            &farm,
            pb::Event {
                subject: subject_product(FILLER, &format!("F-{i}")),
                body: Some(Body::Production(pb::Production {
                    output: Some(lq(FILLER, &format!("F-{i}"))),
                    ..Default::default()
                })),
                ..Default::default()
            },
        )?;
        i += 1;
    }
    w.flush()?;
    log.catch_up()?;
    store.flush()?;
    Ok(World { log, signer, registry })
}

/// The median of five rounds of a trace's reads and lookups, made through
/// `view` on the current rayon pool, in no order: the view work of a trace
/// with none of its own.
fn replay_time(view: &dyn View, reads: &[RecordId], lookups: &[(IndexKey, usize)]) -> Result<Duration> {
    use rayon::prelude::*;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let records: Vec<Option<Record>> =
            reads.par_iter().map(|id| view.record(*id)).collect::<std::result::Result<_, _>>()?;
        let found: usize = lookups
            .par_iter()
            .map(|(key, limit)| view.lookup(key, *limit).map(|ids| ids.len()))
            .try_reduce(|| 0, |a, b| Ok(a + b))?;
        times.push(start.elapsed());
        if records.iter().any(Option::is_none) || found == 0 {
            return Err("the replayed trace found less than the trace".into());
        }
    }
    Ok(percentiles(&mut times).0)
}

/// Sled's rates for the reads and lookups a trace makes: entry reads and
/// child (parent index) lookups of the trace's own records, on one thread
/// and on the current rayon pool, each the median of five rounds (as the
/// trace's time is a median).
struct StoreRates {
    reads_1: f64,
    reads_n: f64,
    lookups_1: f64,
    lookups_n: f64,
}

impl StoreRates {
    fn measure(log: &LogStore, seqs: &[u64]) -> Result<StoreRates> {
        use rayon::prelude::*;
        let log_id = log.log_id();
        type Op<'a> = &'a (dyn Fn(u64) -> std::result::Result<(), StoreError> + Sync);
        let read: Op = &|seq| log.entry(seq).map(drop);
        let lookup: Op = &|seq| log.lookup(&IndexKey::Parent(log_id, seq), None, 100_000).map(drop);
        // Each operation on every seq, on this thread or on the pool.
        let rate = |op: Op, parallel: bool| -> Result<f64> {
            let mut times = Vec::new();
            for _ in 0..5 {
                let start = Instant::now();
                if parallel {
                    seqs.par_iter().try_for_each(|s| op(*s))?;
                } else {
                    seqs.iter().try_for_each(|s| op(*s))?;
                }
                times.push(start.elapsed());
            }
            let (median, _) = percentiles(&mut times);
            Ok(seqs.len() as f64 / median.as_secs_f64())
        };
        Ok(StoreRates {
            reads_1: rate(read, false)?,
            reads_n: rate(read, true)?,
            lookups_1: rate(lookup, false)?,
            lookups_n: rate(lookup, true)?,
        })
    }
}

/// Notes the record reads and lookups a view serves.
struct Counting<'a> {
    inner: &'a dyn View,
    reads: Mutex<Vec<RecordId>>,
    lookups: Mutex<Vec<(IndexKey, usize)>>,
}

impl<'a> Counting<'a> {
    fn new(inner: &'a dyn View) -> Self {
        Counting { inner, reads: Mutex::default(), lookups: Mutex::default() }
    }

    /// The records read and the keys looked up (with their limits), in no
    /// particular order.
    fn calls(self) -> (Vec<RecordId>, Vec<(IndexKey, usize)>) {
        let reads = self.reads.into_inner().unwrap_or_else(|e| e.into_inner());
        let lookups = self.lookups.into_inner().unwrap_or_else(|e| e.into_inner());
        (reads, lookups)
    }
}

impl View for Counting<'_> {
    fn record(&self, id: RecordId) -> std::result::Result<Option<Record>, ViewError> {
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        self.inner.record(id)
    }

    fn lookup(&self, key: &IndexKey, limit: usize) -> std::result::Result<Vec<RecordId>, ViewError> {
        self.lookups.lock().unwrap_or_else(|e| e.into_inner()).push((key.clone(), limit));
        self.inner.lookup(key, limit)
    }

    fn proof(&self, id: RecordId) -> std::result::Result<Option<Proven>, ViewError> {
        self.inner.proof(id)
    }

    fn registry(&self) -> &Registry {
        self.inner.registry()
    }

    fn today(&self) -> Date {
        self.inner.today()
    }

    fn logs(&self) -> Vec<LogId> {
        self.inner.logs()
    }

    fn correction_targets(&self, limit: usize) -> std::result::Result<Option<HashSet<RecordId>>, ViewError> {
        self.inner.correction_targets(limit)
    }
}

/// The log as a view at its latest checkpoint.
struct SnapshotView<'a> {
    world: &'a World,
    size: u64,
    note: String,
}

impl<'a> SnapshotView<'a> {
    fn new(world: &'a World) -> Result<Self> {
        let (size, note) = world.log.latest_checkpoint()?.ok_or("no checkpoint")?;
        Ok(SnapshotView { world, size, note })
    }
}

impl View for SnapshotView<'_> {
    fn record(&self, id: RecordId) -> std::result::Result<Option<Record>, ViewError> {
        if id.log != self.world.log.log_id() || id.seq >= self.size {
            return Ok(None);
        }
        let entry = self.world.log.entry_hashed(id.seq).map_err(|e| ViewError(e.to_string()))?;
        Ok(entry.map(|(e, hash)| Record::with_hash(id.log, e, hash)))
    }

    fn lookup(&self, key: &IndexKey, limit: usize) -> std::result::Result<Vec<RecordId>, ViewError> {
        let log = self.world.log.log_id();
        let seqs = self.world.log.lookup_at(self.size, key, None, limit).map_err(|e| ViewError(e.to_string()))?;
        Ok(seqs.into_iter().map(|seq| RecordId { log, seq }).collect())
    }

    fn proof(&self, id: RecordId) -> std::result::Result<Option<Proven>, ViewError> {
        let path = self.world.log.inclusion_proof(id.seq, self.size).map_err(|e| ViewError(e.to_string()))?;
        Ok(Some(Proven { checkpoint_note: self.note.clone(), tree_size: self.size, path }))
    }

    fn registry(&self) -> &Registry {
        &self.world.registry
    }

    fn today(&self) -> Date {
        Date::from_days_since_epoch(20_410)
    }

    fn logs(&self) -> Vec<LogId> {
        vec![self.world.log.log_id()]
    }

    fn correction_targets(&self, limit: usize) -> std::result::Result<Option<HashSet<RecordId>>, ViewError> {
        let listed = self.world.log.correction_targets(self.size, limit).map_err(|e| ViewError(e.to_string()))?;
        Ok(listed.map(|targets| targets.into_iter().map(|(log, seq)| RecordId { log, seq }).collect()))
    }
}
