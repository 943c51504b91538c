//! Sampling on the GPU (shaders/sample.wgsl): one workgroup per sequence applies every filter of
//! src/sampling to its row of logits, draws with a counter-based generator and writes the token
//! where the next decode step reads its input, so a session can run several steps per submit.
//! `SamplerBuffers` owns what the kernel keeps per sequence: options and progress
//! (`SequenceState`), the token history the repetition penalty reads, the scores scratch and
//! the output rows.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::params::SampleParams;
use crate::gpu::tensor::{storage, ElementType, TensorView};
use crate::gpu::{GpuContext, Kernel, Recorder};
use crate::sampling::SamplingParams;

/// An output entry: the sequence had stopped (EOS or budget) before this step.
pub const NO_TOKEN: u32 = u32::MAX;
/// An output entry: the logits had NaN or +inf, or nothing but -inf.
pub const BROKEN_ROW: u32 = u32::MAX - 1;
/// Stop ids per sequence (`eos_token_id` lists are short).
pub const MAX_EOS_IDS: usize = 8;
/// History entries per sequence: the longest repetition window the GPU serves.
pub const HISTORY_CAPACITY: usize = crate::sampling::MAX_REPETITION_WINDOW;
/// Most decode steps one submit runs (rows of the output).
pub const MAX_STEPS: usize = 64;

/// What a sampling step gave one sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampled {
    Token(u32),
    /// The sequence had stopped (an EOS id or its budget) before this step.
    Stopped,
    /// Its logits had NaN or +inf, or nothing but -inf: the model output is broken.
    Broken,
}

impl Sampled {
    pub fn from_word(word: u32) -> Self {
        match word {
            NO_TOKEN => Sampled::Stopped,
            BROKEN_ROW => Sampled::Broken,
            id => Sampled::Token(id),
        }
    }

    /// The token; None where the sequence had stopped; an error for a broken row.
    pub fn token(self) -> Result<Option<u32>> {
        match self {
            Sampled::Token(id) => Ok(Some(id)),
            Sampled::Stopped => Ok(None),
            Sampled::Broken => Err(Error::invalid("logits", "an entry is NaN or +inf, or every entry is -inf (the model output is broken)")),
        }
    }
}

/// One sequence's options and progress, as shaders/sample.wgsl's `Sequence`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct SequenceState {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub penalty: f32,
    pub inv_penalty: f32,
    pub window: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub position: u32,
    pub hist_count: u32,
    pub budget: u32,
    pub done: u32,
    pub n_eos: u32,
    pub _pad: [u32; 2],
    pub eos: [u32; MAX_EOS_IDS],
}

/// What a sequence samples with: its options, stop ids, how many tokens it may sample, the
/// tokens it has seen (the repetition penalty's window is taken from their end) and its
/// position (tokens in the sequence so far: the generator's counter for the next draw).
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceSampling {
    pub params: SamplingParams,
    pub eos: Vec<u32>,
    pub budget: usize,
    pub recent: Vec<u32>,
    pub position: u64,
}

impl SequenceSampling {
    /// The kernel's state and the history to upload; checks the options and the stop ids.
    pub fn state(&self) -> Result<(SequenceState, Vec<u32>)> {
        let p = &self.params;
        p.validate()?;
        if self.eos.len() > MAX_EOS_IDS {
            return Err(Error::invalid("eos", format!("{} stop ids; the GPU sampler takes at most {MAX_EOS_IDS}", self.eos.len())));
        }
        let mut eos = [0; MAX_EOS_IDS];
        eos[..self.eos.len()].copy_from_slice(&self.eos);
        let window = p.repetition_window.min(HISTORY_CAPACITY);
        let recent = self.recent[self.recent.len().saturating_sub(window)..].to_vec();
        let state = SequenceState {
            temperature: p.temperature,
            top_k: p.top_k.min(u32::MAX as usize) as u32,
            top_p: p.top_p,
            min_p: p.min_p,
            penalty: if window == 0 { 1.0 } else { p.repetition_penalty },
            inv_penalty: 1.0 / p.repetition_penalty,
            window: window as u32,
            seed_lo: p.seed as u32,
            seed_hi: (p.seed >> 32) as u32,
            position: self.position as u32,
            hist_count: recent.len() as u32,
            budget: self.budget.min(u32::MAX as usize) as u32,
            done: (self.budget == 0) as u32,
            n_eos: self.eos.len() as u32,
            _pad: [0; 2],
            eos,
        };
        Ok((state, recent))
    }
}

/// The buffers of the sampling kernel for `batch` sequences over `vocab` logits.
pub struct SamplerBuffers {
    pub batch: usize,
    pub vocab: usize,
    pub scores: wgpu::Buffer,    // (batch, vocab) f32 scratch
    pub sequences: wgpu::Buffer, // (batch) SequenceState
    pub history: wgpu::Buffer,   // (batch, HISTORY_CAPACITY) u32 ring
    pub out: wgpu::Buffer,       // (MAX_STEPS, batch) u32
}

impl SamplerBuffers {
    pub fn new(ctx: &GpuContext, batch: usize, vocab: usize) -> Self {
        let words = std::mem::size_of::<SequenceState>() / 4;
        SamplerBuffers {
            batch,
            vocab,
            scores: storage(ctx, "sampler scores", batch * vocab),
            sequences: storage(ctx, "sampler sequences", batch * words),
            history: storage(ctx, "sampler history", batch * HISTORY_CAPACITY),
            out: storage(ctx, "sampled tokens", MAX_STEPS * batch),
        }
    }

    /// Uploads each sequence's options, progress and history (one per sequence of the batch).
    pub fn set(&self, ctx: &GpuContext, sequences: &[SequenceSampling]) -> Result<()> {
        if sequences.len() != self.batch {
            return Err(Error::invalid("sampling", format!("{} sequences' options for a batch of {}", sequences.len(), self.batch)));
        }
        let mut states = Vec::with_capacity(self.batch);
        let mut history = vec![0u32; self.batch * HISTORY_CAPACITY];
        for (b, sequence) in sequences.iter().enumerate() {
            let (state, recent) = sequence.state()?;
            history[b * HISTORY_CAPACITY..][..recent.len()].copy_from_slice(&recent);
            states.push(state);
        }
        ctx.queue.write_buffer(&self.sequences, 0, bytemuck::cast_slice(&states));
        ctx.queue.write_buffer(&self.history, 0, bytemuck::cast_slice(&history));
        Ok(())
    }

    /// Uploads sequence `index`'s options, progress and history alone (a batch whose
    /// sequences come and go).
    pub fn set_one(&self, ctx: &GpuContext, index: usize, sequence: &SequenceSampling) -> Result<()> {
        if index >= self.batch {
            return Err(Error::invalid("sampling", format!("sequence {index} of a batch of {}", self.batch)));
        }
        let (state, recent) = sequence.state()?;
        let mut history = vec![0u32; HISTORY_CAPACITY];
        history[..recent.len()].copy_from_slice(&recent);
        ctx.queue.write_buffer(&self.sequences, (index * std::mem::size_of::<SequenceState>()) as u64, bytemuck::bytes_of(&state));
        ctx.queue.write_buffer(&self.history, (index * HISTORY_CAPACITY * 4) as u64, bytemuck::cast_slice(&history));
        Ok(())
    }
}

/// Records one sampling step: row `step` of `buffers.out`, and the next step's input `ids`,
/// from `logits` (batch, vocab).
pub fn sample(rec: &mut Recorder, buffers: &SamplerBuffers, logits: TensorView, ids: TensorView, step: u32) -> Result<()> {
    let (batch, vocab) = (buffers.batch as u32, buffers.vocab as u32);
    logits.expect_dense("sample", "logits", ElementType::F32, batch, vocab)?;
    ids.expect_dense("sample", "ids", ElementType::U32, batch, 1)?;
    if step as usize >= MAX_STEPS {
        return Err(Error::invalid("sample", format!("step {step}: at most {MAX_STEPS} steps per submit")));
    }
    let params = SampleParams { vocab, batch, hist_cap: HISTORY_CAPACITY as u32, step };
    let buffers_in_order = [logits.buffer, &buffers.scores, &buffers.sequences, &buffers.history, ids.buffer, &buffers.out];
    rec.dispatch(Kernel::Sample, &params, &buffers_in_order, [batch, 1, 1])
}
