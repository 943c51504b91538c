//! `mamba-wgpu bench`: the library's benchmark (src/bench) with the command line's choices.

use mamba_wgpu::bench::{self, BenchOptions};
use mamba_wgpu::{Error, Result, WeightDtype};

use super::args::BenchArgs;

pub fn run(args: &BenchArgs) -> Result<()> {
    let mut options = if args.quick { BenchOptions::quick() } else { BenchOptions::full() };
    if !args.shapes.is_empty() {
        for shape in &args.shapes {
            bench::synthetic::config_for(shape).map_err(|_| {
                let names: Vec<&str> = bench::synthetic::SHAPES.iter().map(|s| s.0).collect();
                Error::invalid("--shape", format!("`{shape}` is not one of {}", names.join(", ")))
            })?;
        }
        options.shapes = args.shapes.clone();
    }
    if !args.dtypes.is_empty() {
        options.dtypes = args.dtypes.iter().map(|&d| WeightDtype::from(d)).collect();
    }
    if !args.batches.is_empty() {
        if let Some(&bad) = args.batches.iter().find(|&&b| b == 0) {
            return Err(Error::invalid("--batch", format!("{bad}: must be at least 1")));
        }
        options.batches = args.batches.clone();
    }
    if !args.prompt_lens.is_empty() {
        if args.prompt_lens.contains(&0) {
            return Err(Error::invalid("--prompt-len", "must be at least 1"));
        }
        options.prompt_lens = args.prompt_lens.clone();
    }
    options.model_dir = args.model.clone();
    options.adapter = args.adapter.clone();
    // Fail on an unwritable JSON path now, not after minutes of measuring.
    if let Some(path) = &args.json {
        std::fs::write(path, "").map_err(|e| Error::io(path.display(), e))?;
    }
    // Progress goes to stderr, the report to stdout. The JSON is rewritten after every
    // measurement, so a stopped run keeps what it measured.
    let mut write_error = None;
    let report = bench::run(&options, &mut |line| super::print_err(line), &mut |report| {
        if let Some(path) = &args.json {
            if let Err(e) = std::fs::write(path, report.to_json()) {
                write_error.get_or_insert(Error::io(path.display(), e));
            }
        }
    })?;
    println!("\n{}", report.table());
    if let Some(e) = write_error {
        return Err(e);
    }
    if let Some(path) = &args.json {
        super::print_err(&format!("wrote {}", path.display()));
    }
    Ok(())
}
