//! Generates the gRPC client and server stubs for the `qtrace.v1.Ledger`
//! service with tonic. The message types are not generated again: they come
//! from `qtrace_ledger::pb`, so node, client and ledger share one set.
//! They live here, not in qtrace-client, so the node can use them without
//! the CLI's dependencies.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: cargo
    // reuses a compiled build script for a checkout at another path that
    // shares the target directory.
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["qtrace/v1/node.proto"];
    for file in ["qtrace/v1/event.proto", "qtrace/v1/log.proto", "qtrace/v1/node.proto"] {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let fds = protox::compile(files, [&proto_root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".qtrace.v1", "::qtrace_ledger::pb")
        .compile_fds(fds)?;
    Ok(())
}
