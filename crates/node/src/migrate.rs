//! `qtrace-node migrate`: upgrade a data directory written by an earlier
//! store layout in place, then let the index followers build every index
//! before the command returns, so the node starts on a complete store.
//!
//! The store does the upgrade ([`SledStore::migrate`]: tiles from the
//! entries where the store has none, every stored checkpoint's root checked
//! against them, derived keys the log trees no longer hold dropped, the
//! layout marker written last; the indexes are then built into
//! `DATA/store.index`); entries, checkpoints and
//! node state are never written. Killed at any moment, the command is run
//! again and finishes.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use qtrace_store::{MigrateProgress, MigrateStep, SledStore};

/// Runs the migration of `data` and returns the summary to print.
pub fn run(data: &Path, cache_bytes: u64) -> anyhow::Result<String> {
    if !data.join("log.key").exists() {
        bail!("{} has no log.key: not a qtrace data directory", data.display());
    }
    let store_dir = data.join("store");
    let bar = if std::io::stderr().is_terminal() { ProgressBar::new(0) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = SledStore::migrate(&store_dir, |p: &MigrateProgress| {
        let what = match p.step {
            MigrateStep::Tiles => "tiles from entries (瓦片)",
            MigrateStep::Checkpoints => "checkpoints against the tiles",
            MigrateStep::DropOld => "dropping the old indexes",
        };
        bar.set_message(format!("log {}: {what}", &p.log.to_hex()[..12]));
        bar.set_length(p.total);
        bar.set_position(p.done);
    })
    .with_context(|| format!("upgrading the store in {}", store_dir.display()))?;
    bar.finish_and_clear();
    let indexed = build_indexes(&store_dir, cache_bytes)?;
    if summary.already_current {
        return Ok(format!(
            "the store in {} already has the current layout (已是最新存储格式); nothing to upgrade. \
             Indexes complete for {indexed} entries",
            store_dir.display()
        ));
    }
    Ok(format!(
        "upgraded (存储已升级) {}: {} logs, {} entries, {} checkpoints checked against the rebuilt tree, \
         {} tile keys written, {} old index keys removed; indexes built for {indexed} entries",
        data.display(),
        summary.logs,
        summary.entries,
        summary.checkpoints,
        summary.tiles,
        summary.removed_keys
    ))
}

/// Opens the upgraded store and indexes every log to its head in this
/// thread (the followers of a running node would do the same in the
/// background), so the node starts with its indexes complete. Returns the
/// number of entries indexed.
fn build_indexes(store_dir: &Path, cache_bytes: u64) -> anyhow::Result<u64> {
    let data = store_dir.parent().context("the store directory has no parent")?;
    let log_key = qtrace_rpc::keyfile::read_secret_key(&data.join("log.key"))?;
    let own = qtrace_ledger::hash::LogId::of_key(&log_key.public_key().to_bytes());
    let store = SledStore::open_with_cache(store_dir, cache_bytes).context("opening the upgraded store")?;
    let mut entries = 0;
    for id in store.logs()? {
        let log = if id == own { store.log(id)? } else { store.mirror(id)? };
        log.catch_up().with_context(|| format!("indexing log {id}"))?;
        entries += log.head().size;
    }
    store.flush()?;
    Ok(entries)
}
