//! Decode speed as generation runs it: one-token steps sampled on the GPU with the default
//! options, `steps` of them per submit (each feeding the token the last one sampled), timed
//! with the dispatches each token costs. Shared by `mamba-wgpu bench` and the browser page's
//! benchmark mode, so both measure the same thing.

use crate::error::{Error, Result};
use crate::generate::now_seconds;
use crate::ops::sample::SequenceSampling;
use crate::sampling::GENERATION_DEFAULTS;
use crate::Session;

/// Decode at one number of tokens per submit.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DecodeRate {
    pub tokens_per_submit: usize,
    /// Tokens of the whole batch per second.
    pub tokens_per_s: f64,
    /// Compute dispatches per decode step, the sampling step included.
    pub dispatches_per_token: f64,
}

/// Resets `session`, prefills `prompts` (one per sequence) and samples each sequence's first
/// token on the GPU, with no stop: what `time_decode` continues from.
pub async fn start_decode(session: &mut Session, prompts: &[Vec<u32>]) -> Result<Vec<u32>> {
    session.reset();
    let sequences: Vec<SequenceSampling> = prompts
        .iter()
        .map(|p| SequenceSampling { params: GENERATION_DEFAULTS, eos: Vec::new(), budget: usize::MAX, recent: p.clone(), position: p.len() as u64 })
        .collect();
    session.set_sampling(&sequences)?;
    let first = session.prefill_sample(prompts).await?;
    first.iter().map(|t| Ok(t.token()?.unwrap_or(0))).collect()
}

/// Times `submits` submits of `steps` decode steps each, continuing from the tokens in `next`
/// (updated to the last ones sampled).
pub async fn time_decode(session: &mut Session, steps: usize, submits: usize, next: &mut Vec<u32>) -> Result<DecodeRate> {
    let start = now_seconds();
    for _ in 0..submits {
        let rows = session.decode_sampled(next, steps).await?;
        let last = rows.last().ok_or_else(|| Error::Gpu("a decode run returned no tokens".into()))?;
        *next = last.iter().map(|t| Ok(t.token()?.unwrap_or(0))).collect::<Result<_>>()?;
    }
    let seconds = (now_seconds() - start).max(1e-9);
    Ok(DecodeRate {
        tokens_per_submit: steps,
        tokens_per_s: (submits * steps * session.batch()) as f64 / seconds,
        dispatches_per_token: session.sampled_step_dispatches(steps).unwrap_or(0) as f64 / steps as f64,
    })
}
