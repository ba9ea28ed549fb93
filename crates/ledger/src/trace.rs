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

use std::collections::{BTreeSet, HashSet, VecDeque};

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
    pub record: Record,
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

/// Walks from `starts` in `direction`. With `raw` false, records that were
/// corrected away (did_not_occur, incorrect_data) are left out.
pub fn trace(
    view: &dyn View,
    starts: &[RecordId],
    direction: Direction,
    limits: Limits,
    raw: bool,
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
        if !raw && !corrections_of(view, &record)?.is_empty() {
            return Ok(());
        }
        if depth > limits.max_depth {
            return Err(TraceError::TooDeep { max: limits.max_depth });
        }
        if trace.nodes.len() >= limits.max_nodes {
            return Err(TraceError::TooLarge { max: limits.max_nodes });
        }
        trace.nodes.push(TraceNode { record, depth, via, relation });
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
