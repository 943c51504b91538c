//! Decode speed as generation runs it: one-token steps sampled on the GPU with the default
//! options, `steps` of them per submit (each feeding the token the last one sampled), timed
//! with the dispatches each token costs. Shared by `mamba-wgpu bench` and the browser page's
//! benchmark mode, so both measure the same thing.

use bytemuck::{Pod, Zeroable};

use super::kernels::BenchKernel;
use crate::error::{Error, Result};
use crate::generate::now_seconds;
use crate::gpu::readback::Staging;
use crate::gpu::tensor::storage;
use crate::gpu::{GpuContext, Tape};
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

/// What every step pays whatever its work, on this adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FixedCosts {
    /// A submit with no work, then a 4-byte readback awaited: the round trip each submit adds.
    pub round_trip_ms: f64,
    /// One more dependent dispatch of a kernel that does nothing but one store.
    pub empty_dispatch_ms: f64,
}

/// shaders/bench/empty.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct EmptyParams {
    pub n: u32,
    pub _pad: [u32; 3],
}

/// The round trip of a submit and the cost of an empty dispatch (64 workgroups, as a real
/// kernel has many: a CPU device hands them to its worker threads): the best of 3 rounds of
/// `SUBMITS` submits of 0 and of `DISPATCHES` dependent dispatches, each read back and awaited
/// (several per round, so a coarse clock still resolves them).
pub async fn fixed_costs(ctx: &GpuContext) -> Result<FixedCosts> {
    const DISPATCHES: usize = 32;
    const SUBMITS: usize = 8;
    let out = storage(ctx, "empty dispatch output", 4);
    let staging = Staging::new(ctx, "empty dispatch readback", 4);
    let mut tapes = [Tape::new(ctx, "no dispatch", 1), Tape::new(ctx, "empty dispatches", DISPATCHES)];
    let mut best = [f64::INFINITY; 2];
    for _ in 0..3 {
        for (i, tape) in tapes.iter_mut().enumerate() {
            // Recorded before the clock starts, as a decode step's commands are.
            let mut commands = Vec::with_capacity(SUBMITS);
            for _ in 0..SUBMITS {
                let mut rec = tape.record(ctx);
                for n in 0..i * DISPATCHES {
                    rec.dispatch(BenchKernel::Empty, &EmptyParams { n: n as u32, _pad: [0; 3] }, &[&out], [64, 1, 1])?;
                }
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                rec.encode(&mut encoder);
                encoder.copy_buffer_to_buffer(&out, 0, &staging.buffer, 0, 4);
                commands.push(encoder.finish());
            }
            let start = now_seconds();
            for command in commands {
                ctx.queue.submit([command]);
                staging.read(ctx, 4).await?;
            }
            best[i] = best[i].min((now_seconds() - start) / SUBMITS as f64);
        }
    }
    Ok(FixedCosts { round_trip_ms: best[0] * 1e3, empty_dispatch_ms: (best[1] - best[0]).max(0.0) / DISPATCHES as f64 * 1e3 })
}
