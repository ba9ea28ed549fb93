//! `qtrace`: the command line of the qtrace traceability ledger. See
//! `qtrace --help`; the commands live in [`cli`].

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
