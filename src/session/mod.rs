//! A `Session` runs a model over `batch` sequences of equal length: prefill a prompt, step one
//! token at a time, reset, and snapshot / restore the recurrent state (Mamba's whole "prompt
//! cache" is that small fixed-size state).
//!
//! Weights, state and scratch are allocated when the session is created; a step only writes the
//! token ids, replays a recorded tape, submits once and reads back what the caller asked for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::kernels::{MATVEC_MAX_M, SSD_CHUNK};
use crate::gpu::readback::{read_buffers, Staging};
use crate::gpu::tensor::{storage, TensorView};
use crate::gpu::{GpuContext, Tape};
use crate::model::forward::{record_forward, LogitsOut, Scratch, StateBuffers};
use crate::model::weights::SsmWeights;
use crate::model::Model;
use crate::ops::argmax::argmax;
use crate::ops::sample::{sample, SamplerBuffers};

/// Tokens per sequence in one prefill submit, unless the device's limits demand fewer.
pub const DEFAULT_PREFILL_CHUNK: usize = 512;

/// What a run reads back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Readback {
    Nothing,
    LastLogits,
    /// argmax of the last logits, computed on the GPU
    LastIds,
    AllLogits,
    /// The tokens sampled on the GPU (shaders/sample.wgsl): a forward pass and a sampling step,
    /// repeated this many times for one-token runs (each step feeding the last one's tokens)
    Sampled(u8),
}

/// Tapes differ in their kernel sequence: one-token steps use the decode kernels, runs of at
/// most 8 rows the matrix-vector product (a pipeline per row count), longer ones the tiled
/// matmul and chunked scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TapeKey {
    t_is_one: bool,
    /// The row count when it is at most 8 (matvec), else 0.
    matvec_rows: usize,
    readback: Readback,
}

mod sampled;

impl TapeKey {
    /// The key of a run of `t` tokens per sequence, `rows` in all, reading back `readback`.
    fn new(t: usize, rows: usize, readback: Readback) -> Self {
        TapeKey { t_is_one: t == 1, matvec_rows: if rows <= MATVEC_MAX_M as usize { rows } else { 0 }, readback }
    }
}

pub struct Session {
    model: Arc<Model>,
    batch: usize,
    chunk: usize,
    state: StateBuffers,
    scratch: Scratch,
    tapes: HashMap<TapeKey, Tape>,
    staging: Staging,
    /// (batch * chunk, vocab), created on the first request for every position's logits.
    all_logits: Option<(wgpu::Buffer, Staging)>,
    /// Tokens consumed per sequence since the last reset.
    position: u64,
    /// The commands of the next one-token run, recorded while the GPU ran the last one.
    next_step: Option<(TapeKey, wgpu::CommandBuffer)>,
    /// Set by the caller (e.g. on Ctrl-C) to stop a prefill between chunks.
    interrupt: Option<Arc<AtomicBool>>,
    /// The GPU sampler's buffers and the readback of its tokens, made by `set_sampling`.
    sampling: Option<(SamplerBuffers, Staging)>,
    /// The state and position before the last multi-step decode run, for `rollback`.
    checkpoint: Option<(StateBuffers, u64)>,
    /// Whether `checkpoint` holds the state before the last decode run.
    checkpoint_valid: bool,
}

impl Session {
    pub fn new(model: Arc<Model>, batch: usize) -> Result<Self> {
        Self::with_chunk(model, batch, DEFAULT_PREFILL_CHUNK)
    }

    /// A session whose prefill submits at most `chunk` tokens per sequence at a time.
    pub fn with_chunk(model: Arc<Model>, batch: usize, chunk: usize) -> Result<Self> {
        if batch == 0 {
            return Err(Error::invalid("batch", "must be at least 1"));
        }
        if chunk == 0 {
            return Err(Error::invalid("chunk", "must be at least 1"));
        }
        let ctx = model.ctx.clone();
        let chunk = chunk.min(max_chunk(&ctx, &model, batch)?);
        let state = StateBuffers::new(&ctx, &model, batch);
        let scratch = Scratch::new(&ctx, &model, batch, batch * chunk);
        let staging = Staging::new(&ctx, "logits readback", (batch * model.config.vocab_size * 4) as u64);
        Ok(Session {
            model,
            batch,
            chunk,
            state,
            scratch,
            tapes: HashMap::new(),
            staging,
            all_logits: None,
            position: 0,
            next_step: None,
            interrupt: None,
            sampling: None,
            checkpoint: None,
            checkpoint_valid: false,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    pub fn batch(&self) -> usize {
        self.batch
    }
    pub fn prefill_chunk(&self) -> usize {
        self.chunk
    }
    /// A flag that, once set, stops a prefill before its next chunk with Error::Interrupted
    /// (the chunks already consumed stay in the state and count in `position`).
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    /// Tokens per sequence consumed since creation or the last reset.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// GPU bytes this session owns beyond the weights: state, then scratch (and what was made
    /// on first use: the all-logits buffer, the sampler's buffers, the state's checkpoint).
    pub fn memory_bytes(&self) -> (u64, u64) {
        let all_logits = self.all_logits.as_ref().map_or(0, |(b, _)| b.size());
        let sampler = self.sampling.as_ref().map_or(0, |(b, _)| [&b.scores, &b.sequences, &b.history, &b.out].iter().map(|x| x.size()).sum());
        let checkpoint = self.checkpoint.as_ref().map_or(0, |(state, _)| state.size_bytes());
        (self.state.size_bytes(), self.scratch.size_bytes() + all_logits + sampler + checkpoint)
    }

    /// Consumes a prompt per sequence (all the same length) and returns the last position's
    /// logits, (batch, vocab) row-major.
    pub async fn prefill(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<f32>> {
        let bytes = self.consume(prompts, Readback::LastLogits).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Like `prefill`, but returns the logits of every position, (batch, t, vocab).
    pub async fn prefill_all_logits(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<f32>> {
        let bytes = self.consume(prompts, Readback::AllLogits).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Feeds the prompts into the state and reads nothing back (what the next token would be
    /// is not asked for).
    pub async fn feed(&mut self, prompts: &[Vec<u32>]) -> Result<()> {
        self.consume(prompts, Readback::Nothing).await.map(drop)
    }

    /// Like `prefill`, but returns only the greedy next token of each sequence (argmax on the GPU).
    pub async fn prefill_greedy(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<u32>> {
        let bytes = self.consume(prompts, Readback::LastIds).await?;
        bytemuck::pod_collect_to_vec::<u8, u32>(&bytes).into_iter().map(checked_argmax).collect()
    }

    /// Feeds one token per sequence; returns the logits (batch, vocab).
    pub async fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.prefill(&self.one_per_sequence(tokens)?).await
    }

    /// Feeds one token per sequence; returns the greedy next token of each (argmax on the GPU).
    pub async fn step_greedy(&mut self, tokens: &[u32]) -> Result<Vec<u32>> {
        self.prefill_greedy(&self.one_per_sequence(tokens)?).await
    }

    /// Zeroes the recurrent state: the next prefill starts a fresh sequence.
    pub fn reset(&mut self) {
        let mut encoder = self.model.ctx.device.create_command_encoder(&Default::default());
        for buffer in self.state.conv.iter().chain(&self.state.ssm) {
            encoder.clear_buffer(buffer, 0, None);
        }
        self.model.ctx.queue.submit([encoder.finish()]);
        self.position = 0;
        self.checkpoint_valid = false;
    }

    /// Copies the recurrent state of sequence `from` of `source` (a session of the same model)
    /// into sequence `to` of this one, on the GPU: a batched decode takes in a sequence that was
    /// prefilled alone, and hands it back to be saved.
    pub fn copy_sequence(&mut self, to: usize, source: &Session, from: usize) -> Result<()> {
        if !Arc::ptr_eq(&self.model, &source.model) || to >= self.batch || from >= source.batch {
            return Err(Error::invalid(
                "copy_sequence",
                format!("sequence {from} of {} into {to} of {} of the same model", source.batch, self.batch),
            ));
        }
        let c = &self.model.config;
        let conv = (c.conv_channels() * c.d_conv * 4) as u64;
        let ssm = (c.d_inner * c.d_state * 4) as u64;
        let mut encoder = self.model.ctx.device.create_command_encoder(&Default::default());
        for layer in 0..c.n_layer {
            let (src, dst) = (&source.state, &self.state);
            encoder.copy_buffer_to_buffer(&src.conv[layer], from as u64 * conv, &dst.conv[layer], to as u64 * conv, conv);
            encoder.copy_buffer_to_buffer(&src.ssm[layer], from as u64 * ssm, &dst.ssm[layer], to as u64 * ssm, ssm);
        }
        self.model.ctx.queue.submit([encoder.finish()]);
        Ok(())
    }

    fn one_per_sequence(&self, tokens: &[u32]) -> Result<Vec<Vec<u32>>> {
        if tokens.len() != self.batch {
            return Err(Error::invalid("tokens", format!("{} tokens for a batch of {}", tokens.len(), self.batch)));
        }
        Ok(tokens.iter().map(|&t| vec![t]).collect())
    }

    fn validate(&self, prompts: &[Vec<u32>]) -> Result<usize> {
        if prompts.len() != self.batch {
            return Err(Error::invalid("prompt", format!("{} sequences for a session of batch {}", prompts.len(), self.batch)));
        }
        let len = prompts[0].len();
        if len == 0 {
            return Err(Error::invalid("prompt", "is empty: give at least one token id"));
        }
        if let Some(i) = prompts.iter().position(|p| p.len() != len) {
            return Err(Error::invalid(
                "prompt",
                format!("sequence {i} has {} tokens, sequence 0 has {len}; a batch needs equal lengths", prompts[i].len()),
            ));
        }
        let vocab = self.model.config.vocab_size;
        for (i, p) in prompts.iter().enumerate() {
            if let Some(&bad) = p.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::invalid("token id", format!("{bad} in sequence {i} is outside the vocabulary (size {vocab})")));
            }
        }
        Ok(len)
    }

    /// Runs the prompts through the model chunk by chunk; reads back per `want` after the last.
    async fn consume(&mut self, prompts: &[Vec<u32>], want: Readback) -> Result<Vec<u8>> {
        let len = self.validate(prompts)?;
        // Every position's logits must fit one storage binding: fewer tokens per submit then.
        let chunk = match want {
            Readback::AllLogits => self.all_logits_chunk(),
            _ => self.chunk,
        };
        // Each chunk's readback: every position's logits come back (batch, t) chunk by chunk
        // and are put in (batch, len) order below.
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < len {
            if start > 0 && self.interrupt.as_ref().is_some_and(|flag| flag.load(Ordering::SeqCst)) {
                self.position += start as u64;
                return Err(Error::Interrupted);
            }
            let t = chunk.min(len - start);
            let last = start + t == len;
            let readback = match want {
                Readback::AllLogits => Readback::AllLogits,
                _ if last => want,
                _ => Readback::Nothing,
            };
            // ids laid out (batch, t)
            let ids: Vec<u32> = prompts.iter().flat_map(|p| p[start..start + t].iter().copied()).collect();
            chunks.push(self.run(&ids, t, readback).await?);
            start += t;
        }
        self.position += len as u64;
        if want != Readback::AllLogits {
            return Ok(chunks.pop().unwrap_or_default());
        }
        Ok(sequence_major(chunks, self.batch))
    }

    /// One submit: upload ids, replay the tape for (t, readback), read back.
    async fn run(&mut self, ids: &[u32], t: usize, readback: Readback) -> Result<Vec<u8>> {
        let ctx = self.model.ctx.clone();
        let rows = ids.len();
        let key = TapeKey::new(t, rows, readback);
        let commands = match self.next_step.take() {
            Some((prepared, commands)) if prepared == key => commands,
            _ => self.record(key, t, rows)?,
        };
        ctx.queue.write_buffer(&self.scratch.ids, 0, bytemuck::cast_slice(ids));
        ctx.queue.submit([commands]);
        // Decode repeats this run with other ids: record the next step now, while the GPU runs
        // this one, so that the CPU's recording (about 5 us per dispatch) is off the critical
        // path. The ids stay in a buffer, written before each submit, so the commands hold.
        // This run's result is valid whatever happens here: a failed recording is left to the
        // next run, which then records its own commands and reports the error.
        if t == 1 {
            self.next_step = self.record(key, t, rows).ok().map(|commands| (key, commands));
        }
        match self.readback_copy(readback, rows)? {
            Some((_, staging, bytes)) => staging.read(&ctx, bytes).await,
            None => Ok(Vec::new()),
        }
    }

    /// The commands of one run: the tape for (t, readback), then the copy of what comes back.
    fn record(&mut self, key: TapeKey, t: usize, rows: usize) -> Result<wgpu::CommandBuffer> {
        let ctx = self.model.ctx.clone();
        let (batch, vocab, readback) = (self.batch, self.model.config.vocab_size, key.readback);
        if readback == Readback::AllLogits && self.all_logits.is_none() {
            let elements = self.batch * self.all_logits_chunk() * vocab;
            let buffer = storage(&ctx, "all_logits", elements);
            self.all_logits = Some((buffer, Staging::new(&ctx, "all logits readback", (elements * 4) as u64)));
        }
        let steps = match readback {
            Readback::Sampled(steps) => steps as usize,
            _ => 1,
        };
        let slots = (tape_slots(&self.model) + 1) * steps;
        let tape = self.tapes.entry(key).or_insert_with(|| Tape::new(&ctx, &format!("{key:?}"), slots));
        let mut rec = tape.record(&ctx);
        let logits_out = match (readback, &self.all_logits) {
            (Readback::Nothing, _) => LogitsOut::Skip,
            (Readback::LastLogits | Readback::LastIds | Readback::Sampled(_), _) => LogitsOut::Last,
            (Readback::AllLogits, Some((buffer, _))) => LogitsOut::All(buffer),
            (Readback::AllLogits, None) => return Err(Error::Gpu("all-logits buffer missing".into())),
        };
        for step in 0..steps {
            record_forward(&mut rec, &self.model, &self.scratch, &self.state, batch as u32, t as u32, logits_out)?;
            if let (Readback::Sampled(_), Some((buffers, _))) = (readback, &self.sampling) {
                let logits = TensorView::f32(&self.scratch.logits, batch as u32, vocab as u32);
                sample(&mut rec, buffers, logits, TensorView::u32(&self.scratch.ids, batch as u32, 1), step as u32)?;
            }
        }
        if readback == Readback::LastIds {
            argmax(
                &mut rec,
                TensorView::f32(&self.scratch.logits, batch as u32, vocab as u32),
                TensorView::u32(&self.scratch.next_ids, batch as u32, 1),
            )?;
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        rec.encode(&mut encoder);
        if let Some((source, staging, bytes)) = self.readback_copy(readback, rows)? {
            encoder.copy_buffer_to_buffer(source, 0, &staging.buffer, 0, bytes);
        }
        Ok(encoder.finish())
    }

    /// What a run of `rows` ids copies out for `readback`: (source, staging, bytes); None when
    /// nothing comes back.
    fn readback_copy(&self, readback: Readback, rows: usize) -> Result<Option<(&wgpu::Buffer, &Staging, u64)>> {
        let (batch, vocab) = (self.batch, self.model.config.vocab_size);
        Ok(match readback {
            Readback::Nothing => None,
            Readback::LastLogits => Some((&self.scratch.logits, &self.staging, batch * vocab * 4)),
            Readback::LastIds => Some((&self.scratch.next_ids, &self.staging, batch * 4)),
            Readback::Sampled(steps) => {
                let (buffers, staging) = self.sampling.as_ref().ok_or_else(|| Error::Gpu("sampler buffers missing".into()))?;
                Some((&buffers.out, staging, steps as usize * batch * 4))
            }
            Readback::AllLogits => {
                let (buffer, staging) = self.all_logits.as_ref().ok_or_else(|| Error::Gpu("all-logits buffer missing".into()))?;
                Some((buffer, staging, rows * vocab * 4))
            }
        }
        .map(|(source, staging, bytes)| (source, staging, bytes as u64)))
    }

    /// Tokens per sequence per submit when every position's logits come back.
    fn all_logits_chunk(&self) -> usize {
        let row_bytes = (self.batch * self.model.config.vocab_size * 4) as u64;
        self.chunk.min((self.model.ctx.max_binding_bytes / row_bytes) as usize).max(1)
    }

    /// The state as bytes: a header naming the model and shape, then every layer's conv and
    /// SSM state (f32 little endian, Hugging Face cache layouts).
    pub async fn snapshot(&self) -> Result<Vec<u8>> {
        let mut out = crate::snapshot::header(&self.model, self.batch, self.position);
        let buffers: Vec<&wgpu::Buffer> = self.state.conv.iter().chain(&self.state.ssm).collect();
        for bytes in read_buffers(&self.model.ctx, &buffers).await? {
            out.extend(bytes);
        }
        Ok(out)
    }

    /// The length of `snapshot`'s bytes for this session: a header, then the state.
    pub fn snapshot_len(&self) -> usize {
        crate::snapshot::HEADER_BYTES + self.state.size_bytes() as usize
    }

    /// Restores a state saved by `snapshot` from a session of the same model and batch.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let (position, body) = crate::snapshot::check_header(&self.model, self.batch, bytes)?;
        let expected: u64 = self.state.size_bytes();
        if body.len() as u64 != expected {
            return Err(Error::Snapshot { reason: format!("{} bytes of state, this model needs {expected}", body.len()) });
        }
        let mut offset = 0;
        for buffer in self.state.conv.iter().chain(&self.state.ssm) {
            let size = buffer.size() as usize;
            self.model.ctx.queue.write_buffer(buffer, 0, &body[offset..offset + size]);
            offset += size;
        }
        self.position = position;
        self.checkpoint_valid = false;
        Ok(())
    }

    /// Per layer (conv, ssm) state read back as f32, for tests and inspection.
    /// Conv state (batch, conv_channels, d_conv) and SSM state (batch, d_inner, d_state) per
    /// layer (Mamba-2's (batch, H, P, N) is the same memory).
    pub async fn read_state(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let c = &self.model.config;
        let (conv_len, ssm_len) = (self.batch * c.conv_channels() * c.d_conv, self.batch * c.d_inner * c.d_state);
        let buffers: Vec<&wgpu::Buffer> = self.state.conv.iter().chain(&self.state.ssm).collect();
        let bytes = read_buffers(&self.model.ctx, &buffers).await?;
        // Buffers are padded to 16 bytes: keep the state's own elements.
        let floats = |b: &[u8], n: usize| -> Vec<f32> { bytemuck::pod_collect_to_vec::<u8, f32>(b).into_iter().take(n).collect() };
        let (conv, ssm) = bytes.split_at(c.n_layer);
        Ok(conv.iter().zip(ssm).map(|(cb, sb)| (floats(cb, conv_len), floats(sb, ssm_len))).collect())
    }
}

/// An id from shaders/argmax.wgsl, or the error the sampler gives for the same row: the top
/// bit marks a NaN or +inf logit (a broken model output), all bits a row of -inf only.
fn checked_argmax(id: u32) -> Result<u32> {
    const BROKEN: u32 = 0x8000_0000;
    if id == u32::MAX {
        return Err(Error::invalid("logits", "every entry is -inf, no token can be chosen"));
    }
    if id & BROKEN != 0 {
        return Err(Error::invalid("logits", format!("entry {} is NaN or +inf (the model output is broken)", id & !BROKEN)));
    }
    Ok(id)
}

/// Concatenates per-chunk readbacks of every position, each laid out (batch, t, row), into
/// (batch, total t, row): sequence b's rows of every chunk, in order, then sequence b + 1's.
fn sequence_major(chunks: Vec<Vec<u8>>, batch: usize) -> Vec<u8> {
    let total: usize = chunks.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    for b in 0..batch {
        for bytes in &chunks {
            let per_sequence = bytes.len() / batch;
            out.extend_from_slice(&bytes[b * per_sequence..(b + 1) * per_sequence]);
        }
    }
    out
}

/// Upper bound of dispatches in one forward pass (a tape's slot count).
fn tape_slots(model: &Model) -> usize {
    let w = &model.weights;
    let per_layer: usize = w
        .layers
        .iter()
        .map(|l| {
            // norm, conv (2), the mixer norm (FalconMamba, Mamba-2) and the scan (Mamba-2: 3 passes)
            let rest = match &l.ssm {
                SsmWeights::Selective { x_proj, dt_proj, .. } => 2 + x_proj.parts.len() + dt_proj.parts.len(),
                SsmWeights::Ssd { .. } => 4,
            };
            4 + l.in_proj.parts.len() + rest + l.out_proj.parts.len()
        })
        .sum();
    w.embedding.parts.len() + per_layer + 2 + w.lm_head().parts.len() + 1
}

/// The largest chunk whose scratch buffers fit one storage binding and whose dispatches fit
/// the workgroup-count limit; an error when not even one token per sequence fits.
fn max_chunk(ctx: &GpuContext, model: &Model, batch: usize) -> Result<usize> {
    let c = &model.config;
    // One layer's state of the whole batch is one buffer.
    let state_bytes = (batch as u64).saturating_mul((c.d_inner * c.d_state).max(c.conv_channels() * c.d_conv) as u64 * 4);
    if state_bytes > ctx.max_binding_bytes {
        return Err(Error::Limit(format!(
            "a batch of {batch} sequences needs {state_bytes} bytes of state per layer, more than one storage binding of {} bytes on {}",
            ctx.max_binding_bytes, ctx.adapter.name
        )));
    }
    // The widest activation row, or the logits row of the whole batch, whichever is larger.
    let widest_row_bytes = 4 * c.in_proj_width().max(c.d_model).max(c.x_proj_width()) as u64;
    let by_binding = (ctx.max_binding_bytes / widest_row_bytes) as usize / batch;
    let logits_bytes = (batch as u64).saturating_mul(c.vocab_size as u64 * 4);
    if by_binding == 0 || logits_bytes > ctx.max_binding_bytes {
        return Err(Error::Limit(format!(
            "a batch of {batch} sequences does not fit one storage binding of {} bytes on {}",
            ctx.max_binding_bytes, ctx.adapter.name
        )));
    }
    // Row kernels (embedding, norms) dispatch one workgroup per token of the whole batch.
    let by_dispatch = ctx.limits.max_compute_workgroups_per_dimension as usize / batch;
    if by_dispatch == 0 {
        return Err(Error::Limit(format!("a batch of {batch} sequences needs more workgroups per dispatch than {} allows", ctx.adapter.name)));
    }
    // Mamba-2's chunked scan keeps every chunk's state, batch x (chunk / SSD_CHUNK + 1) of them,
    // in one buffer; a single token needs none (it takes the sequential scan).
    let by_chunk_states = match c.ssd {
        None => usize::MAX,
        Some(_) => {
            let per_chunk = (batch * c.d_inner * c.d_state * 4) as u64;
            ((ctx.max_binding_bytes / per_chunk) as usize).saturating_sub(1).saturating_mul(SSD_CHUNK as usize).max(1)
        }
    };
    Ok(by_binding.min(by_dispatch).min(by_chunk_states))
}
