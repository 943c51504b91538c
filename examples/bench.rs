//! The benchmark as an example: `cargo run --release --example bench -- [--quick] [--json FILE]`.
//! (`mamba-wgpu bench` runs the same code with more options.)

use mamba_wgpu::bench::{self, BenchOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = if args.iter().any(|a| a == "--quick") { BenchOptions::quick() } else { BenchOptions::full() };
    let json_path = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1));
    // Progress to stderr, the report to stdout.
    match bench::run(&options, &mut |line| eprintln!("{line}"), &mut |_| {}) {
        Ok(report) => {
            println!("\n{}", report.table());
            if let Some(path) = json_path {
                if let Err(e) = std::fs::write(path, report.to_json()) {
                    eprintln!("error: {path}: {e}");
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
