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

/// A progress bar on stderr drawn with indicatif's `template` (e.g. "loading weights [{bar:32}]
/// {bytes}/{total_bytes}"), hidden when stderr is not a terminal.
pub fn progress_bar(total: u64, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
