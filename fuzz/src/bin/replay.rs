//! Runs the fuzz targets over files, on any compiler, without libFuzzer.
//!
//! ```text
//! replay                      every target over every file of corpus/<target>/
//! replay DIR                  the same with DIR/<target>/
//! replay TARGET PATH...       one target over files or directories (a crash
//!                             artifact from `cargo fuzz run`, say)
//! ```
//!
//! A target that panics on an input is a failure; the last line says how
//! many inputs passed and failed, and the exit status is 1 if any failed or
//! if a target has no corpus at all.
//!
//! Over a corpus directory, the seeds listed in its `valid.tsv` (written by
//! `seeds`: the real events, entries, checkpoints, proofs, codes and
//! bundles) must also still be accepted: decode, verify or open as the
//! manifest says (`qtrace_fuzz::accept`). A seed that no longer does is a
//! failure, because a corpus of refused inputs tests nothing. The committed
//! corpus must have the manifest; another directory is checked against one
//! if it has it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use qtrace_fuzz::accept::{self, MANIFEST};
use qtrace_fuzz::{TARGETS, Target};

fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = match std::fs::read_dir(path) {
        Ok(dir) => dir.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Runs `target` over `inputs`: (passed, failed).
fn run(name: &str, target: Target, inputs: &[PathBuf]) -> (usize, usize) {
    let (mut passed, mut failed) = (0, 0);
    for input in inputs {
        let bytes = match std::fs::read(input) {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("{name}: cannot read {}: {e}", input.display());
                failed += 1;
                continue;
            }
        };
        if catch_unwind(AssertUnwindSafe(|| target(&bytes))).is_ok() {
            passed += 1;
        } else {
            eprintln!("{name}: FAILED on {}", input.display());
            failed += 1;
        }
    }
    (passed, failed)
}

/// Checks that every seed `root/valid.tsv` lists exists and is still
/// accepted: (passed, failed). Without the manifest, `required` says
/// whether that is a failure.
fn check_valid_seeds(root: &Path, required: bool) -> (usize, usize) {
    let path = root.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return (0, 0),
        Err(e) => {
            eprintln!("valid seeds: cannot read {}: {e} (run the seeds binary)", path.display());
            return (0, 1);
        }
    };
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    let listed = match accept::parse_manifest(&text, &names) {
        Ok(listed) if !listed.is_empty() => listed,
        Ok(_) => {
            eprintln!("valid seeds: {} lists no seed", path.display());
            return (0, 1);
        }
        Err(e) => {
            eprintln!("valid seeds: {e}");
            return (0, 1);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for seed in &listed {
        let file = root.join(&seed.target).join(&seed.file);
        match std::fs::read(&file).map_err(|e| e.to_string()).and_then(|bytes| accept::check(&seed.kind, &bytes)) {
            Ok(()) => passed += 1,
            Err(e) => {
                eprintln!("valid seeds: {} is no longer a valid {}: {e}", file.display(), seed.kind);
                failed += 1;
            }
        }
    }
    println!("valid seeds: {passed} still accepted, {failed} not");
    (passed, failed)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut passed, mut failed) = (0, 0);
    match args.first().map(|a| TARGETS.iter().find(|(name, _)| name == a)) {
        Some(Some((name, target))) => {
            let inputs: Vec<PathBuf> = args[1..].iter().flat_map(|p| files(Path::new(p))).collect();
            let (p, f) = run(name, *target, &inputs);
            (passed, failed) = (p, f);
        }
        _ => {
            let root =
                args.first().map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
            for (name, target) in TARGETS {
                let inputs = files(&root.join(name));
                if inputs.is_empty() {
                    eprintln!("{name}: no corpus in {}", root.join(name).display());
                    failed += 1;
                    continue;
                }
                let (p, f) = run(name, *target, &inputs);
                println!("{name}: {p} inputs passed, {f} failed");
                passed += p;
                failed += f;
            }
            let (p, f) = check_valid_seeds(&root, args.is_empty());
            passed += p;
            failed += f;
        }
    }
    println!("replay: {passed} passed, {failed} failed");
    if failed == 0 && passed > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
