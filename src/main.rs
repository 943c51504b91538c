//! `mamba-wgpu`: generate text with Mamba models on any GPU. See `mamba-wgpu --help`.
//!
//! Every failure ends the same way: one line `error: ...` on stderr and exit code 1 (usage
//! errors found by clap exit with 2, as clap does; Ctrl-C exits with 130, after the summary
//! where it stopped a generation).

// The CLI is native only: a wasm32 build of the package compiles the library (src/web.rs)
// and an empty binary, so `cargo check --target wasm32-unknown-unknown` passes.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

mod cli;

use clap::Parser;

use cli::args::{Cli, Command};

fn main() {
    // wgpu's warnings are noise for a CLI user; RUST_LOG=... brings them back.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let cli = Cli::parse();
    cli::interrupt::install();
    let result = match &cli.command {
        Command::Generate(args) => cli::generate_cmd::run(args),
        Command::Chat(args) => cli::chat::run(args),
        Command::Bench(args) => cli::bench_cmd::run(args),
        Command::Perplexity(args) => cli::perplexity_cmd::run(args),
        Command::Quantize(args) => cli::quantize_cmd::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Info { adapter } => cli::info::run(adapter.as_deref()),
    };
    match result {
        Ok(()) => {}
        // Ctrl-C stopped the work; what was done and the summary are already printed.
        Err(mamba_wgpu::Error::Interrupted) => std::process::exit(130),
        Err(e) => {
            // One line, whatever a dependency put in its message.
            let message = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
            cli::print_err(&format!("error: {message}"));
            std::process::exit(1);
        }
    }
}
