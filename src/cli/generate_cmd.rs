//! `mamba-wgpu generate`: one prompt in, new text (or token ids) out.
//!
//! Two modes, picked by the prompt flag:
//! - text (`--prompt`, `--prompt-file`): the prompt is tokenized, new text streams to stdout
//!   token by token; generation stops at EOS (config.json's `eos_token_id`, else the
//!   tokenizer's), a `--stop` string or `--max-tokens`.
//! - ids (`--prompt-ids`): no tokenizer needed; prints the new ids on one line. It never stops
//!   at EOS: exactly `--max-tokens` argmax/sampling steps, like the reference fixtures.

use std::io::Write;
use std::path::{Path, PathBuf};

use mamba_wgpu::generate::{FinishReason, GenerationStats, Generator, StopConditions};
use mamba_wgpu::model::checkpoint::read_limited;
use mamba_wgpu::sampling::Sampler;
use mamba_wgpu::state_file::SavedState;
use mamba_wgpu::{Error, Result, Session};

use super::args::GenerateArgs;
use super::interrupt::{self, Generating};
use super::load::{load, NeedTokenizer};
use super::model_path;
use super::print_err;
use super::state_file;

enum Input {
    Text(String),
    Ids(Vec<u32>),
    /// Only valid with --load-state: continue the saved run.
    Nothing,
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    // Everything that can be checked without the GPU is checked before loading the model,
    // the --save-state destination included, so a bad one fails before the run, not after it.
    let params = args.sampling.params()?;
    let stop_strings = args.sampling.stop_strings()?;
    let input = read_input(args)?;
    if matches!(input, Input::Ids(_)) && !stop_strings.is_empty() {
        return Err(Error::invalid("--stop", "stop strings match text; --prompt-ids runs have no text"));
    }
    if let Some(path) = &args.save_state {
        state_file::check_destination(path, &run_inputs(args))?;
    }
    let need = if matches!(input, Input::Text(_)) { NeedTokenizer::Yes } else { NeedTokenizer::No };
    let loaded = load(&args.model, need)?;
    let model = loaded.model.clone();
    // Ids in, ids out; text in (or a bare --load-state on a model with a tokenizer), text out.
    let tokenizer = match input {
        Input::Ids(_) => None,
        _ => loaded.tokenizer.as_ref(),
    };
    let mut session = Session::new(model.clone(), 1)?;
    session.set_interrupt(interrupt::flag());

    // A loaded state already holds earlier tokens; its pending token goes in before the prompt.
    let (mut prompt, history) = match &args.load_state {
        Some(path) => restore(&mut session, path)?,
        None => (Vec::new(), Vec::new()),
    };
    let (prompt_text, new_ids) = match (&input, tokenizer) {
        (Input::Text(text), Some(tok)) => (text.clone(), tok.encode(text)?),
        (Input::Ids(ids), _) => (join_ids(ids), ids.clone()),
        _ => (String::new(), Vec::new()),
    };
    prompt.extend_from_slice(&new_ids);

    let eos = tokenizer.map(|tok| model.config.eos_ids_or(tok.eos_id())).unwrap_or_default();
    let stop = StopConditions { max_tokens: args.sampling.max_tokens, eos, stop_strings };
    let mut gen = Generator::new(&mut session, Sampler::new(params)?, stop).with_history(&history);
    if let Some(steps) = args.sampling.tokens_per_submit()? {
        gen = gen.with_tokens_per_submit(steps)?;
    }
    if let Some(tok) = tokenizer {
        gen = gen.with_tokenizer(tok);
    }
    // Without --json, text and ids stream to stdout as they come (flushed), so a reader that
    // goes away (a closed pipe) ends the run.
    let streaming = !args.json;
    let mut stdout = std::io::stdout().lock();
    if streaming && args.echo_prompt {
        let echoed = if tokenizer.is_some() { prompt_text.clone() } else { format!("{prompt_text} ") };
        write_out(&mut stdout, &echoed)?;
    }

    let guard = Generating::begin();
    let prefilled = match pollster::block_on(gen.start(&prompt)) {
        Err(Error::Interrupted) => false,
        other => other.map(|_| true)?,
    };
    let mut text = String::new();
    let mut first_id = true;
    // Nothing to generate after an interrupted prompt.
    if prefilled {
        loop {
            if guard.stop_requested() {
                gen.cancel();
            }
            if tokenizer.is_some() {
                let Some(chunk) = pollster::block_on(gen.next_text())? else { break };
                if streaming {
                    write_out(&mut stdout, &chunk)?;
                }
                text.push_str(&chunk);
            } else {
                let Some(id) = pollster::block_on(gen.next_token())? else { break };
                if streaming {
                    write_out(&mut stdout, &format!("{}{id}", if first_id { "" } else { " " }))?;
                    first_id = false;
                }
            }
        }
    }
    let interrupted = guard.stop_requested();
    drop(guard);
    let (stats, reason, pending) = (gen.stats(), gen.finish_reason(), gen.pending_token());
    let history = gen.history().to_vec();
    drop(gen);

    let adapter = model.ctx.adapter.to_string();
    if let Some(path) = &args.save_state {
        if prefilled {
            let snapshot = pollster::block_on(session.snapshot())?;
            state_file::save(path, &SavedState { fingerprint: model.fingerprint, snapshot, pending, history: history.clone() })?;
        } else {
            print_err(&format!("--save-state {}: not written, the prompt was interrupted before its end", path.display()));
        }
    }
    let generated = &history[history.len() - stats.generated_tokens..];
    let output = if args.json {
        let mut object = serde_json::json!({
            "ids": [generated],
            "prompt_tokens": stats.prompt_tokens,
            "generated_tokens": stats.generated_tokens,
            "finish_reason": reason.map(FinishReason::as_str),
            "prefill_tokens_per_s": stats.prefill_tokens_per_second(),
            "decode_tokens_per_s": stats.decode_tokens_per_second(),
            "adapter": adapter,
        });
        if tokenizer.is_some() {
            object["text"] = text.into();
        }
        format!("{object}\n")
    } else if tokenizer.is_none() || !text.ends_with('\n') {
        // The output ends its line, so the summary on stderr starts on a line of its own
        // wherever the two streams meet (a terminal, or one file for both).
        "\n".to_string()
    } else {
        String::new()
    };
    write_out(&mut stdout, &output)?;
    print_err(&summary(&stats, reason, &adapter));
    if interrupted {
        return Err(Error::Interrupted);
    }
    Ok(())
}

/// The files this run reads, which --save-state must not overwrite: the model folder's files
/// (or the GGUF file), the prompt file and the loaded state. (A repo id's files live in the Hugging Face cache,
/// under names no state file takes; resolving one here could download it.)
fn run_inputs(args: &GenerateArgs) -> Vec<PathBuf> {
    let mut inputs: Vec<PathBuf> = args.prompt_file.iter().chain(&args.load_state).cloned().collect();
    if let Some(dir) = args.model.model.as_deref().map(Path::new).filter(|p| p.exists()) {
        inputs.extend(model_path::model_files(dir));
    }
    inputs
}

/// Restores a --save-state file; returns the tokens to feed first (the pending one) and the
/// saved history.
fn restore(session: &mut Session, path: &Path) -> Result<(Vec<u32>, Vec<u32>)> {
    let saved = state_file::load(path, session.model(), session)?;
    session.restore(&saved.snapshot).map_err(|e| match e {
        Error::Snapshot { reason } => Error::Snapshot { reason: format!("{}: {reason}", path.display()) },
        other => other,
    })?;
    Ok((saved.pending.into_iter().collect(), saved.history))
}

fn read_input(args: &GenerateArgs) -> Result<Input> {
    if let Some(text) = &args.prompt {
        return Ok(Input::Text(text.clone()));
    }
    if let Some(path) = &args.prompt_file {
        return read_prompt_file(path).map(Input::Text);
    }
    if let Some(list) = &args.prompt_ids {
        return parse_ids(list).map(Input::Ids);
    }
    if args.load_state.is_some() {
        return Ok(Input::Nothing);
    }
    Err(Error::invalid("--prompt", "no prompt: give --prompt TEXT, --prompt-file FILE or --prompt-ids IDS"))
}

/// Most bytes a prompt file may hold (about 16 million tokens of English).
const MAX_PROMPT_FILE_BYTES: u64 = 64 << 20;

fn read_prompt_file(path: &Path) -> Result<String> {
    let bytes = read_limited(path, MAX_PROMPT_FILE_BYTES, "a prompt file")?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Error::io(path.display(), format!("is not UTF-8 text (invalid byte at offset {at}); prompt files must be UTF-8"))
    })
}

/// `1,2,3`, `1 2 3` or a mix. An empty list is left for the session to reject, so the message
/// is the library's ("prompt is empty").
fn parse_ids(list: &str) -> Result<Vec<u32>> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().map_err(|_| Error::invalid("--prompt-ids", format!("`{s}` is not a token id (a non-negative integer)"))))
        .collect()
}

fn join_ids(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

fn write_out(out: &mut impl Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes()).and_then(|_| out.flush()).map_err(stdout_error)
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::io("stdout", e)
}

/// One line for stderr: counts, speeds, why it stopped, where it ran.
pub fn summary(stats: &GenerationStats, reason: Option<FinishReason>, adapter: &str) -> String {
    let speed = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.1}"));
    format!(
        "prompt tokens: {}, generated tokens: {}, prefill: {} tokens/s, decode: {} tokens/s, stop: {}, adapter: {adapter}",
        stats.prompt_tokens,
        stats.generated_tokens,
        speed(stats.prefill_tokens_per_second()),
        speed(stats.decode_tokens_per_second()),
        reason.map_or("-", FinishReason::as_str),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_with_commas_and_spaces() {
        assert_eq!(parse_ids("1,2, 3 4").ok(), Some(vec![1, 2, 3, 4]));
        assert_eq!(parse_ids("").ok(), Some(vec![]));
        assert!(parse_ids("1,x").is_err());
        assert!(parse_ids("-1").is_err());
    }
}
