//! Integration tests: real `qtrace-node` processes on 127.0.0.1, driven over
//! gRPC and through the `qtrace` command line. One test binary, as
//! rust-analyzer does it, so the crates link once.

mod append;
mod audit;
mod browser;
mod cli;
mod crash;
mod epcis;
mod federation;
mod load;
mod malformed;
mod migrate;
mod resolver;
mod scenario;
mod tls;
