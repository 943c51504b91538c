//! Uploading a checkpoint's tensors to the GPU, one tensor at a time.

use std::collections::HashMap;
use std::sync::Arc;

use super::checkpoint::{StoredDtype, TensorBytes, TensorSource};
use super::config::MambaConfig;
use super::weight_mix::{MatrixRole, WeightMix};
use super::weights::{load_weights, ModelWeights, SsmWeights, TensorSink};
use crate::error::Result;
use crate::gpu::kernels::{SCAN_MAX_STATE, SSD_MAX_STATE};
use crate::gpu::tensor::{upload_f32, WeightData};
use crate::gpu::{GpuContext, GpuWeight, WeightDtype};
use crate::quant;

pub type GpuWeights = ModelWeights<GpuWeight, wgpu::Buffer>;

#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Storage of the big matrices. None keeps the checkpoint's: f32 stays f32, f16 stays f16,
    /// bf16 becomes f16 (same exponent range for weights, more mantissa), GGUF blocks stay
    /// blocks. A block format quantizes on the CPU as each matrix is uploaded, with
    /// llama.cpp's choices for the output matrix and for rows that are not whole blocks
    /// (weight_mix.rs).
    pub weight_dtype: Option<WeightDtype>,
    /// With `weight_dtype`: the output matrix's storage (the LM head, or the embedding tied to
    /// it); None: llama.cpp's choice.
    pub output_dtype: Option<WeightDtype>,
}

pub struct Model {
    pub ctx: Arc<GpuContext>,
    pub config: MambaConfig,
    pub weights: GpuWeights,
    pub weight_dtype: WeightDtype,
    /// Identifies the model in state snapshots: a hash of the config and of a few weights.
    pub fingerprint: u64,
    /// Where it was loaded from.
    pub source: String,
}

/// Uploads each tensor as it is read and reports progress (bytes of tensor data done).
struct GpuSink<'a> {
    ctx: &'a GpuContext,
    mix: Option<WeightMix>,
    /// Matrices already on the GPU, by tensor name (Model::load_uploaded).
    uploaded: HashMap<String, GpuWeight>,
    chosen: Option<WeightDtype>,
    hasher: Fnv,
    progress: &'a mut dyn FnMut(u64),
    done: u64,
}

impl TensorSink for GpuSink<'_> {
    type Matrix = GpuWeight;
    type Vector = wgpu::Buffer;

    fn matrix(&mut self, t: TensorBytes<'_>, role: MatrixRole) -> Result<GpuWeight> {
        self.upload_matrix(&t, role)
    }

    fn vector_mapped(&mut self, t: TensorBytes<'_>, map: fn(f32) -> f32) -> Result<wgpu::Buffer> {
        let values = t.to_f32();
        self.hasher.write(t.name.as_bytes());
        self.hasher.write(bytemuck::cast_slice(&values));
        let values: Vec<f32> = values.into_iter().map(map).collect();
        let buffer = upload_f32(self.ctx, t.name, &values);
        self.advance(&t);
        Ok(buffer)
    }
}

impl GpuSink<'_> {
    /// The storage of matrix `t`: the mix asked for, else the checkpoint's (bf16 becomes f16).
    fn storage_of(&self, t: &TensorBytes<'_>, role: MatrixRole, cols: usize) -> WeightDtype {
        match self.mix {
            Some(mix) => mix.storage(role, cols),
            None => stored_storage(t.dtype),
        }
    }

    /// Uploads matrix `t` as a weight (or takes it from `uploaded`). The first mixer matrix's
    /// storage is the model's `weight_dtype`.
    fn upload_matrix(&mut self, t: &TensorBytes<'_>, role: MatrixRole) -> Result<GpuWeight> {
        let (rows, cols) = (t.shape[0], t.shape[1..].iter().product::<usize>());
        let weight = match self.uploaded.remove(t.name) {
            Some(w) if (w.rows as usize, w.cols as usize) == (rows, cols) => w,
            Some(w) => {
                return Err(crate::Error::tensor(t.name, format!("was uploaded as ({}, {}), the model needs ({rows}, {cols})", w.rows, w.cols)))
            }
            None => upload_matrix_as(self.ctx, t, self.storage_of(t, role, cols))?,
        };
        if role == MatrixRole::Mixer {
            self.chosen.get_or_insert(weight.dtype);
        }
        self.advance(t);
        Ok(weight)
    }

    fn advance(&mut self, t: &TensorBytes<'_>) {
        self.done += t.bytes.len() as u64;
        (self.progress)(self.done);
    }
}

/// Matrix `t` uploaded in storage `dtype` (converted, or quantized on the CPU, where `t` is
/// stored otherwise).
pub fn upload_matrix_as(ctx: &GpuContext, t: &TensorBytes<'_>, dtype: WeightDtype) -> Result<GpuWeight> {
    let (rows, cols) = (t.shape[0], t.shape[1..].iter().product());
    match dtype {
        WeightDtype::F32 => GpuWeight::upload(ctx, t.name, rows, cols, WeightData::F32(&t.to_f32())),
        WeightDtype::F16 => GpuWeight::upload(ctx, t.name, rows, cols, WeightData::F16(&t.to_f16_bits())),
        WeightDtype::Block(f) if t.dtype == StoredDtype::Block(f) => GpuWeight::upload(ctx, t.name, rows, cols, WeightData::Blocks(f, &t.bytes)),
        WeightDtype::Block(f) => GpuWeight::upload(ctx, t.name, rows, cols, WeightData::Blocks(f, &quant::quantize(f, &t.to_f32()))),
    }
}

/// The storage a matrix stored as `dtype` keeps when no other is asked for: bf16 becomes f16.
pub fn stored_storage(dtype: StoredDtype) -> WeightDtype {
    match dtype {
        StoredDtype::F32 => WeightDtype::F32,
        StoredDtype::F16 | StoredDtype::BF16 => WeightDtype::F16,
        StoredDtype::Block(f) => WeightDtype::Block(f),
    }
}

impl Model {
    /// Uploads every tensor of `ckpt`. `progress` receives the bytes of tensor data done so far.
    pub fn load(ctx: Arc<GpuContext>, ckpt: &impl TensorSource, options: LoadOptions, progress: &mut dyn FnMut(u64)) -> Result<Self> {
        Self::load_uploaded(ctx, ckpt, options, HashMap::new(), progress)
    }

    /// `load`, with the matrices of `uploaded` (by tensor name) already on the GPU: `ckpt`'s
    /// bytes of those are not read. The browser uploads a GGUF file's matrices as it reads
    /// them from disk, so the file is never whole in memory, then loads the rest here.
    pub fn load_uploaded(
        ctx: Arc<GpuContext>,
        ckpt: &impl TensorSource,
        options: LoadOptions,
        uploaded: HashMap<String, GpuWeight>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Self> {
        let c = ckpt.config();
        // Mamba-1's chunked scan keeps a carry of d_state per channel in workgroup memory;
        // Mamba-2's decode step keeps a channel's states in registers.
        let (most, which) = match c.ssd {
            None => (SCAN_MAX_STATE, "the chunked scan keeps in workgroup memory"),
            Some(_) => (SSD_MAX_STATE, "the SSD decode step keeps in registers"),
        };
        if c.d_state > most as usize {
            return Err(crate::Error::Config {
                path: format!("{}/config.json", ckpt.source_name()),
                reason: format!("state_size {} exceeds the {most} states {which}", c.d_state),
            });
        }
        let mix = options.weight_dtype.map(|matrices| WeightMix { matrices, output: options.output_dtype });
        let mut sink = GpuSink { ctx: &ctx, mix, uploaded, chosen: None, hasher: Fnv::new(), progress, done: 0 };
        sink.hasher.write(format!("{:?}", ckpt.config()).as_bytes());
        let weights = load_weights(ckpt, &mut sink)?;
        let weight_dtype = sink.chosen.unwrap_or(WeightDtype::F32);
        let fingerprint = sink.hasher.0;
        Ok(Model { ctx, config: ckpt.config().clone(), weights, weight_dtype, fingerprint, source: ckpt.source_name().to_string() })
    }

    /// `load`, with the GPU's own failures (out of memory, validation) returned as an error
    /// instead of reaching wgpu's uncaptured-error handler, which panics natively. WebGPU
    /// reports them asynchronously, hence async.
    pub async fn load_checked(ctx: Arc<GpuContext>, ckpt: &impl TensorSource, options: LoadOptions, progress: &mut dyn FnMut(u64)) -> Result<Self> {
        let out_of_memory = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let model = Self::load(ctx.clone(), ckpt, options, progress);
        let scoped = [invalid.pop().await, out_of_memory.pop().await];
        let model = model?;
        match scoped.into_iter().flatten().next() {
            Some(e) => Err(crate::Error::Gpu(format!("uploading {} to {} failed: {e}", ckpt.source_name(), ctx.adapter.name))),
            None => Ok(model),
        }
    }

    /// Opens and uploads a model folder (config.json + safetensors), or a GGUF file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(ctx: Arc<GpuContext>, path: &std::path::Path, options: LoadOptions) -> Result<Self> {
        if path.is_file() {
            return Self::load(ctx, &crate::gguf::GgufCheckpoint::open(path)?, options, &mut |_| {});
        }
        Self::load(ctx, &super::Checkpoint::open(path)?, options, &mut |_| {})
    }

    /// Bytes of GPU memory the weights occupy.
    pub fn weight_bytes(&self) -> u64 {
        let w = &self.weights;
        let mut total = w.embedding.size_bytes() + w.norm_f.size() + w.lm_head.as_ref().map_or(0, |h| h.size_bytes());
        for l in &w.layers {
            total += [&l.in_proj, &l.out_proj].iter().map(|m| m.size_bytes()).sum::<u64>();
            total += l.norm.size() + l.conv_weight.size();
            total += match &l.ssm {
                SsmWeights::Selective { x_proj, dt_proj, dt_bias, a, d_skip } => {
                    x_proj.size_bytes() + dt_proj.size_bytes() + dt_bias.size() + a.size() + d_skip.size()
                }
                SsmWeights::Ssd { dt_bias, a, d_skip, norm } => dt_bias.size() + a.size() + d_skip.size() + norm.size(),
            };
            total += [&l.in_proj_bias, &l.conv_bias, &l.out_proj_bias].iter().filter_map(|v| v.as_ref()).map(|v| v.size()).sum::<u64>();
        }
        total
    }
}

/// FNV-1a, 64 bit: a stable fingerprint without a hashing crate.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
