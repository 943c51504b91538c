//! The `mamba-wgpu` command line (binary only; the library knows nothing of it).

pub mod args;
pub mod bench_cmd;
pub mod chat;
pub mod generate_cmd;
pub mod info;
pub mod interrupt;
pub mod load;
pub mod model_path;
pub mod perplexity_cmd;
pub mod quantize_cmd;
pub mod serve;
pub mod state_file;

/// One line on stderr; a stderr that cannot be written (a full disk, a closed pipe) is not
/// worth failing the run for (`eprintln!` would panic).
pub fn print_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
