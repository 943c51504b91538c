//! Top-k sampling's candidates picked on the GPU (shaders/top_k.wgsl): the repetition penalty
//! and the selection run where the logits are, and a few KiB come back instead of the whole
//! vocabulary. `TopKReader` owns the buffers and reads one row per call; the sampler
//! (`Sampler::sample_candidates`) finishes the chain on the candidates.

use crate::error::{Error, Result};
use crate::gpu::params::TopKParams;
use crate::gpu::readback::{read_buffers, Staging};
use crate::gpu::tensor::{storage, ElementType, TensorView};
use crate::gpu::{GpuContext, Kernel, Recorder, Tape};

/// Largest k the GPU path serves; a larger top-k reads the whole row.
pub const TOP_K_MAX: usize = 256;
/// Candidate pairs the output holds: k plus room for entries tied with the k-th.
pub const CAPACITY: usize = 2 * TOP_K_MAX;

/// What the sampler asks of one row.
#[derive(Clone, Debug, PartialEq)]
pub struct TopKRequest {
    /// 1..=TOP_K_MAX
    pub k: usize,
    /// Distinct token ids that get the repetition penalty.
    pub penalized: Vec<u32>,
    /// The repetition penalty (> 0; 1 leaves the logits as they are).
    pub penalty: f32,
}

/// The candidates of a row, or the whole row when ties overflowed the candidate buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum TopKRow {
    /// (token id, logit after the penalty): every entry at least as large as the k-th largest,
    /// in no particular order.
    Candidates(Vec<(u32, f32)>),
    /// The raw logits (before the penalty).
    Logits(Vec<f32>),
}

/// The operands of shaders/top_k.wgsl for one row.
pub struct TopK<'a> {
    pub logits: TensorView<'a>, // (n) f32
    pub k: u32,
    pub penalized: TensorView<'a>, // (n_penalized) u32, distinct token ids
    pub penalty: f32,
    pub keys: TensorView<'a>, // (n) u32 scratch
    pub out: TensorView<'a>,  // (1 + 2 CAPACITY) u32: the count, then (id, value bits) pairs
}

/// Records the kernel; `out` receives the count of candidates, then the pairs.
pub fn top_k(rec: &mut Recorder, op: &TopK) -> Result<()> {
    let TopK { logits, k, penalized, penalty, keys, out } = *op;
    let (n, n_penalized) = (logits.cols, penalized.cols);
    if k == 0 || k > n || k as usize > TOP_K_MAX {
        return Err(Error::invalid("top_k", format!("k = {k}: must be in 1..={} and at most the vocabulary ({n})", TOP_K_MAX)));
    }
    if !(penalty.is_finite() && penalty > 0.0) {
        return Err(Error::invalid("repetition_penalty", format!("{penalty}: must be finite and > 0")));
    }
    logits.expect_dense("top_k", "logits", ElementType::F32, 1, n)?;
    penalized.expect_dense("top_k", "penalized", ElementType::U32, 1, n_penalized)?;
    keys.expect_dense("top_k", "keys", ElementType::U32, 1, n)?;
    out.expect_dense("top_k", "out", ElementType::U32, 1, 1 + 2 * CAPACITY as u32)?;
    let params = TopKParams { n, k, cap: CAPACITY as u32, n_penalized, penalty, inv_penalty: 1.0 / penalty, _pad: [0; 2] };
    rec.dispatch(Kernel::TopK, &params, &[logits.buffer, penalized.buffer, keys.buffer, out.buffer], [1, 1, 1])
}

/// Buffers for picking the candidates of one row of `vocab` logits, reused call after call.
pub struct TopKReader {
    vocab: usize,
    penalized: wgpu::Buffer,
    keys: wgpu::Buffer,
    out: wgpu::Buffer,
    staging: Staging,
    tape: Tape,
}

impl TopKReader {
    pub fn new(ctx: &GpuContext, vocab: usize) -> Self {
        let out_bytes = (1 + 2 * CAPACITY) as u64 * 4;
        TopKReader {
            vocab,
            penalized: storage(ctx, "top-k penalized ids", vocab),
            keys: storage(ctx, "top-k keys", vocab),
            out: storage(ctx, "top-k candidates", 1 + 2 * CAPACITY),
            staging: Staging::new(ctx, "top-k readback", out_bytes),
            tape: Tape::new(ctx, "top-k", 1),
        }
    }

    /// The candidates of the first `vocab` entries of `logits` (row 0, written by work already
    /// submitted to the queue). A k above the vocabulary counts as the whole vocabulary.
    pub async fn read(&mut self, ctx: &GpuContext, logits: &wgpu::Buffer, request: &TopKRequest) -> Result<TopKRow> {
        let n_penalized = request.penalized.len();
        if n_penalized > self.vocab {
            return Err(Error::invalid("top_k", format!("{n_penalized} penalized ids for a vocabulary of {}", self.vocab)));
        }
        if !request.penalized.is_empty() {
            ctx.queue.write_buffer(&self.penalized, 0, bytemuck::cast_slice(&request.penalized));
        }
        let mut rec = self.tape.record(ctx);
        let op = TopK {
            logits: TensorView::vector(logits, self.vocab as u32),
            k: request.k.min(self.vocab) as u32,
            penalized: TensorView::u32(&self.penalized, 1, n_penalized as u32),
            penalty: request.penalty,
            keys: TensorView::u32(&self.keys, 1, self.vocab as u32),
            out: TensorView::u32(&self.out, 1, 1 + 2 * CAPACITY as u32),
        };
        top_k(&mut rec, &op)?;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        rec.encode(&mut encoder);
        encoder.copy_buffer_to_buffer(&self.out, 0, &self.staging.buffer, 0, self.out.size().min(self.staging.buffer.size()));
        ctx.queue.submit([encoder.finish()]);
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&self.staging.read(ctx, self.staging.buffer.size()).await?);
        let count = words[0] as usize;
        if count > CAPACITY {
            // More entries tie with the k-th than the buffer holds: the whole row instead.
            let bytes = read_buffers(ctx, &[logits]).await?.remove(0);
            let row: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
            return Ok(TopKRow::Logits(row[..self.vocab].to_vec()));
        }
        Ok(TopKRow::Candidates(words[1..1 + 2 * count].chunks(2).map(|pair| (pair[0], f32::from_bits(pair[1]))).collect()))
    }
}
