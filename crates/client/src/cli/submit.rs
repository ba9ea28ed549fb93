//! The record commands: build the record from typed arguments (looking up
//! any records it names), validate and sign it, submit it, and report the
//! receipt.
//!
//! Order matters for exit codes: the key file is read and the record built
//! and validated before the node is contacted whenever the record names no
//! other record, so bad input is exit 2 even with no node running.

use qtrace_client::event::EventKind;
use qtrace_client::hash::EntryHash;
use qtrace_client::input::RecordKey;
use qtrace_client::pb;
use qtrace_client::records::{self, Header, RecordRef};
use qtrace_client::render::kind_label;
use qtrace_client::signing::SecretKey;
use qtrace_client::time::{format_micros_utc, local_date};
use qtrace_client::verify::{self, CheckError};
use serde_json::json;

use super::{
    BlacklistArgs, CertCommand, CorrectArgs, Ctx, DelistArgs, Failure, InspectArgs, KeyCommand, MoveArgs, OrgCommand,
    ProduceArgs, RecallArgs, SellArgs, SpotCheckArgs,
};

/// Validates, signs and submits one record, then reports the receipt.
async fn submit(ctx: &mut Ctx, key: &SecretKey, event: &pb::Event) -> Result<(), Failure> {
    let sealed = records::seal(event, key)
        .map_err(|e| Failure::Usage(format!("the record would be refused, so it was not signed: {e}")))?;
    let kind = sealed.event.kind;
    let request = pb::AppendRequest { event: Some(sealed.signed) };
    let receipt = ctx.client().await?.append(request).await?.into_inner();
    report_receipt(ctx, kind, &receipt);
    Ok(())
}

/// Checks the receipt's inclusion proof against the checkpoint it carries,
/// returning that checkpoint's size, or `None` when the receipt has none.
fn check_receipt(receipt: &pb::AppendReceipt) -> Result<Option<u64>, CheckError> {
    let (Some(inclusion), Some(checkpoint)) = (&receipt.inclusion, &receipt.checkpoint) else {
        return Ok(None);
    };
    let hash = EntryHash::from_slice(&receipt.entry_hash).map_err(CheckError::Length)?;
    let checkpoint = verify::check_checkpoint(checkpoint, None)?;
    verify::check_inclusion(receipt.seq, hash, inclusion, &checkpoint.checkpoint)?;
    Ok(Some(checkpoint.checkpoint.size))
}

fn report_receipt(ctx: &Ctx, kind: EventKind, receipt: &pb::AppendReceipt) {
    let entry_hash = hex::encode(&receipt.entry_hash);
    let log_id = hex::encode(&receipt.log_id);
    let logged_at = format_micros_utc(receipt.logged_at_micros);
    // A receipt whose proof fails is reported but does not fail the command:
    // the node did acknowledge the record, and `qtrace proof` re-checks it.
    let tree_size = match check_receipt(receipt) {
        Ok(size) => size,
        Err(e) => {
            ctx.warn(&format!("the node's receipt for entry {} does not verify: {e}", receipt.seq));
            None
        }
    };
    let value = json!({
        "seq": receipt.seq,
        "entry_hash": entry_hash,
        "log_id": log_id,
        "duplicate": receipt.duplicate,
        "kind": kind.name(),
        "logged_at": logged_at,
        "logged_at_micros": receipt.logged_at_micros,
        "tree_size": tree_size,
        "receipt_verified": tree_size.is_some(),
    });
    let headline = if receipt.duplicate {
        "Already recorded 已存在 (the node holds this signed record; nothing was appended)"
    } else {
        "Recorded 已记录"
    };
    let mut text = format!(
        "{headline}: {}, seq {}, entry {entry_hash}\n  log 日志: {log_id}\n  logged at 记录时间: {logged_at}\n",
        kind_label(kind),
        receipt.seq
    );
    if let Some(size) = tree_size {
        text.push_str(&format!("  inclusion proof 包含证明: verified 已验证 in the tree of size {size}\n"));
    }
    ctx.emit(value, &text);
}

/// Fetches and checks each record, returning the references to name them by.
async fn resolve(ctx: &mut Ctx, keys: &[RecordKey]) -> Result<Vec<RecordRef>, Failure> {
    let mut refs = Vec::with_capacity(keys.len());
    for key in keys {
        refs.push(ctx.fetch(*key).await?.reference());
    }
    Ok(refs)
}

fn text_or_empty(value: Option<String>) -> String {
    value.unwrap_or_default()
}

pub async fn org(ctx: &mut Ctx, command: OrgCommand) -> Result<(), Failure> {
    let (args, update) = match command {
        OrgCommand::Register(args) => (args, false),
        OrgCommand::Update(args) => (args, true),
    };
    let key = ctx.key()?;
    let header = args.stamp.header();
    let a = args.accreditation;
    let accreditation = match (a.accreditation_no, a.valid_until) {
        (Some(number), Some(valid_until)) => Some(records::Accreditation {
            number,
            gtin_prefixes: a.scopes,
            standards: a.standards,
            valid_from: a.valid_from.unwrap_or_else(|| local_date(&header.time)),
            valid_until,
        }),
        // clap requires --scope and --valid-until with --accreditation-no, and
        // --accreditation-no with any of the others.
        _ => None,
    };
    let organisation = records::Organisation {
        uscc: args.uscc,
        name: args.name,
        roles: args.roles,
        accreditation,
        address: text_or_empty(args.address),
        region: text_or_empty(args.region),
    };
    let event = if update {
        records::org_update(&header, &organisation)
    } else {
        records::org_register(&header, &organisation)
    };
    submit(ctx, &key, &event).await
}

pub async fn key(ctx: &mut Ctx, command: KeyCommand) -> Result<(), Failure> {
    let key = ctx.key()?;
    let event = match command {
        KeyCommand::Register { uscc, pubkey, person, title, admin, stamp } => {
            records::key_register(&stamp.header(), &uscc, &pubkey, &person, &title, admin)
        }
        KeyCommand::Revoke { pubkey, reason, uscc, stamp } => {
            let org = match uscc {
                Some(uscc) => uscc,
                None => ctx.org("key revoke (the organisation the key acts for: --uscc)")?,
            };
            records::key_revoke(&stamp.header(), &org, &pubkey, &reason)
        }
    };
    submit(ctx, &key, &event).await
}

pub async fn produce(ctx: &mut Ctx, args: ProduceArgs) -> Result<(), Failure> {
    let key = ctx.key()?;
    let header = args.stamp.header();
    let mut inputs = Vec::with_capacity(args.inputs.len());
    for record in &args.inputs {
        let checked = ctx.fetch(*record).await?;
        let lots = records::lots_of(&checked.event.event);
        if lots.is_empty() {
            return Err(Failure::Usage(format!(
                "--input {record}: entry {} ({}) names no lot; an input must be a production, transformation, \
                 shipment or receipt record",
                checked.entry.seq,
                kind_label(checked.event.kind)
            )));
        }
        inputs.push(records::InputRecord { reference: checked.reference(), lots });
    }
    let production = records::Production {
        output: records::LotKey { gtin: args.gtin, lot: args.lot },
        quantity: args.amount.to_pb(),
        production_date: args.production_date,
        expiry_date: args.expiry_date,
        factory: args.factory,
        inputs,
    };
    submit(ctx, &key, &records::produce(&header, &production)).await
}

pub async fn movement(ctx: &mut Ctx, args: MoveArgs, receipt: bool) -> Result<(), Failure> {
    let key = ctx.key()?;
    let header = args.stamp.header();
    let parents = resolve(ctx, &args.parents).await?;
    let movement = records::Movement {
        item: records::LotKey { gtin: args.gtin, lot: args.lot },
        quantity: args.amount.to_pb(),
        from: records::Party { uscc: args.from, gln: args.from_gln },
        to: records::Party { uscc: args.to, gln: args.to_gln },
        shipment_number: text_or_empty(args.shipment_no),
        parents,
    };
    let event = if receipt { records::receive(&header, &movement) } else { records::ship(&header, &movement) };
    submit(ctx, &key, &event).await
}

pub async fn sell(ctx: &mut Ctx, args: SellArgs) -> Result<(), Failure> {
    let key = ctx.key()?;
    let header = args.stamp.header();
    let parents = resolve(ctx, &args.parents).await?;
    let sale = records::Sale {
        item: records::LotKey { gtin: args.gtin, lot: args.lot },
        quantity: args.amount.to_pb(),
        store: args.store,
        parents,
    };
    submit(ctx, &key, &records::sell(&header, &sale)).await
}

pub async fn inspect(ctx: &mut Ctx, args: InspectArgs) -> Result<(), Failure> {
    let key = ctx.key()?;
    let header = args.stamp.header();
    let sample = match args.sample {
        Some(record) => Some(ctx.fetch(record).await?.reference()),
        None => None,
    };
    let inspection = records::Inspection {
        product: args.product,
        report_number: args.report_no,
        standards: args.standards,
        items: args.items,
        conclusion: args.conclusion.to_pb(),
        destructive: args.destructive,
        client: args.client,
        sample,
    };
    submit(ctx, &key, &records::inspect(&header, &inspection)).await
}

pub async fn spot_check(ctx: &mut Ctx, args: SpotCheckArgs) -> Result<(), Failure> {
    let key = ctx.key()?;
    let header = args.stamp.header();
    let spot = records::SpotCheck {
        plan_number: args.plan,
        product: args.product,
        inspected: args.inspected,
        lab: args.lab,
        standards: args.standards,
        items: args.items,
        result: args.result.to_pb(),
        published_on: args.published_on.unwrap_or_else(|| local_date(&header.time)),
    };
    submit(ctx, &key, &records::spot_check(&header, &spot)).await
}

pub async fn cert(ctx: &mut Ctx, command: CertCommand) -> Result<(), Failure> {
    let key = ctx.key()?;
    let issuer = ctx.org("a certificate record (the issuing certification body)")?;
    let cert_key = |number: String| records::CertificateKey { issuer: issuer.clone(), number };
    let event = match command {
        CertCommand::Issue(a) => {
            let header = a.stamp.header();
            let based_on = resolve(ctx, &a.based_on).await?;
            let issue = records::CertificateIssue {
                key: cert_key(a.number),
                holder: a.holder,
                manufacturer: a.manufacturer,
                factory_name: text_or_empty(a.factory_name),
                factory_gln: a.factory_gln,
                products: a.products.into_iter().map(|code| code.gtin).collect(),
                standards: a.standards,
                mode: text_or_empty(a.mode),
                issued_on: a.issued_on.unwrap_or_else(|| local_date(&header.time)),
                valid_until: a.valid_until,
                scope: text_or_empty(a.scope),
                based_on,
            };
            records::cert_issue(&header, &issue)
        }
        CertCommand::Suspend(a) => {
            let c = a.change;
            records::cert_suspend(&c.stamp.header(), &cert_key(c.number), &c.reason, a.until)
        }
        CertCommand::Restore(c) => records::cert_restore(&c.stamp.header(), &cert_key(c.number), &c.reason),
        CertCommand::Withdraw(c) => records::cert_withdraw(&c.stamp.header(), &cert_key(c.number), &c.reason),
        CertCommand::Cancel(c) => records::cert_cancel(&c.stamp.header(), &cert_key(c.number), &c.reason),
        CertCommand::Reduce(a) => {
            let c = a.change;
            records::cert_reduce(&c.stamp.header(), &cert_key(c.number), &a.removed, &c.reason)
        }
        CertCommand::Renew(a) => {
            records::cert_renew(&a.stamp.header(), &cert_key(a.number), a.valid_until, &text_or_empty(a.reason))
        }
    };
    submit(ctx, &key, &event).await
}

/// The default recall number: the GTIN and the record's local date.
fn recall_number(header: &Header, gtin: &qtrace_client::ids::Gtin) -> String {
    let date = local_date(&header.time);
    format!("RECALL-{gtin}-{:04}{:02}{:02}", date.year(), date.month(), date.day())
}

pub async fn recall(ctx: &mut Ctx, args: RecallArgs) -> Result<(), Failure> {
    let key = ctx.key()?;
    let header = args.stamp.header();
    let (initiator, manufacturer) = if args.ordered {
        (pb::RecallInitiator::Ordered, args.manufacturer)
    } else {
        // A voluntary recall is signed by the manufacturer itself.
        (pb::RecallInitiator::Voluntary, args.manufacturer.or_else(|| ctx.org.clone()))
    };
    let recall = records::Recall {
        number: args.number.unwrap_or_else(|| recall_number(&header, &args.gtin)),
        gtin: args.gtin,
        lots: args.lots,
        regions: args.regions,
        risk_class: args.risk_class,
        reason: args.reason,
        initiator,
        manufacturer,
        remedy: text_or_empty(args.remedy),
    };
    submit(ctx, &key, &records::recall(&header, &recall)).await
}

pub async fn blacklist(ctx: &mut Ctx, args: BlacklistArgs) -> Result<(), Failure> {
    let key = ctx.key()?;
    let authority = ctx.org("blacklist (the deciding authority)")?;
    let header = args.stamp.header();
    let listing = records::Blacklisting {
        uscc: args.uscc,
        reason: args.reason,
        legal_basis: args.basis,
        authority,
        listed_on: args.listed_on.unwrap_or_else(|| local_date(&header.time)),
        until: args.until,
    };
    submit(ctx, &key, &records::blacklist(&header, &listing)).await
}

pub async fn delist(ctx: &mut Ctx, args: DelistArgs) -> Result<(), Failure> {
    let key = ctx.key()?;
    let header = args.stamp.header();
    let on = args.delisted_on.unwrap_or_else(|| local_date(&header.time));
    submit(ctx, &key, &records::delist(&header, &args.uscc, &args.reason, on)).await
}

pub async fn correct(ctx: &mut Ctx, args: CorrectArgs) -> Result<(), Failure> {
    let key = ctx.key()?;
    let header = args.stamp.header();
    let target = ctx.fetch(args.record).await?;
    let subject = target.event.event.subject.clone().ok_or_else(|| {
        Failure::Usage(format!(
            "--record {}: entry {} has no subject and cannot be corrected",
            args.record, target.entry.seq
        ))
    })?;
    let corrective = resolve(ctx, &args.corrective).await?;
    let correction = records::Correction {
        target: target.reference(),
        subject,
        kind: args.kind.to_pb(),
        reason: args.reason,
        corrective,
    };
    submit(ctx, &key, &records::correct(&header, &correction)).await
}
