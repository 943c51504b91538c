//! `mamba-wgpu chat`: reads lines from stdin and answers each, keeping the recurrent state
//! between turns. A turn feeds only what is new (the previous reply's last token, which was
//! chosen but never fed, then the user's line and the separator), so a long conversation costs
//! the same per token as a short one: Mamba's whole context is its fixed-size state.
//!
//! With a chat template (`tokenizer_config.json`'s, rendered as the server renders it), a turn
//! feeds the rendering of the whole conversation with the new line, less the text fed so far.
//! Models without one get the plain transcript: the user's line followed by a blank line
//! (`\n\n`), and a reply ends at EOS, at `--max-tokens`, at a `--stop` string, or by default at
//! the next blank line: in the plain text small models learn from (plays, prose) a blank line
//! is where a speech or paragraph ends, so each turn reads to the model like one paragraph
//! answering the previous one. With a template, a reply ends at EOS (or a `--stop` string).
//! Ctrl-C during a reply stops that reply; at the prompt it ends the chat with the summary
//! (exit code 130). A line of input that is not UTF-8 is an error for its turn only.

use std::io::{BufRead, IsTerminal, Read, Write};

use mamba_wgpu::chat_template::{Message, PLAIN_SEPARATOR};
use mamba_wgpu::generate::{GenerationStats, Generator, StopConditions};
use mamba_wgpu::sampling::Sampler;
use mamba_wgpu::{Error, Result, Session};

use super::args::ChatArgs;
use super::generate_cmd::summary;
use super::interrupt::{self, Generating};
use super::load::{chat_template, load, NeedTokenizer};
use super::print_err;

/// Most bytes of one line of input; a longer line is an error for its turn.
const MAX_LINE_BYTES: u64 = 1 << 20;

pub fn run(args: &ChatArgs) -> Result<()> {
    let params = args.sampling.params()?;
    let template = chat_template(&args.model)?;
    let mut stop_strings = args.sampling.stop_strings()?;
    if stop_strings.is_empty() && template.is_plain() {
        stop_strings.push(PLAIN_SEPARATOR.into());
    }
    let loaded = load(&args.model, NeedTokenizer::Yes)?;
    let tokenizer = loaded.tokenizer.as_ref().ok_or_else(|| Error::invalid("--model", "chat needs a model with tokenizer.json"))?;
    let model = loaded.model.clone();
    let eos = model.config.eos_ids_or(tokenizer.eos_id());
    let mut session = Session::new(model.clone(), 1)?;
    session.set_interrupt(interrupt::flag());
    let interactive = std::io::stdin().is_terminal();
    let adapter = model.ctx.adapter.to_string();
    if interactive {
        print_err(&format!("chatting with {} on {adapter}; Ctrl-D ends, Ctrl-C stops a reply", model.source));
    }

    let mut pending: Option<u32> = None;
    let mut history: Vec<u32> = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    // With a chat template: the text fed so far (renderings of the conversation, and replies).
    let mut fed_text = String::new();
    let mut total = GenerationStats::default();
    let per_submit = args.sampling.tokens_per_submit()?;
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout();
    loop {
        // Ctrl-C while waiting for a line ends the chat with its summary.
        interrupt::set_exit_note(Some(summary(&total, None, &adapter)));
        if interactive {
            let _ = write!(std::io::stderr(), "> ");
        }
        let line = match read_line(&mut stdin)? {
            Line::End => break,
            Line::Text(line) => line,
            Line::Bad(e) => {
                // A bad line costs its own turn only.
                print_err(&format!("error: {e}"));
                continue;
            }
        };
        interrupt::set_exit_note(None);
        if line.trim().is_empty() {
            continue;
        }
        let user = Message::new("user", &line);
        let mut prompt: Vec<u32> = pending.take().into_iter().collect();
        if template.is_plain() {
            // The plain transcript: the line and a blank line.
            prompt.extend(tokenizer.encode(&format!("{line}{PLAIN_SEPARATOR}"))?);
        } else {
            // The template's rendering of the whole conversation, less the text already fed
            // (earlier renderings and replies): its BOS, closing tags and all.
            let rendered = match template.render(&[messages.as_slice(), std::slice::from_ref(&user)].concat(), true) {
                Ok(text) => text,
                Err(e) => {
                    // A template that refuses this conversation costs the turn only.
                    print_err(&format!("error: {e}"));
                    pending = prompt.pop();
                    continue;
                }
            };
            match rendered.strip_prefix(fed_text.as_str()) {
                Some(new) => prompt.extend(tokenizer.encode(new)?),
                None => {
                    // Rendered differently from what was fed: feed it all again, from zero.
                    session.reset();
                    prompt = tokenizer.encode(&rendered)?;
                    history.clear();
                }
            }
            fed_text = rendered;
        }
        messages.push(user);

        // Each draw depends on the seed and its position in the conversation.
        let sampler = Sampler::new(params.clone())?;
        let stop = StopConditions { max_tokens: args.sampling.max_tokens, eos: eos.clone(), stop_strings: stop_strings.clone() };
        let mut gen = Generator::new(&mut session, sampler, stop).with_history(&history).with_tokenizer(tokenizer);
        if let Some(steps) = per_submit {
            gen = gen.with_tokens_per_submit(steps)?;
        }
        let guard = Generating::begin();
        if let Err(e) = pollster::block_on(gen.start(&prompt)) {
            // Interrupted inside the turn's prompt: the state holds part of it, so the chat ends.
            if matches!(e, Error::Interrupted) {
                print_err(&summary(&total, None, &adapter));
            }
            return Err(e);
        }
        let mut reply = String::new();
        loop {
            if guard.stop_requested() {
                gen.cancel();
            }
            let Some(chunk) = pollster::block_on(gen.next_text())? else { break };
            stdout.write_all(chunk.as_bytes()).and_then(|_| stdout.flush()).map_err(|e| Error::io("stdout", e))?;
            reply.push_str(&chunk);
        }
        drop(guard);
        if !reply.ends_with('\n') {
            writeln!(stdout).map_err(|e| Error::io("stdout", e))?;
        }
        messages.push(Message::new("assistant", &reply));
        fed_text.push_str(&reply);
        pending = gen.pending_token();
        // Only the repetition window of the history can matter; keep it bounded.
        let h = gen.history();
        history = h[h.len().saturating_sub(params.repetition_window)..].to_vec();
        add(&mut total, &gen.stats());
    }
    interrupt::set_exit_note(None);
    print_err(&summary(&total, None, &adapter));
    Ok(())
}

enum Line {
    /// The end of the input.
    End,
    Text(String),
    /// A line that is not UTF-8 or too long: an error for this turn.
    Bad(String),
}

/// One line of stdin without its line ending, read at most MAX_LINE_BYTES at a time.
fn read_line(input: &mut impl BufRead) -> Result<Line> {
    let mut bytes = Vec::new();
    let read = input.by_ref().take(MAX_LINE_BYTES).read_until(b'\n', &mut bytes).map_err(|e| Error::io("stdin", e))?;
    if read == 0 {
        return Ok(Line::End);
    }
    if bytes.last() != Some(&b'\n') && read as u64 == MAX_LINE_BYTES {
        // Skip the rest of the line, a bounded piece at a time.
        loop {
            let mut rest = Vec::new();
            let n = input.by_ref().take(MAX_LINE_BYTES).read_until(b'\n', &mut rest).map_err(|e| Error::io("stdin", e))?;
            if n == 0 || rest.last() == Some(&b'\n') {
                break;
            }
        }
        return Ok(Line::Bad(format!("stdin: a line is longer than {} MiB; it is skipped", MAX_LINE_BYTES >> 20)));
    }
    match String::from_utf8(bytes) {
        Ok(line) => Ok(Line::Text(line.trim_end_matches(['\n', '\r']).to_string())),
        Err(e) => Ok(Line::Bad(format!("stdin: a line is not UTF-8 text (invalid byte at offset {}); it is skipped", e.utf8_error().valid_up_to()))),
    }
}

fn add(total: &mut GenerationStats, turn: &GenerationStats) {
    total.prompt_tokens += turn.prompt_tokens;
    total.generated_tokens += turn.generated_tokens;
    total.prefill_seconds += turn.prefill_seconds;
    total.decode_steps += turn.decode_steps;
    total.decode_seconds += turn.decode_seconds;
}
