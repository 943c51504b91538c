//! The generation loop shared by the CLI, the C API and the browser facade: prefill a prompt
//! and sample its first token, then decode several tokens per submit, sampled on the GPU
//! (each step feeds the token the step before it sampled), until a stop condition hits.
//!
//! ```no_run
//! # async fn demo(session: &mut mamba_wgpu::Session, tok: &mamba_wgpu::tokenizer::Tokenizer) -> mamba_wgpu::Result<()> {
//! use mamba_wgpu::generate::{Generator, StopConditions};
//! use mamba_wgpu::sampling::{Sampler, SamplingParams};
//! let stop = StopConditions { max_tokens: 100, eos: tok.eos_id().into_iter().collect(), stop_strings: vec!["\n\n".into()] };
//! let mut gen = Generator::new(session, Sampler::new(SamplingParams::default())?, stop).with_tokenizer(tok);
//! gen.start(&tok.encode("ROMEO.")?).await?;
//! while let Some(text) = gen.next_text().await? {
//!     print!("{text}");
//! }
//! # Ok(()) }
//! ```
//!
//! Bookkeeping that callers rely on:
//! - A token is returned as soon as it is chosen; it is fed to the model only when the *next*
//!   token is asked for. The last returned token is therefore not yet in the recurrent state:
//!   [`Generator::pending_token`] gives it, and a caller that continues the same sequence later
//!   (the next chat turn, a saved state) feeds it first. An EOS token is never returned, so it
//!   is never pending either.
//! - Tokens come back from the GPU several at a time; the state can run ahead of the tokens
//!   returned. When generation ends (None from `next_token` / `next_text`, or
//!   [`Generator::stop`]) the state is made exact: it holds the prompt and every returned token
//!   but the pending one, whatever the number of tokens per submit. The tokens themselves do
//!   not depend on it either: each draw depends on the seed and its position only.
//! - Stop strings are matched on decoded text, so they need a tokenizer
//!   ([`Generator::with_tokenizer`]) and the text API ([`Generator::next_text`]), which also
//!   holds back text that might be the start of a stop string, so a stop string is never shown.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::ops::sample::{SequenceSampling, MAX_STEPS};
use crate::sampling::Sampler;
use crate::session::Session;
use crate::tokenizer::{TextStream, Tokenizer};

/// When generation ends. Any condition that hits first wins.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StopConditions {
    /// Most tokens to return; 0 only prefills the prompt.
    pub max_tokens: usize,
    /// The end-of-sequence ids: when one is chosen, generation ends and the id is not returned.
    pub eos: Vec<u32>,
    /// Texts that end generation when they appear in the output (needs a tokenizer).
    pub stop_strings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Eos,
    MaxTokens,
    StopString,
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::MaxTokens => "max-tokens",
            FinishReason::StopString => "stop-string",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Prompt forward pass plus choosing the first token.
    pub prefill_seconds: f64,
    /// Decode steps run (each feeds a token and samples the next), including those past the
    /// end of a generation that ended inside a run of several.
    pub decode_steps: usize,
    pub decode_seconds: f64,
}

impl GenerationStats {
    /// None when nothing was timed (e.g. an empty run).
    pub fn prefill_tokens_per_second(&self) -> Option<f64> {
        rate(self.prompt_tokens, self.prefill_seconds)
    }
    pub fn decode_tokens_per_second(&self) -> Option<f64> {
        rate(self.decode_steps, self.decode_seconds)
    }
}

fn rate(count: usize, seconds: f64) -> Option<f64> {
    (count > 0 && seconds > 0.0).then(|| count as f64 / seconds)
}

pub struct Generator<'a> {
    session: &'a mut Session,
    sampler: Sampler,
    stop: StopConditions,
    /// Prompt + generated ids, what the repetition penalty looks at.
    history: Vec<u32>,
    /// Tokens sampled on the GPU, not yet returned.
    queue: VecDeque<u32>,
    /// The last returned token, not yet fed to the session.
    pending: Option<u32>,
    /// The last decode run: how many steps it ran, the tokens it fed that count (the pending
    /// token, then what it sampled; steps after a stop feed leftovers), and how many of them
    /// the state should hold: those before the last returned token. When generation ends
    /// with fewer than it ran, the session rolls back (`settle`).
    run_steps: usize,
    run_fed: Vec<u32>,
    run_wanted: usize,
    /// Most tokens per submit, and the size of the next decode run (it doubles up to that).
    tokens_per_submit: usize,
    next_run: usize,
    started: bool,
    finish: Option<FinishReason>,
    settled: bool,
    stats: GenerationStats,
    text: Option<TextOutput<'a>>,
}

/// The text of generated tokens, UTF-8-safe, with stop strings: text that may begin a stop
/// string is held back until it cannot, and a stop string ends the text before it. The
/// Generator uses one; so does any loop that chooses tokens itself (the server's batch).
pub struct TextOutput<'a> {
    stream: TextStream<'a>,
    stops: Vec<String>,
    /// Decoded text not yet returned because it may begin a stop string.
    held: String,
    /// The final text (stream remainder and held text) has been returned.
    flushed: bool,
}

impl<'a> TextOutput<'a> {
    /// An empty stop string would end the text at once: those are ignored.
    pub fn new(tokenizer: &'a Tokenizer, mut stops: Vec<String>) -> Self {
        stops.retain(|s| !s.is_empty());
        TextOutput { stream: tokenizer.stream(), stops, held: String::new(), flushed: false }
    }

    /// The text `token` releases (possibly empty), and whether it completed a stop string (the
    /// text then ends before it, and nothing more comes).
    pub fn push(&mut self, token: u32) -> Result<(String, bool)> {
        self.held.push_str(&self.stream.push(token)?);
        if let Some(at) = find_stop(&self.held, &self.stops) {
            let mut out = std::mem::take(&mut self.held);
            out.truncate(at);
            self.flushed = true;
            return Ok((out, true));
        }
        let keep = possible_stop_start(&self.held, &self.stops);
        let rest = self.held.split_off(keep);
        Ok((std::mem::replace(&mut self.held, rest), false))
    }

    /// The text still held once generation has ended (None if it was all returned).
    pub fn finish(&mut self) -> Result<Option<String>> {
        if self.flushed {
            return Ok(None);
        }
        self.flushed = true;
        let mut rest = std::mem::take(&mut self.held);
        rest.push_str(&self.stream.finish()?);
        // The flushed tail can still complete a stop string.
        if let Some(at) = find_stop(&rest, &self.stops) {
            rest.truncate(at);
        }
        Ok(Some(rest))
    }
}

impl<'a> Generator<'a> {
    /// `session` continues from whatever state it has (fresh, restored or after earlier turns).
    pub fn new(session: &'a mut Session, sampler: Sampler, stop: StopConditions) -> Self {
        let tokens_per_submit = session.model().ctx.tokens_per_submit();
        Generator {
            session,
            sampler,
            stop,
            history: Vec::new(),
            queue: VecDeque::new(),
            pending: None,
            run_steps: 0,
            run_fed: Vec::new(),
            run_wanted: 0,
            tokens_per_submit,
            next_run: 2,
            started: false,
            finish: None,
            settled: false,
            stats: GenerationStats::default(),
            text: None,
        }
    }

    /// Enables [`Generator::next_text`] and stop strings.
    pub fn with_tokenizer(mut self, tokenizer: &'a Tokenizer) -> Self {
        self.text = Some(TextOutput::new(tokenizer, self.stop.stop_strings.clone()));
        self
    }

    /// Ids already in the session's state (earlier turns, a restored state): the repetition
    /// penalty sees them as if they had been part of this prompt.
    pub fn with_history(mut self, earlier: &[u32]) -> Self {
        self.history.splice(0..0, earlier.iter().copied());
        self
    }

    /// The most decode steps one submit runs (at least 1; the adapter decides by default,
    /// `--tokens-per-submit` in the CLI). The tokens are the same for every value.
    pub fn with_tokens_per_submit(mut self, steps: usize) -> Result<Self> {
        if !(1..=MAX_STEPS).contains(&steps) {
            return Err(Error::invalid("tokens_per_submit", format!("{steps}: must be in 1..={MAX_STEPS}")));
        }
        self.tokens_per_submit = steps;
        Ok(self)
    }

    /// Prefills the prompt (batch 1) and samples the first token on the GPU (not yet returned).
    pub async fn start(&mut self, prompt: &[u32]) -> Result<()> {
        if self.started {
            return Err(Error::invalid("generator", "start() was already called"));
        }
        if self.session.batch() != 1 {
            return Err(Error::invalid("session", format!("generation needs batch 1, the session has {}", self.session.batch())));
        }
        if let Some(i) = self.stop.stop_strings.iter().position(|s| s.is_empty()) {
            return Err(Error::invalid("stop", format!("stop string {i} is empty")));
        }
        if !self.stop.stop_strings.is_empty() && self.text.is_none() {
            return Err(Error::invalid("stop", "stop strings need a tokenizer (Generator::with_tokenizer)"));
        }
        let t0 = now_seconds();
        let prompts = [prompt.to_vec()];
        self.history.extend_from_slice(prompt);
        let position = self.session.position();
        let chosen = self.choose_first(&prompts).await;
        if let Err(Error::Interrupted) = chosen {
            // The chunks fed before the interrupt are in the state.
            self.stats.prompt_tokens = (self.session.position() - position) as usize;
            self.stats.prefill_seconds = now_seconds() - t0;
            self.finish = Some(FinishReason::Cancelled);
            self.settled = true;
        }
        chosen?;
        self.started = true;
        self.stats.prompt_tokens = prompt.len();
        self.stats.prefill_seconds = now_seconds() - t0;
        Ok(())
    }

    /// Prefills the prompt and samples the first token: one token in the first submit, so the
    /// first text comes as soon as it can.
    async fn choose_first(&mut self, prompts: &[Vec<u32>]) -> Result<()> {
        if self.stop.max_tokens == 0 {
            // Only the state matters: nothing is read back.
            self.session.feed(prompts).await?;
            self.finish = Some(FinishReason::MaxTokens);
            self.settled = true;
            return Ok(());
        }
        let sequence = SequenceSampling {
            params: self.sampler.params().clone(),
            eos: self.stop.eos.clone(),
            budget: self.stop.max_tokens,
            recent: self.history.clone(),
            position: self.session.position() + prompts[0].len() as u64,
        };
        self.session.set_sampling(&[sequence])?;
        let first = self.session.prefill_sample(prompts).await?;
        self.queue.extend(first[0].token()?);
        Ok(())
    }

    /// The next token id, or None once a stop condition hit (see [`Generator::finish_reason`]).
    pub async fn next_token(&mut self) -> Result<Option<u32>> {
        if !self.started {
            return Err(Error::invalid("generator", "call start() before next_token()"));
        }
        if self.finish.is_none() && self.stats.generated_tokens >= self.stop.max_tokens {
            self.finish = Some(FinishReason::MaxTokens);
        }
        if self.finish.is_none() && self.queue.is_empty() {
            self.decode_run().await?;
        }
        if self.finish.is_some() {
            self.settle().await?;
            return Ok(None);
        }
        let Some(token) = self.queue.pop_front() else {
            return Err(Error::Gpu("the GPU sampler returned no token".into()));
        };
        // The pending token is now one the state should hold.
        if self.pending.take().is_some() {
            self.run_wanted += 1;
        }
        if self.stop.eos.contains(&token) {
            self.finish = Some(FinishReason::Eos);
            self.settle().await?;
            return Ok(None);
        }
        self.history.push(token);
        self.stats.generated_tokens += 1;
        self.pending = Some(token);
        Ok(Some(token))
    }

    /// One submit of decode steps: feeds the pending token, samples up to `next_run` tokens
    /// on the GPU (fewer when the budget ends sooner), and queues them.
    async fn decode_run(&mut self) -> Result<()> {
        let Some(previous) = self.pending else {
            return Err(Error::Gpu("no token came back from the prefill".into()));
        };
        let remaining = self.stop.max_tokens - self.stats.generated_tokens;
        let steps = self.next_run.min(self.tokens_per_submit).min(remaining).max(1);
        self.next_run = (self.next_run * 2).min(self.tokens_per_submit);
        let t0 = now_seconds();
        let rows = self.session.decode_sampled(&[previous], steps).await?;
        self.stats.decode_steps += steps;
        self.stats.decode_seconds += now_seconds() - t0;
        let mut sampled = Vec::with_capacity(steps);
        for row in rows {
            match row[0].token()? {
                Some(token) => sampled.push(token),
                None => break,
            }
        }
        self.run_steps = steps;
        self.run_fed.clear();
        self.run_fed.push(previous);
        self.run_fed.extend(sampled.iter().take(steps - 1));
        self.run_wanted = 0;
        self.queue.extend(sampled);
        Ok(())
    }

    /// Once generation has ended: where the last decode run fed more tokens than the state
    /// should hold (an EOS, a stop string or a cancel inside it), rolls the session back to
    /// its start and replays the tokens it should hold, so the state is exactly that of a run
    /// that stopped there.
    async fn settle(&mut self) -> Result<()> {
        if self.settled {
            return Ok(());
        }
        self.settled = true;
        self.queue.clear();
        if self.run_wanted < self.run_steps {
            let replay = self.run_fed[..self.run_wanted].to_vec();
            self.session.rollback(&replay).await?;
        }
        Ok(())
    }

    /// The text of the next token, possibly empty (an unfinished character, or text held back
    /// as a possible stop string start); None once generation has ended and all text was
    /// returned. Needs [`Generator::with_tokenizer`].
    pub async fn next_text(&mut self) -> Result<Option<String>> {
        if self.text.is_none() {
            return Err(Error::invalid("generator", "next_text() needs a tokenizer (Generator::with_tokenizer)"));
        }
        let token = self.next_token().await?;
        let Some(text) = self.text.as_mut() else { return Ok(None) };
        let Some(token) = token else { return text.finish() };
        let (out, stopped) = text.push(token)?;
        if stopped {
            self.finish = Some(FinishReason::StopString);
            self.settle().await?;
        }
        Ok(Some(out))
    }

    /// Ends generation before the next token (e.g. on Ctrl-C); the next call of
    /// `next_token` or `next_text` returns None and leaves the session's state exact (or call
    /// [`Generator::stop`]).
    pub fn cancel(&mut self) {
        self.finish.get_or_insert(FinishReason::Cancelled);
    }

    /// `cancel`, and the session's state made exact now: it holds the prompt and every
    /// returned token but the pending one.
    pub async fn stop(&mut self) -> Result<()> {
        self.cancel();
        self.settle().await
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// The last returned token, which has not been fed to the session yet.
    pub fn pending_token(&self) -> Option<u32> {
        self.pending
    }

    /// Prompt and generated ids so far (including earlier history given to `with_history`).
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    pub fn stats(&self) -> GenerationStats {
        self.stats
    }
}

/// Byte offset of the earliest stop string in `text`.
fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// Byte offset where the longest suffix of `text` that is a proper start of some stop string
/// begins (`text.len()` when there is none): that suffix must wait for the next token.
fn possible_stop_start(text: &str, stops: &[String]) -> usize {
    text.char_indices().map(|(i, _)| i).find(|&i| stops.iter().any(|s| s.len() > text.len() - i && s.starts_with(&text[i..]))).unwrap_or(text.len())
}

/// Seconds since some fixed point, for measuring durations on every platform.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn now_seconds() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// `Instant::now` panics on wasm32-unknown-unknown; the browser's clocks do not:
/// `performance.now()` (a fraction of a millisecond, in a page or a worker), else `Date.now()`.
#[cfg(target_arch = "wasm32")]
pub(crate) fn now_seconds() -> f64 {
    use wasm_bindgen::JsCast;
    let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok().filter(|p| p.is_object());
    let now = performance.as_ref().and_then(|p| js_sys::Reflect::get(p, &"now".into()).ok()).and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    let ms = match (&performance, now) {
        (Some(p), Some(now)) => now.call0(p).ok().and_then(|v| v.as_f64()),
        _ => None,
    };
    ms.unwrap_or_else(js_sys::Date::now) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stop_search_finds_the_earliest() {
        let s = stops(&["END", "\n\n"]);
        assert_eq!(find_stop("ab\n\ncdEND", &s), Some(2));
        assert_eq!(find_stop("abENDx\n\n", &s), Some(2));
        assert_eq!(find_stop("abc\n", &s), None);
    }

    #[test]
    fn held_back_suffix_is_a_possible_stop_start() {
        let s = stops(&["END", "\n\n"]);
        assert_eq!(possible_stop_start("hello E", &s), 6);
        assert_eq!(possible_stop_start("hello EN", &s), 6);
        assert_eq!(possible_stop_start("line\n", &s), 4);
        assert_eq!(possible_stop_start("hello", &s), 5);
        // A complete stop string is not "possible start" (find_stop handles it).
        assert_eq!(possible_stop_start("x", &stops(&["x"])), 1);
        // Multi-byte characters: offsets stay on char boundaries.
        assert_eq!(possible_stop_start("héé", &stops(&["éx"])), 3);
        assert_eq!(possible_stop_start("日本", &stops(&["本語"])), 3);
    }
}
