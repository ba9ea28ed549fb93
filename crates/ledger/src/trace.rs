//! Lineage: upstream (来源可查) and downstream (去向可追) from records or lots.
//!
//! Records are linked two ways. Explicitly, by the parents a record names
//! (the lot a sample came from, the reports a certificate rests on, the
//! shipment a receipt answers). And by lot: a record about a lot (a
//! shipment, a sale, an inspection, a transformation consuming it) follows
//! from the record that created the lot (its production, or the
//! transformation that output it). Tracing walks both, breadth first, with
//! depth and size limits that end the walk with an error rather than a
//! silently partial answer. Cycles cannot occur through parents (a parent
//! must exist before its child), and lot links are walked once per lot.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::event::IndexKey;
use crate::hash::LogId;
use crate::ids::{Gtin, Lot};
use crate::pb::{self, event::Body};
use crate::view::{Record, RecordId, View, ViewError};

/// How far a trace may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_depth: u32,
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_depth: 64, max_nodes: 20_000 }
    }
}

/// Most records fetched from one index key while tracing.
pub const MAX_PER_KEY: usize = 100_000;

/// Most correction targets a trace asks the view to list up front (see
/// [`View::correction_targets`]); with more, it looks corrections up per
/// record.
pub const MAX_CORRECTIONS_LISTED: usize = 4_096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upstream,
    Downstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Start,
    /// Named as a parent by the record it was reached from.
    Parent,
    /// Names the record it was reached from as a parent.
    Child,
    /// Created a lot the record it was reached from used.
    LotOrigin,
    /// Used a lot the record it was reached from created.
    LotUse,
}

impl Relation {
    pub fn name(self) -> &'static str {
        match self {
            Relation::Start => "start",
            Relation::Parent => "parent",
            Relation::Child => "child",
            Relation::LotOrigin => "lot origin",
            Relation::LotUse => "lot use",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TraceNode {
    /// Boxed: a record is large, and a trace of thousands of them is
    /// built by moving them.
    pub record: Box<Record>,
    pub depth: u32,
    /// Index of the node this one was reached from.
    pub via: Option<usize>,
    pub relation: Relation,
}

/// A lot: GTIN and lot number.
pub type LotKey = (Gtin, Lot);

#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub nodes: Vec<TraceNode>,
    /// Lots reached, in order of discovery.
    pub lots: Vec<LotKey>,
}

impl Trace {
    pub fn ids(&self) -> impl Iterator<Item = RecordId> + '_ {
        self.nodes.iter().map(|n| n.record.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    #[error("the trace goes deeper than {max} steps; raise the depth limit to see all of it")]
    TooDeep { max: u32 },
    #[error("the trace reaches more than {max} records; raise the size limit to see all of it")]
    TooLarge { max: usize },
    #[error("record {0} is not in the ledger")]
    NotFound(RecordId),
    #[error("{0}")]
    View(#[from] ViewError),
}

/// The lots a record's body is about, split into the lots it uses (inputs,
/// moved, sold, sampled) and the lots it creates.
pub fn lots_of(body: &Body) -> (Vec<LotKey>, Vec<LotKey>) {
    let lot = |p: Option<&pb::ProductKey>| -> Option<LotKey> {
        let p = p?;
        Some((Gtin::parse(&p.gtin).ok()?, Lot::parse(&p.lot).ok()?))
    };
    let items =
        |items: &[pb::LotQuantity]| -> Vec<LotKey> { items.iter().filter_map(|i| lot(i.product.as_ref())).collect() };
    match body {
        Body::Production(p) => {
            (Vec::new(), lot(p.output.as_ref().and_then(|o| o.product.as_ref())).into_iter().collect())
        }
        Body::Transformation(t) => (items(&t.inputs), items(&t.outputs)),
        Body::Shipment(s) => (items(&s.items), Vec::new()),
        Body::Receipt(r) => (items(&r.items), Vec::new()),
        Body::Sale(s) => (items(&s.items), Vec::new()),
        Body::Inspection(i) => (lot(i.product.as_ref()).into_iter().collect(), Vec::new()),
        Body::SpotCheck(s) => (lot(s.product.as_ref()).into_iter().collect(), Vec::new()),
        _ => (Vec::new(), Vec::new()),
    }
}

/// Records that created a lot (its production or producing transformation).
pub fn lot_origins(view: &dyn View, lot: &LotKey) -> Result<Vec<Record>, ViewError> {
    let mut out = Vec::new();
    for id in view.lookup(&IndexKey::Creates(lot.0.clone(), lot.1.clone()), MAX_PER_KEY)? {
        if let Some(record) = view.record(id)?
            && let Some(body) = record.body()
            && lots_of(body).1.contains(lot)
        {
            out.push(record);
        }
    }
    Ok(out)
}

/// Every record about a lot.
pub fn lot_records(view: &dyn View, lot: &LotKey) -> Result<Vec<Record>, ViewError> {
    let mut out = Vec::new();
    for id in view.lookup(&IndexKey::Lot(lot.0.clone(), lot.1.clone()), MAX_PER_KEY)? {
        if let Some(record) = view.record(id)? {
            out.push(record);
        }
    }
    Ok(out)
}

/// Valid corrections of a record: correction records targeting it, signed
/// by the organisation that signed it.
pub fn corrections_of(view: &dyn View, record: &Record) -> Result<Vec<Record>, ViewError> {
    let mut out = Vec::new();
    let signer_org = view.registry().key(&record.entry.signer).map(|k| k.uscc.clone());
    for id in view.lookup(&IndexKey::Corrects(record.id.log, record.id.seq), MAX_PER_KEY)? {
        let Some(child) = view.record(id)? else { continue };
        let Some(Body::Correction(c)) = child.body() else { continue };
        let targets = c
            .target
            .as_ref()
            .is_some_and(|t| t.log_id == record.id.log.0 && t.seq == record.id.seq && t.entry_hash == record.hash.0);
        let same_org =
            signer_org.is_some() && view.registry().key(&child.entry.signer).map(|k| k.uscc.clone()) == signer_org;
        if targets && same_org {
            out.push(child);
        }
    }
    Ok(out)
}

fn parent_ids(record: &Record) -> Vec<RecordId> {
    let Some(event) = &record.event else { return Vec::new() };
    event
        .event
        .parents
        .iter()
        .filter_map(|p| Some(RecordId { log: LogId::from_slice(&p.log_id).ok()?, seq: p.seq }))
        .collect()
}

/// Walks from `starts` in `direction`. With `include_corrected` false, records that were
/// corrected away (did_not_occur, incorrect_data) are left out.
///
/// Breadth first, one level at a time, in three steps: the level's records
/// are fetched, checked for corrections and expanded (their links looked
/// up; upstream, a lot's origins read) in parts on rayon's pool, each
/// record by the task that fetched it; they are added in order on this
/// thread; then their links are followed in order, noting the lots reached
/// and each record not reached before, which make the next level. So the
/// trace, its order and its limit errors are those of a walk on one thread
/// (a view's own errors may surface at another point of the walk), and a
/// record with thousands of children is no slower than thousands of
/// records with one child each.
pub fn trace(
    view: &dyn View,
    starts: &[RecordId],
    direction: Direction,
    limits: Limits,
    include_corrected: bool,
) -> Result<Trace, TraceError> {
    let threads = rayon::current_num_threads().min(MAX_THREADS);
    trace_on(view, starts, direction, limits, include_corrected, threads)
}

/// A hash set with a fast hasher: a trace hashes every link it follows.
/// Keys come from the ledger, but a trace is bounded by its limits, so
/// flooding a set costs no more than the limits allow.
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// [`trace`] on at most `threads` threads.
fn trace_on(
    view: &dyn View,
    starts: &[RecordId],
    direction: Direction,
    limits: Limits,
    include_corrected: bool,
    threads: usize,
) -> Result<Trace, TraceError> {
    // Most records have no correction; when the view can list every record
    // a correction names, only those are looked up.
    let hint = if include_corrected { None } else { view.correction_targets(MAX_CORRECTIONS_LISTED)? };
    let walk = Walk { view, direction, include_corrected, hint: hint.as_ref(), threads };
    let mut trace = Trace::default();
    let mut seen: FastSet<RecordId> = FastSet::default();
    let mut lots_seen: FastSet<LotKey> = FastSet::default();
    let mut plan = starts
        .iter()
        .filter(|id| seen.insert(**id))
        .map(|id| Planned::Reach { id: *id, via: None, relation: Relation::Start, given: None })
        .collect();
    loop {
        let level = walk.add_all(&mut trace, plan, limits, &lots_seen)?;
        if level.is_empty() {
            return Ok(trace);
        }
        plan = follow(&mut trace.lots, &mut seen, &mut lots_seen, level.into_iter());
    }
}

/// A level is cut into [`PARTS_PER_THREAD`] parts for each of rayon's
/// threads, counting at most this many threads: so at most 16 parts, run on
/// as many of the pool's threads as are free.
pub const MAX_THREADS: usize = 4;

/// Levels smaller than this are expanded (and fetched) on the calling
/// thread: handing work to the pool costs about as much as a few records.
const PARALLEL_FROM: usize = 64;

/// A level is cut into this many parts per thread, so a thread that
/// finishes early takes over another's part.
const PARTS_PER_THREAD: usize = 4;

/// Near the size limit, records are fetched this many at a time, so a
/// trace that is about to fail does not fetch a whole level first.
const MIN_WINDOW: usize = 256;

/// A link from a record of a level, in the order a one-thread walk meets it.
enum Link {
    /// A lot the record is about, for [`Trace::lots`].
    Lot(LotKey),
    /// A lot the record creates and the records using it (downstream); they
    /// are followed only if no record before reached the lot.
    Created(LotKey, Result<Vec<RecordId>, TraceError>),
    /// A record the link leads to, with the record itself when expanding
    /// had to fetch it anyway (a lot's origins, upstream).
    Reach(RecordId, Relation, Option<Box<Record>>),
    /// The walk stops here with this error.
    Failed(TraceError),
}

/// A record to fetch and add, or the error the walk stops with there.
enum Planned {
    Reach { id: RecordId, via: Option<usize>, relation: Relation, given: Option<Box<Record>> },
    Fail(TraceError),
}

/// A record reached and fetched (boxed: a record is large and is moved a
/// few times before it is added), and whether a valid correction removes it
/// from the trace without corrected records.
type Fetched = (Box<Record>, bool);

/// A planned record once fetched: where it was reached from and how, the
/// record (`None` if the view does not have it, so it is not added), and
/// its links when the task that fetched it expanded it.
struct Visit {
    via: Option<usize>,
    relation: Relation,
    fetched: Option<Fetched>,
    links: Option<Vec<Link>>,
}

type Outcome = Result<Visit, TraceError>;

/// Follows the links of a level's records (each with its index in the
/// trace) in order, as a walk on one thread would: notes the lots reached,
/// and plans each record not reached before, once. Planning ends at the
/// first failed link.
fn follow(
    lots: &mut Vec<LotKey>,
    seen: &mut FastSet<RecordId>,
    lots_seen: &mut FastSet<LotKey>,
    level: impl Iterator<Item = (usize, Vec<Link>)>,
) -> Vec<Planned> {
    let mut plan = Vec::new();
    // A lot key is a few dozen bytes held inline: cloning it is a copy.
    let mut note_lot = |lots: &mut Vec<LotKey>, lot: LotKey| -> bool {
        let new = lots_seen.insert(lot.clone());
        if new {
            lots.push(lot);
        }
        new
    };
    for (index, links) in level {
        let via = Some(index);
        for link in links {
            match link {
                Link::Lot(lot) => {
                    note_lot(lots, lot);
                }
                Link::Created(lot, users) => {
                    if !note_lot(lots, lot) {
                        continue;
                    }
                    match users {
                        Ok(users) => {
                            plan.extend(users.into_iter().filter(|id| seen.insert(*id)).map(|id| Planned::Reach {
                                id,
                                via,
                                relation: Relation::LotUse,
                                given: None,
                            }))
                        }
                        Err(e) => {
                            plan.push(Planned::Fail(e));
                            return plan;
                        }
                    }
                }
                Link::Reach(id, relation, given) => {
                    if seen.insert(id) {
                        plan.push(Planned::Reach { id, via, relation, given });
                    }
                }
                Link::Failed(e) => {
                    plan.push(Planned::Fail(e));
                    return plan;
                }
            }
        }
    }
    plan
}

/// The read-only part of a walk.
struct Walk<'a> {
    view: &'a dyn View,
    direction: Direction,
    include_corrected: bool,
    hint: Option<&'a HashSet<RecordId>>,
    threads: usize,
}

impl Walk<'_> {
    /// How many items make a part, for `len` items on the pool, or `None`
    /// to stay on this thread.
    fn part(&self, len: usize) -> Option<usize> {
        (self.threads >= 2 && len >= PARALLEL_FROM).then(|| len.div_ceil(self.threads * PARTS_PER_THREAD))
    }

    /// Fetches, checks and expands planned records, in order, on this
    /// thread, each `eager` one expanded as soon as it is fetched (while it
    /// is in the cache). Downstream, `here` holds the lots named by earlier
    /// records of the part: they are in `lots_seen` before any later link
    /// is followed, so a later record creating one of them need not look up
    /// its users. Only records that will be added if the walk goes on are
    /// expanded, so `here` never holds a lot that no one follows. (Upstream,
    /// nothing is looked up per lot created, so `here` stays empty.) Stops
    /// at the first error: the walk stops there.
    fn visit_part(&self, part: Vec<(Planned, bool)>, lots_seen: &FastSet<LotKey>) -> Vec<Outcome> {
        let mut here = FastSet::default();
        let mut out = Vec::with_capacity(part.len());
        for (planned, eager) in part {
            let visit = self.fetch(planned).map(|(via, relation, fetched)| {
                let links = match &fetched {
                    Some((record, false)) if eager => Some(self.expand(record, lots_seen, &mut here)),
                    _ => None,
                };
                Visit { via, relation, fetched, links }
            });
            let failed = visit.is_err();
            out.push(visit);
            if failed {
                break;
            }
        }
        out
    }

    fn expand(&self, record: &Record, lots_seen: &FastSet<LotKey>, here: &mut FastSet<LotKey>) -> Vec<Link> {
        let mut links = Vec::new();
        let Some(body) = record.body() else { return links };
        let (uses, creates) = lots_of(body);
        match self.direction {
            Direction::Upstream => {
                links.extend(parent_ids(record).into_iter().map(|id| Link::Reach(id, Relation::Parent, None)));
                for lot in uses {
                    let origins = lot_origins(self.view, &lot);
                    links.push(Link::Lot(lot));
                    match origins {
                        Ok(origins) => links.extend(
                            origins
                                .into_iter()
                                .filter(|origin| origin.id != record.id)
                                .map(|origin| Link::Reach(origin.id, Relation::LotOrigin, Some(Box::new(origin)))),
                        ),
                        Err(e) => {
                            links.push(Link::Failed(e.into()));
                            return links;
                        }
                    }
                }
                links.extend(creates.into_iter().map(Link::Lot));
            }
            Direction::Downstream => {
                // Lots reached by an earlier level, or named by an earlier
                // record of this part, are not followed from here: their
                // users need no lookup.
                let followed: Vec<LotKey> =
                    creates.into_iter().filter(|lot| !lots_seen.contains(lot) && here.insert(lot.clone())).collect();
                match self.view.lookup(&IndexKey::Parent(record.id.log, record.id.seq), MAX_PER_KEY) {
                    Ok(ids) => links.extend(ids.into_iter().map(|id| Link::Reach(id, Relation::Child, None))),
                    Err(e) => {
                        links.push(Link::Failed(e.into()));
                        return links;
                    }
                }
                for lot in followed {
                    let users = self.view.lookup(&IndexKey::Lot(lot.0.clone(), lot.1.clone()), MAX_PER_KEY);
                    let users = users
                        .map(|ids| ids.into_iter().filter(|id| *id != record.id).collect())
                        .map_err(TraceError::from);
                    links.push(Link::Created(lot, users));
                }
                here.extend(uses.iter().cloned());
                links.extend(uses.into_iter().map(Link::Lot));
            }
        }
        links
    }

    /// Fetches, checks and expands the planned records (in parts on the
    /// pool when there are many), then adds them in order; stops at the
    /// first error. Returns each added record's index and links, in order.
    /// Fetches a window at a time, no more than the size limit leaves room
    /// for (but at least [`MIN_WINDOW`]); a record past the room is
    /// expanded only if it is added after all (records before it were
    /// left out).
    fn add_all(
        &self,
        trace: &mut Trace,
        plan: Vec<Planned>,
        limits: Limits,
        lots_seen: &FastSet<LotKey>,
    ) -> Result<Vec<(usize, Vec<Link>)>, TraceError> {
        // A plan that ends in an error fails there: nothing it reaches is
        // followed.
        let expand = !matches!(plan.last(), Some(Planned::Fail(_)));
        let mut added = Vec::with_capacity(plan.len());
        let mut plan = plan.into_iter().peekable();
        while plan.peek().is_some() {
            let room = limits.max_nodes.saturating_sub(trace.nodes.len());
            let window: Vec<(Planned, bool)> = plan
                .by_ref()
                .take(room.saturating_add(1).max(MIN_WINDOW))
                .enumerate()
                .map(|(i, planned)| {
                    let depth_ok = match &planned {
                        Planned::Reach { via, .. } => {
                            via.map_or(0, |index| trace.nodes[index].depth + 1) <= limits.max_depth
                        }
                        Planned::Fail(_) => false,
                    };
                    (planned, expand && i < room && depth_ok)
                })
                .collect();
            let outcomes: Vec<Outcome> = match self.part(window.len()) {
                None => self.visit_part(window, lots_seen),
                Some(part) => {
                    let parts: Vec<Vec<Outcome>> =
                        window.into_par_iter().chunks(part).map(|chunk| self.visit_part(chunk, lots_seen)).collect();
                    parts.into_iter().flatten().collect()
                }
            };
            trace.nodes.reserve(outcomes.len());
            for outcome in outcomes {
                let Visit { via, relation, fetched, links } = outcome?;
                let Some((record, corrected)) = fetched else { continue };
                if corrected {
                    continue;
                }
                let depth = via.map_or(0, |index| trace.nodes[index].depth + 1);
                if depth > limits.max_depth {
                    return Err(TraceError::TooDeep { max: limits.max_depth });
                }
                if trace.nodes.len() >= limits.max_nodes {
                    return Err(TraceError::TooLarge { max: limits.max_nodes });
                }
                let links = match links {
                    Some(links) => links,
                    None if expand => self.expand(&record, lots_seen, &mut FastSet::default()),
                    None => Vec::new(),
                };
                added.push((trace.nodes.len(), links));
                trace.nodes.push(TraceNode { record, depth, via, relation });
            }
        }
        Ok(added)
    }

    /// Fetches a planned record (unless expanding did) and checks it for
    /// corrections. A start the view does not have is an error; any other
    /// record it does not have is left out.
    fn fetch(&self, planned: Planned) -> Result<(Option<usize>, Relation, Option<Fetched>), TraceError> {
        let (id, via, relation, given) = match planned {
            Planned::Reach { id, via, relation, given } => (id, via, relation, given),
            Planned::Fail(e) => return Err(e),
        };
        let record = match given {
            Some(record) => record,
            None => match self.view.record(id)? {
                Some(record) => Box::new(record),
                None if relation == Relation::Start => return Err(TraceError::NotFound(id)),
                None => return Ok((via, relation, None)),
            },
        };
        let may_be_corrected = self.hint.is_none_or(|targets| targets.contains(&id));
        let corrected = !self.include_corrected && may_be_corrected && !corrections_of(self.view, &record)?.is_empty();
        Ok((via, relation, Some((record, corrected))))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, VecDeque};

    use super::*;
    use crate::event::EventKind as K;
    use crate::ids::Date;
    use crate::registry::Registry;
    use crate::testkit::{TestLog, Who, example, with_refs};
    use crate::view::{MemView, Proven};

    /// A view that cannot list correction targets, so a trace looks up the
    /// corrections of every record it reaches.
    struct NoHint<'a>(&'a MemView);

    impl View for NoHint<'_> {
        fn record(&self, id: RecordId) -> Result<Option<Record>, ViewError> {
            self.0.record(id)
        }
        fn lookup(&self, key: &IndexKey, limit: usize) -> Result<Vec<RecordId>, ViewError> {
            self.0.lookup(key, limit)
        }
        fn proof(&self, id: RecordId) -> Result<Option<crate::view::Proven>, ViewError> {
            self.0.proof(id)
        }
        fn registry(&self) -> &Registry {
            self.0.registry()
        }
        fn today(&self) -> Date {
            self.0.today()
        }
        fn logs(&self) -> Vec<LogId> {
            self.0.logs()
        }
    }

    /// Production of a lot, three shipments naming it as parent and a sale
    /// of the lot; shipment 1 corrected by a clerk of the manufacturer that
    /// signed it (valid), shipment 2 "corrected" by the retailer (not the
    /// signer's organisation: ignored), and a correction of the production
    /// appended after the view's snapshot is not in the view at all.
    fn corrected_world() -> (MemView, Vec<RecordId>) {
        let mut log = TestLog::standard();
        let production = log.accept(Who::Manufacturer, &example(K::Production));
        let mut shipments = Vec::new();
        for nonce in 1..=3 {
            let mut shipment = with_refs(example(K::Shipment), &production);
            shipment.nonce = nonce;
            shipments.push(log.accept(Who::Manufacturer, &shipment));
        }
        log.accept(Who::Retailer, &example(K::Sale));
        log.accept(Who::Staff, &with_refs(example(K::Correction), &shipments[0]));
        // Signed by another organisation: the registry would refuse it, and
        // a trace must ignore it if it is there anyway.
        let foreign = log.sign(Who::Retailer, &with_refs(example(K::Correction), &shipments[1]));
        log.entries.push(foreign);
        let mut view = MemView::new(log.registry.clone(), Date::from_days_since_epoch(20_300));
        for entry in &log.entries {
            view.insert(Record::new(log.log_id, entry.clone()), None::<Proven>);
        }
        let ids = [&production].into_iter().chain(&shipments).map(|r| RecordId { log: log.log_id, seq: r.seq });
        (view, ids.collect())
    }

    #[test]
    fn correction_hint_changes_no_trace() {
        let (view, ids) = corrected_world();
        let (production, shipments) = (ids[0], &ids[1..]);
        let listed = view.correction_targets(10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed, Some(HashSet::from([shipments[0], shipments[1]])), "both corrections name a target");
        assert_eq!(view.correction_targets(1), Ok(None), "more targets than the limit: no hint");
        let limits = Limits::default();
        // (direction, include_corrected, records expected besides the start)
        let cases = [
            (Direction::Downstream, false, vec![shipments[1], shipments[2]]),
            (Direction::Downstream, true, vec![shipments[0], shipments[1], shipments[2]]),
        ];
        for (direction, include_corrected, want) in cases {
            let hinted =
                trace(&view, &[production], direction, limits, include_corrected).unwrap_or_else(|e| panic!("{e}"));
            let plain = trace(&NoHint(&view), &[production], direction, limits, include_corrected)
                .unwrap_or_else(|e| panic!("{e}"));
            let ids = |t: &Trace| t.ids().collect::<Vec<_>>();
            assert_eq!(
                ids(&hinted),
                ids(&plain),
                "{direction:?} include_corrected {include_corrected}: the hint changed the trace"
            );
            assert_eq!(hinted.lots, plain.lots, "{direction:?} include_corrected {include_corrected}");
            let reached: BTreeSet<RecordId> = hinted.ids().filter(|id| *id != production).collect();
            for id in &want {
                assert!(reached.contains(id), "{direction:?} include_corrected {include_corrected}: {id} not reached");
            }
            let left_out: Vec<_> = shipments.iter().filter(|id| !want.contains(id) && reached.contains(id)).collect();
            assert!(
                left_out.is_empty(),
                "{direction:?} include_corrected {include_corrected}: corrected records reached: {left_out:?}"
            );
        }
        // Traced from the corrected shipment itself: gone unless corrected records are included.
        for (include_corrected, want) in [(false, Err(())), (true, Ok(()))] {
            let hinted =
                trace(&view, &[shipments[0]], Direction::Upstream, limits, include_corrected).map(|t| t.nodes.len());
            let plain = trace(&NoHint(&view), &[shipments[0]], Direction::Upstream, limits, include_corrected)
                .map(|t| t.nodes.len());
            assert_eq!(hinted, plain, "include_corrected {include_corrected}");
            assert_eq!(
                hinted.is_ok_and(|n| n > 0).then_some(()).ok_or(()),
                want,
                "include_corrected {include_corrected}"
            );
        }
    }

    /// Moves an example event from the example lot to `lot`.
    fn relot(mut event: pb::Event, lot: &str) -> pb::Event {
        let set = |p: &mut pb::ProductKey| {
            if p.lot == crate::testkit::LOT {
                p.lot = lot.into();
            }
        };
        if let Some(pb::Subject { kind: Some(pb::subject::Kind::Product(p)) }) = event.subject.as_mut() {
            set(p);
        }
        let items = match event.body.as_mut() {
            Some(Body::Shipment(b)) => &mut b.items,
            Some(Body::Receipt(b)) => &mut b.items,
            Some(Body::Production(b)) => {
                if let Some(p) = b.output.as_mut().and_then(|o| o.product.as_mut()) {
                    set(p);
                }
                return event;
            }
            _ => return event,
        };
        items.iter_mut().filter_map(|i| i.product.as_mut()).for_each(set);
        event
    }

    /// A production and 150 shipments naming it as parent, each of its own
    /// lot and each answered by a receipt of that lot naming the shipment:
    /// levels of 150 records, each reaching a record of its own, wide enough
    /// to be expanded on several threads; 99 more productions of the same
    /// lot (returned with the first). Every 5th time also a sale of the
    /// production's lot naming it as parent. Every 7th shipment is corrected
    /// by the manufacturer, every 11th "corrected" by the retailer.
    fn wide_world() -> (MemView, RecordId, Vec<RecordId>, Vec<RecordId>) {
        let mut log = TestLog::standard();
        let production = log.accept(Who::Manufacturer, &example(K::Production));
        // 99 more productions of the same lot: a level of many creators of
        // one lot.
        let mut productions = vec![production.clone()];
        for nonce in 1..100 {
            let mut again = example(K::Production);
            again.nonce = nonce;
            productions.push(log.accept(Who::Manufacturer, &again));
        }
        let mut receipts = Vec::new();
        for i in 1..=150u64 {
            let lot = format!("W{i}");
            let shipment = log.accept(Who::Manufacturer, &relot(with_refs(example(K::Shipment), &production), &lot));
            receipts.push(log.accept(Who::Distributor, &relot(with_refs(example(K::Receipt), &shipment), &lot)));
            if i % 5 == 0 {
                // Reached from the production twice: as its child and as a
                // use of the lot it made.
                let mut sale = example(K::Sale);
                sale.parents = vec![production.clone()];
                sale.nonce = i;
                log.accept(Who::Retailer, &sale);
            }
            if i % 7 == 0 {
                let mut correction = with_refs(example(K::Correction), &shipment);
                correction.nonce = i;
                log.accept(Who::Staff, &correction);
            }
            if i % 11 == 0 {
                let mut correction = with_refs(example(K::Correction), &shipment);
                correction.nonce = i;
                let foreign = log.sign(Who::Retailer, &correction);
                log.entries.push(foreign);
            }
        }
        let mut view = MemView::new(log.registry.clone(), Date::from_days_since_epoch(20_300));
        for entry in &log.entries {
            view.insert(Record::new(log.log_id, entry.clone()), None::<Proven>);
        }
        let id = |r: &pb::RecordRef| RecordId { log: log.log_id, seq: r.seq };
        (view, id(&production), receipts.iter().map(id).collect(), productions.iter().map(id).collect())
    }

    /// The walk as it was before levels were expanded in parallel (one
    /// thread, a FIFO queue, corrections looked up for every record): the
    /// oracle the parallel walk must match.
    fn reference_trace(
        view: &dyn View,
        starts: &[RecordId],
        direction: Direction,
        limits: Limits,
        include_corrected: bool,
    ) -> Result<Trace, TraceError> {
        let mut trace = Trace::default();
        let mut seen: HashSet<RecordId> = HashSet::new();
        let mut lots_seen: BTreeSet<LotKey> = BTreeSet::new();
        let mut queue: VecDeque<usize> = VecDeque::new();
        // Records are fetched only when first reached: a lot used by thousands
        // of records is walked once, not once per path to it.
        let mut push = |trace: &mut Trace,
                        queue: &mut VecDeque<usize>,
                        id: RecordId,
                        given: Option<Record>,
                        depth: u32,
                        via: Option<usize>,
                        relation: Relation|
         -> Result<(), TraceError> {
            if !seen.insert(id) {
                return Ok(());
            }
            let record = match given {
                Some(record) => record,
                None => match view.record(id)? {
                    Some(record) => record,
                    None if relation == Relation::Start => return Err(TraceError::NotFound(id)),
                    None => return Ok(()),
                },
            };
            if !include_corrected && !corrections_of(view, &record)?.is_empty() {
                return Ok(());
            }
            if depth > limits.max_depth {
                return Err(TraceError::TooDeep { max: limits.max_depth });
            }
            if trace.nodes.len() >= limits.max_nodes {
                return Err(TraceError::TooLarge { max: limits.max_nodes });
            }
            trace.nodes.push(TraceNode { record: Box::new(record), depth, via, relation });
            queue.push_back(trace.nodes.len() - 1);
            Ok(())
        };
        for id in starts {
            push(&mut trace, &mut queue, *id, None, 0, None, Relation::Start)?;
        }
        while let Some(index) = queue.pop_front() {
            let node = &trace.nodes[index];
            let depth = node.depth + 1;
            let record_id = node.record.id;
            let Some(body) = node.record.body() else { continue };
            let (uses, creates) = lots_of(body);
            let parents = parent_ids(&node.record);
            match direction {
                Direction::Upstream => {
                    for id in parents {
                        push(&mut trace, &mut queue, id, None, depth, Some(index), Relation::Parent)?;
                    }
                    for lot in uses {
                        if lots_seen.insert(lot.clone()) {
                            trace.lots.push(lot.clone());
                        }
                        for origin in lot_origins(view, &lot)? {
                            if origin.id != record_id {
                                push(
                                    &mut trace,
                                    &mut queue,
                                    origin.id,
                                    Some(origin),
                                    depth,
                                    Some(index),
                                    Relation::LotOrigin,
                                )?;
                            }
                        }
                    }
                    for lot in creates {
                        if lots_seen.insert(lot.clone()) {
                            trace.lots.push(lot);
                        }
                    }
                }
                Direction::Downstream => {
                    for id in view.lookup(&IndexKey::Parent(record_id.log, record_id.seq), MAX_PER_KEY)? {
                        push(&mut trace, &mut queue, id, None, depth, Some(index), Relation::Child)?;
                    }
                    for lot in creates {
                        if !lots_seen.insert(lot.clone()) {
                            continue;
                        }
                        trace.lots.push(lot.clone());
                        for id in view.lookup(&IndexKey::Lot(lot.0.clone(), lot.1.clone()), MAX_PER_KEY)? {
                            if id != record_id {
                                push(&mut trace, &mut queue, id, None, depth, Some(index), Relation::LotUse)?;
                            }
                        }
                    }
                    for lot in uses {
                        if lots_seen.insert(lot.clone()) {
                            trace.lots.push(lot);
                        }
                    }
                }
            }
        }
        Ok(trace)
    }

    #[test]
    fn a_trace_on_several_threads_is_the_walk_on_one() {
        let (view, production, receipts, productions) = wide_world();
        type Summary = (Vec<(RecordId, u32, Option<usize>, Relation)>, Vec<LotKey>);
        let summary = |t: Trace| -> Summary {
            (t.nodes.iter().map(|n| (n.record.id, n.depth, n.via, n.relation)).collect(), t.lots)
        };
        let big = Limits::default();
        let small = Limits { max_depth: 64, max_nodes: 100 };
        let shallow = Limits { max_depth: 0, max_nodes: 20_000 };
        // (case, starts, direction, limits, include_corrected)
        let cases = [
            ("downstream", vec![production], Direction::Downstream, big, false),
            ("downstream with corrected", vec![production], Direction::Downstream, big, true),
            ("upstream from every receipt", receipts.clone(), Direction::Upstream, big, false),
            ("upstream with corrected", receipts.clone(), Direction::Upstream, big, true),
            ("downstream from 100 creators of one lot", productions.clone(), Direction::Downstream, big, false),
            ("too large", vec![production], Direction::Downstream, small, false),
            ("too deep", vec![production], Direction::Downstream, shallow, false),
        ];
        for (case, starts, direction, limits, include_corrected) in cases {
            let one = trace_on(&view, &starts, direction, limits, include_corrected, 1).map(summary);
            let reference = reference_trace(&view, &starts, direction, limits, include_corrected).map(summary);
            assert_eq!(one, reference, "{case}: the walk before levels were expanded in parallel");
            let wide = trace_on(&NoHint(&view), &starts, direction, limits, include_corrected, 1).map(summary);
            assert_eq!(one, wide, "{case}: with and without the correction hint");
            for threads in [2, 3, 4] {
                let many = trace_on(&view, &starts, direction, limits, include_corrected, threads).map(summary);
                assert_eq!(one, many, "{case}: {threads} threads");
            }
            let reached = one.as_ref().map_or(0, |(nodes, _)| nodes.len());
            match case {
                "too large" => assert_eq!(one, Err(TraceError::TooLarge { max: 100 }), "{case}"),
                "too deep" => assert_eq!(one, Err(TraceError::TooDeep { max: 0 }), "{case}"),
                _ => assert!(reached > PARALLEL_FROM, "{case}: {reached} records, too few for threads"),
            }
        }
        // Downstream, every shipment and its receipt is reached except the
        // 21 shipments corrected by the manufacturer (and so their
        // receipts); with corrected records included, all 150 of each are.
        let reached = |include_corrected: bool, kind: K| {
            let t = trace_on(&view, &[production], Direction::Downstream, big, include_corrected, 4)
                .unwrap_or_else(|e| panic!("{e}"));
            t.nodes.iter().filter(|n| n.record.event.as_ref().is_some_and(|e| e.kind == kind)).count()
        };
        assert_eq!((reached(false, K::Shipment), reached(false, K::Receipt)), (129, 129));
        assert_eq!((reached(true, K::Shipment), reached(true, K::Receipt)), (150, 150));
        assert_eq!(reached(false, K::Sale), 30, "each sale once");
    }

    /// A record reached as a use of a lot is not reached again, later in
    /// the same level, as the child of another record (nor the other way
    /// round): one node each, where a one-thread walk first met it. The
    /// two records reaching it are the first and last of a level wide
    /// enough to be expanded in parts.
    #[test]
    fn a_record_is_reached_once_per_trace() {
        let mut log = TestLog::standard();
        let production = log.accept(Who::Manufacturer, &relot(example(K::Production), "L"));
        let other = log.accept(Who::Manufacturer, &relot(example(K::Production), "M"));
        // Ships L and names `other` as its parent.
        let shipment = log.accept(Who::Manufacturer, &relot(with_refs(example(K::Shipment), &other), "L"));
        let fillers: Vec<pb::RecordRef> = (0..PARALLEL_FROM - 2)
            .map(|i| log.accept(Who::Manufacturer, &relot(example(K::Production), &format!("F{i}"))))
            .collect();
        let mut view = MemView::new(log.registry.clone(), Date::from_days_since_epoch(20_300));
        for entry in &log.entries {
            view.insert(Record::new(log.log_id, entry.clone()), None::<Proven>);
        }
        let id = |r: &pb::RecordRef| RecordId { log: log.log_id, seq: r.seq };
        let ids = |t: Trace| t.nodes.iter().map(|n| (n.record.id, n.relation)).collect::<Vec<_>>();
        let level = |first: &pb::RecordRef, last: &pb::RecordRef| -> Vec<RecordId> {
            let mut starts = vec![id(first)];
            starts.extend(fillers.iter().map(id));
            starts.push(id(last));
            starts
        };
        // (case, starts, how the shipment is first reached)
        let cases = [
            ("lot use first", level(&production, &other), Relation::LotUse),
            ("child first", level(&other, &production), Relation::Child),
        ];
        for (case, starts, first) in cases {
            assert!(starts.len() >= PARALLEL_FROM, "{case}: a level of {} is expanded on one thread", starts.len());
            let reference = reference_trace(&view, &starts, Direction::Downstream, Limits::default(), false).map(ids);
            for threads in [1, 2] {
                let walked = trace_on(&view, &starts, Direction::Downstream, Limits::default(), false, threads);
                let walked = walked.map(ids);
                assert_eq!(walked, reference, "{case}, {threads} threads");
                let reached = walked.unwrap_or_else(|e| panic!("{e}"));
                let times: Vec<Relation> =
                    reached.iter().filter(|(r, _)| *r == id(&shipment)).map(|(_, relation)| *relation).collect();
                assert_eq!(times, vec![first], "{case}, {threads} threads: {reached:?}");
            }
        }
    }

    /// One level cut into parts: the first part's first record ships lot L
    /// (naming it), the second part begins with L's production and ends
    /// with a record whose child also ships L. The production's users of L
    /// are not followed (L was named first), so the child must still be
    /// reached as a child.
    #[test]
    fn a_lot_named_in_another_part_does_not_hide_a_child() {
        let threads = 2;
        let parts = threads * PARTS_PER_THREAD;
        let len = PARALLEL_FROM.div_ceil(parts) * parts;
        let walk = |view: &MemView| {
            let walk = Walk { view, direction: Direction::Downstream, include_corrected: false, hint: None, threads };
            walk.part(len)
        };
        let part = len / parts;
        let mut log = TestLog::standard();
        let filler = |log: &mut TestLog, i: usize| {
            log.accept(Who::Manufacturer, &relot(example(K::Production), &format!("F{i}")))
        };
        let first = filler(&mut log, 0);
        let user = log.accept(Who::Manufacturer, &relot(with_refs(example(K::Shipment), &first), "L"));
        let mut starts = vec![user];
        starts.extend((1..part).map(|i| filler(&mut log, i)));
        starts.push(log.accept(Who::Manufacturer, &relot(example(K::Production), "L")));
        starts.extend((part + 1..2 * part - 1).map(|i| filler(&mut log, i)));
        let parent = log.accept(Who::Manufacturer, &relot(example(K::Production), "C"));
        starts.push(parent.clone());
        starts.extend((2 * part..len).map(|i| filler(&mut log, i)));
        let child = log.accept(Who::Manufacturer, &relot(with_refs(example(K::Shipment), &parent), "L"));
        let mut view = MemView::new(log.registry.clone(), Date::from_days_since_epoch(20_300));
        for entry in &log.entries {
            view.insert(Record::new(log.log_id, entry.clone()), None::<Proven>);
        }
        let id = |r: &pb::RecordRef| RecordId { log: log.log_id, seq: r.seq };
        let starts: Vec<RecordId> = starts.iter().map(id).collect();
        assert_eq!(starts.len(), len);
        assert_eq!(walk(&view), Some(part), "the second part begins with L's production");
        let limits = Limits::default();
        let ids = |t: Trace| t.nodes.iter().map(|n| (n.record.id, n.relation)).collect::<Vec<_>>();
        let reference = reference_trace(&view, &starts, Direction::Downstream, limits, false).map(ids);
        let parallel = trace_on(&view, &starts, Direction::Downstream, limits, false, threads).map(ids);
        assert_eq!(parallel, reference);
        let reached = parallel.unwrap_or_else(|e| panic!("{e}"));
        assert!(reached.contains(&(id(&child), Relation::Child)), "the child of the last record: {reached:?}");
    }
}
