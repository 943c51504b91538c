//! `mamba-wgpu perplexity`: the perplexity of a text file (src/perplexity.rs says which tokens
//! are scored). The text is encoded as written (`Tokenizer::encode`): no BOS or other special
//! token is added, even by a tokenizer whose template would add one; those of Mamba models
//! (GPT-NeoX's, the built-in model's) add none, so for them this is the tokenizer's own choice.
//!
//! stdout gets the result only (three `name: value` lines, or one JSON object with --json);
//! the progress bar (on a terminal) and the summary go to stderr.

use std::path::Path;
use std::time::Instant;

use mamba_wgpu::model::checkpoint::read_limited;
use mamba_wgpu::perplexity::perplexity;
use mamba_wgpu::{Error, Result, Session};

use super::args::PerplexityArgs;
use super::load::{load, NeedTokenizer};
use super::print_err;

/// Most bytes a text file may hold (about 16 million tokens of English).
const MAX_FILE_BYTES: u64 = 64 << 20;

pub fn run(args: &PerplexityArgs) -> Result<()> {
    // Bad arguments fail before the seconds of loading the model.
    if let Some(n) = args.context.filter(|&n| n < 2) {
        return Err(Error::invalid("--context", format!("{n}: a window needs at least 2 tokens (its first is not scored)")));
    }
    let text = read_text(&args.file)?;
    let loaded = load(&args.model, NeedTokenizer::Yes)?;
    let tokenizer = loaded.tokenizer.as_ref().ok_or_else(|| Error::invalid("--tokenizer", "scoring text needs a tokenizer"))?;
    let ids = tokenizer.encode(&text)?;
    if ids.len() < 2 {
        return Err(Error::invalid("--file", format!("{}: {} token(s); perplexity needs at least 2", args.file.display(), ids.len())));
    }

    let mut session = Session::new(loaded.model.clone(), 1)?;
    let bar = super::progress_bar(ids.len() as u64, "scoring [{bar:32}] {pos}/{len} tokens, {per_sec}");
    let started = Instant::now();
    let result = pollster::block_on(perplexity(&mut session, &ids, args.context, &mut |done, _| bar.set_position(done as u64)));
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let result = result?;
    let tokens_per_s = result.tokens as f64 / seconds;

    let output = if args.json {
        serde_json::json!({ "perplexity": result.perplexity, "tokens": result.tokens }).to_string()
    } else {
        format!("perplexity: {:.4}\ntokens: {}\ntokens/s: {tokens_per_s:.1}", result.perplexity, result.tokens)
    };
    println!("{output}");
    let context = args.context.map_or("the whole file".to_string(), |n| format!("windows of {n}"));
    print_err(&format!(
        "{}: {} tokens, {} scored (state over {context}), mean NLL {:.4} nats/token, {seconds:.1} s, {tokens_per_s:.1} tokens/s, adapter: {}",
        args.file.display(),
        ids.len(),
        result.tokens,
        result.mean_nll,
        loaded.model.ctx.adapter
    ));
    Ok(())
}

/// The file's text; a missing, unreadable, non-UTF-8 or empty file is an error naming it.
fn read_text(path: &Path) -> Result<String> {
    let bytes = read_limited(path, MAX_FILE_BYTES, "a text file")?;
    if bytes.is_empty() {
        return Err(Error::invalid("--file", format!("{} is empty: there is nothing to score", path.display())));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Error::io(path.display(), format!("is not UTF-8 text (invalid byte at offset {at})"))
    })
}
