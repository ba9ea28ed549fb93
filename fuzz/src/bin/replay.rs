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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
        }
    }
    println!("replay: {passed} passed, {failed} failed");
    if failed == 0 && passed > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
