//! `qtrace trace`: the lineage of a record or lot, upstream (来源可查) or
//! downstream (去向可追), from the node's Trace RPC. Every entry in the
//! answer is rechecked (hash recomputed, signature verified) before it is
//! shown.

use clap::{ArgGroup, Args};
use qtrace_client::hash::LogId;
use qtrace_client::pb::{self, verdict_subject::Kind};
use qtrace_client::subject::{self, Target};
use qtrace_client::time::format_event_time;
use qtrace_client::verdict;
use qtrace_client::verify::{self, CheckedEntry};
use serde_json::{Value, json};

use super::{Ctx, Failure};

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("direction").required(true).args(["up", "down"])))]
pub struct TraceArgs {
    /// Where to start: a record (sequence number, entry hash, or LOGID/SEQ) or a lot (GTIN/LOT,
    /// an element string or a Digital Link with a lot). A bare number is a record.
    #[arg(value_name = "RECORD|CODE")]
    pub start: Target,
    /// Upstream (来源可查): what it came from — parents, and the production of every lot it used.
    #[arg(long)]
    pub up: bool,
    /// Downstream (去向可追): where it went — shipments, receipts, sales, products made from it.
    #[arg(long)]
    pub down: bool,
    /// Most steps from the start [default: the node's limit, 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_depth: Option<u32>,
    /// Most records in the answer [default: the node's limit, 20000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_nodes: Option<u32>,
}

/// One node of the answer, checked.
struct Node {
    checked: CheckedEntry,
    depth: u32,
    via: Option<usize>,
    relation: String,
}

pub async fn run(ctx: &mut Ctx, args: TraceArgs) -> Result<(), Failure> {
    let (direction, direction_name, heading) = if args.up {
        (pb::TraceDirection::Upstream, "upstream", "Upstream 来源追溯")
    } else {
        (pb::TraceDirection::Downstream, "downstream", "Downstream 去向追踪")
    };
    let start = match &args.start {
        Target::Product(code) if code.lot.is_none() => {
            return Err(Failure::Usage(format!(
                "{} names no lot: a trace starts from a lot (GTIN/LOT) or a record",
                code.to_element_string()
            )));
        }
        Target::Product(code) => subject::product_subject(code),
        Target::Record(target) => super::verdict::record_subject(ctx, *target).await?,
    };
    let start_text = match start.kind.as_ref() {
        Some(Kind::ProductCode(code)) => format!("lot {code}"),
        _ => args.start_text(),
    };
    let request = pb::TraceRequest {
        start: Some(start),
        direction: direction as i32,
        max_depth: args.max_depth.unwrap_or(0),
        max_nodes: args.max_nodes.unwrap_or(0),
    };
    let response = ctx.client().await?.trace(request).await?.into_inner();
    let mut nodes = Vec::with_capacity(response.nodes.len());
    for (index, node) in response.nodes.iter().enumerate() {
        let wire =
            node.entry.as_ref().ok_or_else(|| Failure::Unverified(format!("trace node {index} has no entry")))?;
        let via = node.via.map(|v| v as usize);
        if via.is_some_and(|v| v >= index) {
            return Err(Failure::Unverified(format!("trace node {index} is reached from a later node")));
        }
        nodes.push(Node {
            checked: verify::check_entry(wire)?,
            depth: node.depth,
            via,
            relation: node.relation.clone(),
        });
    }
    let own_log = nodes.first().map(|n| n.checked.log_id);
    let value = json!({
        "direction": direction_name,
        "start": start_text,
        "nodes": nodes.iter().enumerate().map(|(index, n)| node_json(index, n)).collect::<Vec<_>>(),
        "lots": response.lots.iter().map(|l| json!({"gtin": l.gtin, "lot": l.lot})).collect::<Vec<_>>(),
    });
    let mut text = format!("{heading} from {start_text}: {} record(s), {} lot(s)\n", nodes.len(), response.lots.len());
    let vias: Vec<Option<usize>> = nodes.iter().map(|n| n.via).collect();
    for index in tree_order(&vias) {
        text.push_str(&node_line(&nodes[index], own_log));
    }
    if !response.lots.is_empty() {
        text.push_str("Lots reached 涉及批次:\n");
        for lot in &response.lots {
            text.push_str(&format!("  {} lot {}\n", lot.gtin, lot.lot));
        }
    }
    text.push_str("checks 校验: every entry hash recomputed 条目哈希已重算, every signature verified 签名已验证\n");
    ctx.emit(value, &text);
    Ok(())
}

impl TraceArgs {
    fn start_text(&self) -> String {
        match &self.start {
            Target::Record(target) => format!("record {target}"),
            Target::Product(code) => code.to_element_string(),
        }
    }
}

fn what(checked: &CheckedEntry) -> String {
    checked.event.body().map(verdict::describe).unwrap_or_default()
}

fn node_json(index: usize, node: &Node) -> Value {
    let checked = &node.checked;
    json!({
        "index": index,
        "depth": node.depth,
        "via": node.via,
        "relation": node.relation,
        "log_id": checked.log_id.to_hex(),
        "seq": checked.entry.seq,
        "entry_hash": checked.hash.to_hex(),
        "kind": checked.event.kind.name(),
        "kind_zh": checked.event.kind.name_zh(),
        "what": what(checked),
        "event_time": checked.event.event.event_time.as_ref().map(format_event_time),
        "signer": hex::encode(checked.entry.signer),
    })
}

/// The nodes depth first, each under the node it was reached from (given
/// by index in `vias`, always an earlier node), so the indentation reads as
/// a tree.
fn tree_order(vias: &[Option<usize>]) -> Vec<usize> {
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); vias.len()];
    let mut roots = Vec::new();
    for (index, via) in vias.iter().enumerate() {
        match via {
            Some(parent) if *parent < index => children[*parent].push(index),
            _ => roots.push(index),
        }
    }
    let mut order = Vec::with_capacity(vias.len());
    let mut stack: Vec<usize> = roots.into_iter().rev().collect();
    while let Some(index) = stack.pop() {
        order.push(index);
        stack.extend(children[index].iter().rev().copied());
    }
    order
}

fn node_line(node: &Node, own_log: Option<LogId>) -> String {
    let checked = &node.checked;
    let record = if Some(checked.log_id) == own_log {
        format!("#{}", checked.entry.seq)
    } else {
        format!("{}/{}", checked.log_id, checked.entry.seq)
    };
    let when = checked.event.event.event_time.as_ref().map(format_event_time).unwrap_or_default();
    format!(
        "{}{record} [{}] {} {} — {} ({when})\n",
        "  ".repeat(node.depth as usize + 1),
        node.relation,
        checked.event.kind.name(),
        checked.event.kind.name_zh(),
        what(checked),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_order_puts_children_under_their_parent() {
        let cases: Vec<(Vec<Option<usize>>, Vec<usize>)> = vec![
            (vec![], vec![]),
            (vec![None], vec![0]),
            // Breadth first: 0 → {1, 2}, 1 → {3}, 2 → {4}, 3 → {5}.
            (vec![None, Some(0), Some(0), Some(1), Some(2), Some(3)], vec![0, 1, 3, 5, 2, 4]),
            // Two starts (a lot made by two records).
            (vec![None, None, Some(0), Some(1), Some(0)], vec![0, 2, 4, 1, 3]),
            // A link to a later node is not followed; the node stands alone.
            (vec![None, Some(2), Some(0)], vec![0, 2, 1]),
        ];
        for (vias, want) in cases {
            assert_eq!(tree_order(&vias), want, "{vias:?}");
        }
    }
}
