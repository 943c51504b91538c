//! Picking the next token from the logits of the last position: the options, and the CPU
//! sampler that is the reference of the GPU's (shaders/sample.wgsl, which generation runs).
//! The filters run in the same order as Hugging Face `transformers` and llama.cpp, so a given
//! set of parameters behaves the way users of those tools expect:
//!
//! repetition penalty -> (temperature 0: argmax) -> top-k -> temperature ->
//! softmax -> top-p -> min-p -> renormalize -> draw in id order.
//!
//! (Top-k before or after the temperature keeps the same tokens: dividing by a
//! positive temperature keeps their order.) Every filter is a threshold on the score, so
//! entries tied with the last one kept are kept. The draw's uniform number comes from a
//! counter-based generator (`uniform_at`): the seed and the token's position decide it.

use crate::error::{Error, Result};

/// User-facing knobs of the sampler. Each filter has a value that disables it.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature. 0 means greedy (argmax). Must be finite and >= 0.
    pub temperature: f32,
    /// Keep only the `top_k` highest logits. 0 disables the filter.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of most probable tokens whose
    /// probabilities add up to at least `top_p`. 1.0 disables; range (0, 1].
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the probability of
    /// the most likely token. 0 disables; range [0, 1].
    pub min_p: f32,
    /// CTRL-style penalty for tokens seen recently: positive logits are divided
    /// by it, negative ones multiplied. 1.0 disables; must be > 0.
    pub repetition_penalty: f32,
    /// How many of the most recent tokens the repetition penalty looks at.
    pub repetition_window: usize,
    /// Seed of the random generator; the same seed replays the same draws.
    pub seed: u64,
}

impl Default for SamplingParams {
    /// Plain sampling from the model's distribution: every filter disabled.
    fn default() -> Self {
        Self { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, repetition_window: 64, seed: 0 }
    }
}

/// The sampling that `mamba-wgpu generate`, `chat`, `serve` and the web page use where the
/// caller chooses nothing: temperature 0.8 with top-k 40, top-p 0.95, min-p 0.05 and a
/// repetition penalty of 1.1 over the last 64 tokens, seed 0.
pub const GENERATION_DEFAULTS: SamplingParams =
    SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repetition_penalty: 1.1, repetition_window: 64, seed: 0 };

/// Most new tokens a generation makes where the caller names no limit (the same front ends).
pub const DEFAULT_MAX_TOKENS: usize = 200;

impl SamplingParams {
    /// Deterministic decoding: always the most likely token.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    /// Checks every field against its allowed range. The comparisons are
    /// written so that NaN fails them (NaN compares false to everything).
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return Err(invalid("temperature", t, "must be finite and >= 0"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(invalid("top_p", self.top_p, "must be in (0, 1]"));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return Err(invalid("min_p", self.min_p, "must be in [0, 1]"));
        }
        let r = self.repetition_penalty;
        if !(r.is_finite() && r > 0.0) {
            return Err(invalid("repetition_penalty", r, "must be finite and > 0"));
        }
        if self.repetition_window > MAX_REPETITION_WINDOW {
            let reason = format!("{} must be at most {MAX_REPETITION_WINDOW}", self.repetition_window);
            return Err(Error::InvalidArgument { name: "repetition_window".into(), reason });
        }
        Ok(())
    }
}

fn invalid(name: &str, value: f32, rule: &str) -> Error {
    Error::InvalidArgument { name: name.to_string(), reason: format!("{value} {rule}") }
}

/// Index of the largest logit; the first one wins ties. `None` when empty.
/// NaN entries are never chosen (they compare false to everything).
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in logits.iter().enumerate() {
        // Strictly greater, so an equal later value does not replace the first.
        if !x.is_nan() && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i as u32)
}

/// Longest repetition window (tokens): the GPU keeps that much history per sequence.
pub const MAX_REPETITION_WINDOW: usize = 1024;

/// The uniform draw in [0, 1) for the token at `position` (tokens in the sequence before it)
/// of a generation seeded with `seed`: a counter-based generator, so a draw depends on the
/// seed and the position alone, not on how many draws came before or how decode steps were
/// grouped. Three rounds of the lowbias32 hash; 24 bits, exact in f32. shaders/sample.wgsl
/// computes the same value.
pub fn uniform_at(seed: u64, position: u64) -> f32 {
    fn mix(mut v: u32) -> u32 {
        v ^= v >> 16;
        v = v.wrapping_mul(0x7feb_352d);
        v ^= v >> 15;
        v = v.wrapping_mul(0x846c_a68b);
        v ^= v >> 16;
        v
    }
    let h = mix(mix(mix(((seed >> 32) as u32).wrapping_add(0x9e37_79b9)) ^ seed as u32).wrapping_add(position as u32));
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// The CPU sampler: the reference for shaders/sample.wgsl, which generation runs (same rules,
/// f32 where the GPU is f32), and the sampler of callers that hold a row of logits.
pub struct Sampler {
    params: SamplingParams,
    scratch: Scratch,
}

impl Sampler {
    /// Validates `params`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Self { params, scratch: Scratch::default() })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the token at `position` (tokens in the sequence before it) from one row of
    /// logits. `recent` holds the token ids seen so far (prompt + generated); the repetition
    /// penalty uses the last `repetition_window` of them. Ids outside the vocabulary are
    /// ignored.
    pub fn sample(&mut self, logits: &[f32], recent: &[u32], position: u64) -> Result<u32> {
        self.sample_with(logits, recent, uniform_at(self.params.seed, position) as f64)
    }

    /// `sample` with the uniform number `u` in [0, 1) given.
    pub fn sample_with(&mut self, logits: &[f32], recent: &[u32], u: f64) -> Result<u32> {
        let candidates = self.scratch.filter(&self.params, logits, recent)?;
        Ok(draw(candidates, u))
    }

    /// The tokens that survive every filter with their renormalized probabilities, in id
    /// order (the order of the draw). With temperature 0 this is the argmax alone with
    /// probability 1.
    pub fn candidate_probs(&self, logits: &[f32], recent: &[u32]) -> Result<Vec<(u32, f32)>> {
        let mut scratch = Scratch::default();
        Ok(scratch.filter(&self.params, logits, recent)?.to_vec())
    }
}

/// Buffers reused from one token to the next, so sampling does not allocate
/// two vocabulary-sized vectors per generated token.
#[derive(Default)]
struct Scratch {
    /// The logits after the repetition penalty.
    logits: Vec<f32>,
    /// Surviving (token id, score, later probability) pairs.
    candidates: Vec<(u32, f32)>,
}

impl Scratch {
    /// Runs the whole filter chain and returns the survivors with their normalized
    /// probabilities, in id order.
    fn filter(&mut self, params: &SamplingParams, logits: &[f32], recent: &[u32]) -> Result<&[(u32, f32)]> {
        check_scores(logits.iter().copied().enumerate().map(|(i, x)| (i as u32, x)))?;
        let work = &mut self.logits;
        work.clear();
        work.extend_from_slice(logits);
        let (penalty, window) = (params.repetition_penalty, params.repetition_window);
        apply_repetition_penalty(work, recent, penalty, window);

        let out = &mut self.candidates;
        out.clear();
        if params.temperature == 0.0 {
            // check_scores guarantees a finite entry, so argmax finds one.
            let best = argmax(work).ok_or_else(|| no_finite_logit(logits.len()))?;
            out.push((best, 1.0));
            return Ok(out);
        }
        out.extend(work.iter().enumerate().map(|(i, &x)| (i as u32, x)));
        finish_chain(params, out);
        Ok(out)
    }
}

/// The chain after the penalty, on (id, logit) pairs: top-k -> temperature -> softmax ->
/// top-p -> min-p -> renormalize, the survivors left in id order for the draw. Entries tied
/// with the last one a filter keeps are kept too (as Hugging Face's top-k does): a filter is a
/// threshold on the score, which is how the GPU applies it.
fn finish_chain(params: &SamplingParams, out: &mut Vec<(u32, f32)>) {
    apply_top_k(out, params.top_k);
    scale(out, params.temperature);
    softmax_in_place(out);
    if params.top_p < 1.0 {
        apply_top_p(out, params.top_p);
    }
    if params.min_p > 0.0 {
        apply_min_p(out, params.min_p);
    }
    normalize(out);
    out.sort_unstable_by_key(|c| c.0);
}

/// Rejects rows the math below cannot handle: empty, NaN, +inf (softmax would
/// produce NaN), or nothing but -inf (no token is possible). Takes (token id,
/// logit) pairs: a whole row, or the GPU's candidates.
fn check_scores(scores: impl Iterator<Item = (u32, f32)> + Clone) -> Result<()> {
    let len = scores.clone().count();
    if len == 0 {
        return Err(Error::InvalidArgument { name: "logits".into(), reason: "empty row".into() });
    }
    if let Some((id, x)) = scores.clone().find(|(_, x)| x.is_nan() || *x == f32::INFINITY) {
        let reason = format!("entry {id} is {x} (the model output is broken)");
        return Err(Error::InvalidArgument { name: "logits".into(), reason });
    }
    if !scores.clone().any(|(_, x)| x.is_finite()) {
        return Err(no_finite_logit(len));
    }
    Ok(())
}

fn no_finite_logit(len: usize) -> Error {
    let reason = format!("all {len} entries are -inf, no token can be chosen");
    Error::InvalidArgument { name: "logits".into(), reason }
}

/// Turns each logit into `(logit - max) / temperature`. Shifting by the maximum
/// before dividing keeps a tiny temperature from overflowing to +inf (which
/// would turn the softmax into NaN); -inf logits (masked tokens) are dropped.
fn scale(cands: &mut Vec<(u32, f32)>, temperature: f32) {
    let max = cands.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    cands.retain(|c| c.1 != f32::NEG_INFINITY);
    for c in cands.iter_mut() {
        c.1 = (c.1 - max) / temperature;
    }
}

/// Penalizes each distinct token of the window once (like HF and llama.cpp),
/// however often it occurs there. Positive logits are multiplied by 1 / penalty
/// (within an ulp of HF's division), exactly as shaders/sample.wgsl does.
fn apply_repetition_penalty(logits: &mut [f32], recent: &[u32], penalty: f32, window: usize) {
    if penalty == 1.0 {
        return;
    }
    let inverse = 1.0 / penalty;
    for id in penalized_ids(recent, window) {
        if let Some(x) = logits.get_mut(id as usize) {
            // Dividing a negative logit would raise it, so those are multiplied.
            *x = if *x > 0.0 { *x * inverse } else { *x * penalty };
        }
    }
}

/// The distinct ids among the last `window` of `recent`, ascending.
fn penalized_ids(recent: &[u32], window: usize) -> Vec<u32> {
    let mut seen: Vec<u32> = recent[recent.len().saturating_sub(window)..].to_vec();
    seen.sort_unstable();
    seen.dedup();
    seen
}

/// Highest score first; equal scores by lower id, so results are reproducible.
fn descending(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Keeps the `k` highest scores. A partial selection avoids sorting the whole
/// vocabulary (tens of thousands of entries) for a handful of survivors.
fn apply_top_k(cands: &mut Vec<(u32, f32)>, k: usize) {
    if k == 0 || k >= cands.len() {
        return;
    }
    let (_, kth, _) = cands.select_nth_unstable_by(k - 1, descending);
    let threshold = kth.1;
    cands.retain(|c| c.1 >= threshold);
}

/// Turns scores into probabilities. Subtracting the maximum first keeps
/// `exp` from overflowing. Tokens whose probability underflows to 0 can never
/// be drawn, so they stop being candidates.
fn softmax_in_place(cands: &mut Vec<(u32, f32)>) {
    let max = cands.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    for c in cands.iter_mut() {
        c.1 = (c.1 - max).exp();
    }
    cands.retain(|c| c.1 > 0.0);
    normalize(cands);
}

fn normalize(cands: &mut [(u32, f32)]) {
    let sum: f64 = cands.iter().map(|c| c.1 as f64).sum();
    if sum > 0.0 {
        for c in cands.iter_mut() {
            c.1 = (c.1 as f64 / sum) as f32;
        }
    }
}

/// Keeps the smallest set of the most probable tokens whose sum reaches `p`
/// (and the tokens tied with its least probable one), never less than one token. The small tolerance
/// stops float rounding from pulling in one extra token when the sum lands
/// exactly on `p` (0.5 + 0.3 computed in f32 can come out as 0.79999995).
fn apply_top_p(cands: &mut Vec<(u32, f32)>, p: f32) {
    const TOLERANCE: f64 = 1e-6;
    cands.sort_unstable_by(descending);
    let mut cumulative = 0.0f64;
    let mut keep = cands.len();
    for (i, c) in cands.iter().enumerate() {
        cumulative += c.1 as f64;
        if cumulative + TOLERANCE >= p as f64 {
            keep = i + 1;
            break;
        }
    }
    // Entries tied with the last kept one stay.
    let last = cands[keep.max(1) - 1].1;
    cands.retain(|c| c.1 >= last);
}

/// Drops tokens less likely than `min_p` times the most likely one. The most
/// likely token always passes since `min_p <= 1`.
fn apply_min_p(cands: &mut Vec<(u32, f32)>, min_p: f32) {
    let max = cands.iter().map(|c| c.1).fold(0.0f32, f32::max);
    let threshold = min_p * max;
    cands.retain(|c| c.1 >= threshold);
}

/// Inverse-CDF draw: walks the probabilities until their running sum passes
/// `u` in [0, 1). Falls back to the last candidate if rounding leaves the
/// total just under `u`. Callers guarantee `cands` is not empty.
fn draw(cands: &[(u32, f32)], u: f64) -> u32 {
    let mut cumulative = 0.0f64;
    for c in cands {
        cumulative += c.1 as f64;
        if u < cumulative {
            return c.0;
        }
    }
    cands.last().map_or(0, |c| c.0)
}

#[cfg(test)]
mod tests;
