//! The generation loop shared by the CLI and the browser facade: prefill a prompt, then pick
//! and feed one token at a time until a stop condition hits.
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
//! - Stop strings are matched on decoded text, so they need a tokenizer
//!   ([`Generator::with_tokenizer`]) and the text API ([`Generator::next_text`]), which also
//!   holds back text that might be the start of a stop string, so a stop string is never shown.

use crate::error::{Error, Result};
use crate::ops::top_k::{TopKReader, TopKRequest, TopKRow};
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
    /// One-token steps (each feeds a token and yields the next one).
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
    /// A token chosen from the prefill logits, not yet returned.
    first: Option<u32>,
    /// The last returned token, not yet fed to the session.
    pending: Option<u32>,
    started: bool,
    finish: Option<FinishReason>,
    stats: GenerationStats,
    text: Option<TextOutput<'a>>,
    /// Buffers of the GPU top-k path, made on its first use.
    top_k: Option<TopKReader>,
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
        Generator {
            session,
            sampler,
            stop,
            history: Vec::new(),
            first: None,
            pending: None,
            started: false,
            finish: None,
            stats: GenerationStats::default(),
            text: None,
            top_k: None,
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

    /// Argmax on the GPU (4 bytes read back) is exact only when no filter changes the logits
    /// first; temperature 0 with a repetition penalty goes through the CPU sampler.
    fn gpu_greedy(&self) -> bool {
        let p = self.sampler.params();
        p.temperature == 0.0 && (p.repetition_penalty == 1.0 || p.repetition_window == 0)
    }

    /// Top-k sampling picks its candidates on the GPU (ops::top_k: a few KiB read back instead
    /// of the vocabulary's logits).
    fn gpu_top_k(&self) -> Option<TopKRequest> {
        self.sampler.top_k_request(&self.history)
    }

    /// Samples from the logits that the last run left on the GPU, through ops::top_k.
    async fn sample_on_gpu(&mut self, request: &TopKRequest) -> Result<u32> {
        let model = self.session.model().clone();
        let reader = self.top_k.get_or_insert_with(|| TopKReader::new(&model.ctx, model.config.vocab_size));
        match reader.read(&model.ctx, self.session.logits_buffer(), request).await? {
            TopKRow::Candidates(candidates) => self.sampler.sample_candidates(candidates),
            TopKRow::Logits(row) => self.sampler.sample(&row, &self.history),
        }
    }

    /// Prefills the prompt (batch 1) and chooses the first token (not yet returned).
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
        }
        chosen?;
        self.started = true;
        self.stats.prompt_tokens = prompt.len();
        self.stats.prefill_seconds = now_seconds() - t0;
        Ok(())
    }

    /// Prefills the prompt and picks the first token, as the sampling options say.
    async fn choose_first(&mut self, prompts: &[Vec<u32>]) -> Result<()> {
        if self.stop.max_tokens == 0 {
            // Only the state matters: nothing is read back.
            self.session.feed(prompts).await?;
            self.finish = Some(FinishReason::MaxTokens);
        } else if self.gpu_greedy() {
            self.first = self.session.prefill_greedy(prompts).await?.first().copied();
        } else if let Some(request) = self.gpu_top_k() {
            self.session.prefill_keep_logits(prompts).await?;
            self.first = Some(self.sample_on_gpu(&request).await?);
        } else {
            let logits = self.session.prefill(prompts).await?;
            self.first = Some(self.sampler.sample(&logits, &self.history)?);
        }
        Ok(())
    }

    /// The next token id, or None once a stop condition hit (see [`Generator::finish_reason`]).
    pub async fn next_token(&mut self) -> Result<Option<u32>> {
        if !self.started {
            return Err(Error::invalid("generator", "call start() before next_token()"));
        }
        if self.finish.is_some() {
            return Ok(None);
        }
        if self.stats.generated_tokens >= self.stop.max_tokens {
            return Ok(self.end(FinishReason::MaxTokens));
        }
        let token = match (self.first.take(), self.pending.take()) {
            (Some(first), _) => first,
            (None, Some(previous)) => self.step(previous).await?,
            (None, None) => return Err(Error::Gpu("no token came back from the prefill".into())),
        };
        if self.stop.eos.contains(&token) {
            return Ok(self.end(FinishReason::Eos));
        }
        self.history.push(token);
        self.stats.generated_tokens += 1;
        self.pending = Some(token);
        Ok(Some(token))
    }

    /// Feeds `previous` and chooses the token after it.
    async fn step(&mut self, previous: u32) -> Result<u32> {
        let t0 = now_seconds();
        let next = if self.gpu_greedy() {
            let ids = self.session.step_greedy(&[previous]).await?;
            ids.first().copied().ok_or_else(|| Error::Gpu("no token came back from the step".into()))?
        } else if let Some(request) = self.gpu_top_k() {
            self.session.step_keep_logits(&[previous]).await?;
            self.sample_on_gpu(&request).await?
        } else {
            let logits = self.session.step(&[previous]).await?;
            self.sampler.sample(&logits, &self.history)?
        };
        self.stats.decode_steps += 1;
        self.stats.decode_seconds += now_seconds() - t0;
        Ok(next)
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
        }
        Ok(Some(out))
    }

    /// Ends generation before the next token (e.g. on Ctrl-C).
    pub fn cancel(&mut self) {
        self.finish.get_or_insert(FinishReason::Cancelled);
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

    fn end(&mut self, reason: FinishReason) -> Option<u32> {
        self.finish = Some(reason);
        None
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
fn now_seconds() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// `Instant::now` panics on wasm32-unknown-unknown; the browser's clock does not.
#[cfg(target_arch = "wasm32")]
fn now_seconds() -> f64 {
    js_sys::Date::now() / 1000.0
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
