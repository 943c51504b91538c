//! Typed kernel ids -> shader file, entry point and `override` constants; each pipeline is
//! compiled once per context, on first use, and cached. Every shader file is a complete WGSL
//! module: what differs between uses of a kernel is an override constant or an entry point.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every compute pipeline the model runs. Variants that differ only in an `override` constant
/// (the weights' storage, the batch rows of the matvec) are separate pipelines. `format`:
/// WeightDtype::shader_format (0 f32, 1 f16, 2.. the block formats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Embedding {
        format: u8,
    },
    AddRmsNorm,
    Matmul {
        format: u8,
    },
    /// `batch` = rows of X (1..=MATVEC_MAX_M), an override constant so accumulators stay in
    /// registers.
    /// `norm` and `norm_weight`: how X is normalized on load (override constants, so a plain
    /// product's inner loop has no branch for them).
    Matvec {
        format: u8,
        batch: u8,
        norm: MatvecNorm,
        norm_weight: bool,
    },
    /// Matvec for in_proj with the decode conv step fused into the store of its conv rows.
    MatvecConv {
        format: u8,
        batch: u8,
        norm: MatvecNorm,
        norm_weight: bool,
    },
    ConvPrefill,
    ConvStateUpdate,
    ConvStep,
    ScanChunked,
    /// The scan walking time, one invocation per (sequence, channel).
    ScanSequential,
    /// The decode scan step with the dt projection fused in, each channel over 16 invocations;
    /// `f16`: dt_proj's storage.
    ScanStepStates {
        f16: bool,
    },
    /// The decode scan step with x_proj, FalconMamba's norms and the dt projection fused in;
    /// `f16`: x_proj's and dt_proj's storage, `batch`: the sequences (1..=MATVEC_MAX_M).
    ScanStepFused {
        f16: bool,
        batch: u8,
    },
    /// RMSNorm over segments of a row, in place (Mamba-2's gated norm, FalconMamba's norms of
    /// dt_low, B and C).
    GroupRmsNorm,
    /// Mamba-2's SSD scan over chunks (prefill), in three passes: each chunk's own state,
    /// the states passed from chunk to chunk, each chunk's outputs.
    SsdChunkStates,
    SsdPassStates,
    SsdChunkOutputs,
    /// Mamba-2's scan walking time (decode, and the chunked scan's baseline).
    SsdSequential,
    Argmax,
    /// Every sampling mode on the GPU, one workgroup per sequence (shaders/sample.wgsl).
    Sample,
}

/// The RMSNorm shaders/matvec.wgsl applies to X on load (its NORM constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatvecNorm {
    None = 0,
    /// Over each whole row of X.
    Row = 1,
    /// Over each of `norm_groups` groups of a row.
    Groups = 2,
}

/// What a pipeline is built from: a shader file's text, an entry point and the values of its
/// override constants. The benchmark's own kernels (src/bench) describe themselves this way too.
#[derive(Clone, Debug)]
pub struct KernelSpec {
    /// The file under shaders/, for labels and errors.
    pub file: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, f64)>,
}

impl KernelSpec {
    /// The cache key: the same file, entry point and constants build the same pipeline.
    pub(crate) fn key(&self) -> SpecKey {
        (self.file, self.entry, self.constants.iter().map(|&(name, v)| (name, v.to_bits())).collect())
    }
}

/// Chunk length of shaders/scan_chunked.wgsl (CHUNK there).
pub const SCAN_CHUNK: u32 = 64;
/// Channels per workgroup of shaders/scan_chunked.wgsl (CH there).
pub const SCAN_CHANNELS_PER_WG: u32 = 16;
/// Largest d_state shaders/scan_chunked.wgsl holds in its carry (MAX_STATE there).
pub const SCAN_MAX_STATE: u32 = 64;
/// Channels per workgroup of shaders/scan_step.wgsl's step_dt_states (STATE_CHANNELS there).
pub const SCAN_STEP_STATE_CHANNELS: u32 = 4;
/// Channels per workgroup of shaders/scan_step_fused.wgsl (WG there).
pub const SCAN_FUSED_CHANNELS: u32 = 256;
/// Most values of x_proj's output (batch * (dt_rank + 2 d_state)) shaders/scan_step_fused.wgsl
/// holds in workgroup memory (XDBL_CAP there).
pub const SCAN_FUSED_MAX_XDBL: u32 = 2560;
/// Chunk length of shaders/ssd.wgsl's chunked passes (L there).
pub const SSD_CHUNK: u32 = 32;
/// Head channels per workgroup of shaders/ssd.wgsl's chunked passes (PB there).
pub const SSD_CHANNELS_PER_WG: u32 = 32;
/// Channels per workgroup of shaders/ssd.wgsl's sequential entry point (ROWS there).
pub const SSD_SEQUENTIAL_CHANNELS: u32 = 4;
/// Largest d_state of shaders/ssd.wgsl's sequential entry point (LANES * MAX_PER_LANE there).
pub const SSD_MAX_STATE: u32 = 128;
/// Output tile edge of shaders/matmul.wgsl (TILE there).
pub const MATMUL_TILE: u32 = 64;
/// Most batch rows of shaders/matvec.wgsl (MAX_BATCH there).
pub const MATVEC_MAX_M: u32 = 8;
/// Most groups of shaders/matvec.wgsl's RMSNorm on load (MAX_GROUPS there).
pub const MATVEC_MAX_GROUPS: u32 = 16;
/// Output rows per workgroup of shaders/matvec.wgsl (WG / LANES there).
pub const MATVEC_ROWS_PER_WG: u32 = 8;
/// Workgroup size of the 1-D kernels (conv1d, scan_step: 64; embedding, argmax: 256).
pub const WG_64: u32 = 64;
pub const WG_256: u32 = 256;

/// The model's shader files, embedded at build time so the binary is self-contained.
pub const SHADERS: &[(&str, &str)] = &[
    ("embedding.wgsl", include_str!("../../shaders/embedding.wgsl")),
    ("add_rms_norm.wgsl", include_str!("../../shaders/add_rms_norm.wgsl")),
    ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
    ("matvec.wgsl", include_str!("../../shaders/matvec.wgsl")),
    ("conv1d.wgsl", include_str!("../../shaders/conv1d.wgsl")),
    ("scan_chunked.wgsl", include_str!("../../shaders/scan_chunked.wgsl")),
    ("scan_step.wgsl", include_str!("../../shaders/scan_step.wgsl")),
    ("scan_step_fused.wgsl", include_str!("../../shaders/scan_step_fused.wgsl")),
    ("group_rms_norm.wgsl", include_str!("../../shaders/group_rms_norm.wgsl")),
    ("ssd.wgsl", include_str!("../../shaders/ssd.wgsl")),
    ("argmax.wgsl", include_str!("../../shaders/argmax.wgsl")),
    ("sample.wgsl", include_str!("../../shaders/sample.wgsl")),
];

/// The text of shader file `name` (one of SHADERS).
pub fn shader_source(name: &str) -> &'static str {
    SHADERS.iter().find(|(n, _)| *n == name).map(|(_, src)| *src).expect("every kernel names a file in SHADERS")
}

impl Kernel {
    pub fn spec(self) -> KernelSpec {
        let f16 = |f: bool| ("WEIGHT_F16", f as u8 as f64);
        let (file, entry, constants) = match self {
            Kernel::Embedding { format } => ("embedding.wgsl", "main", vec![("FORMAT", format as f64)]),
            Kernel::AddRmsNorm => ("add_rms_norm.wgsl", "main", vec![]),
            Kernel::Matmul { format } => ("matmul.wgsl", "main", vec![("FORMAT", format as f64)]),
            Kernel::Matvec { format, batch, norm, norm_weight } => ("matvec.wgsl", "main", matvec_constants(format, batch, norm, norm_weight)),
            Kernel::MatvecConv { format, batch, norm, norm_weight } => {
                ("matvec.wgsl", "main_conv", matvec_constants(format, batch, norm, norm_weight))
            }
            Kernel::ConvPrefill => ("conv1d.wgsl", "conv_prefill", vec![]),
            Kernel::ConvStateUpdate => ("conv1d.wgsl", "conv_state_update", vec![]),
            Kernel::ConvStep => ("conv1d.wgsl", "conv_step", vec![]),
            Kernel::ScanChunked => ("scan_chunked.wgsl", "main", vec![]),
            Kernel::ScanSequential => ("scan_step.wgsl", "main", vec![]),
            Kernel::ScanStepStates { f16: f } => ("scan_step.wgsl", "step_dt_states", vec![f16(f)]),
            Kernel::ScanStepFused { f16: f, batch } => ("scan_step_fused.wgsl", "main", vec![f16(f), ("BATCH", batch as f64)]),
            Kernel::GroupRmsNorm => ("group_rms_norm.wgsl", "main", vec![]),
            Kernel::SsdChunkStates => ("ssd.wgsl", "chunk_states", vec![]),
            Kernel::SsdPassStates => ("ssd.wgsl", "pass_states", vec![]),
            Kernel::SsdChunkOutputs => ("ssd.wgsl", "chunk_outputs", vec![]),
            Kernel::SsdSequential => ("ssd.wgsl", "sequential", vec![]),
            Kernel::Argmax => ("argmax.wgsl", "main", vec![]),
            Kernel::Sample => ("sample.wgsl", "main", vec![]),
        };
        KernelSpec { file, source: shader_source(file), entry, constants }
    }
}

fn matvec_constants(format: u8, batch: u8, norm: MatvecNorm, norm_weight: bool) -> Vec<(&'static str, f64)> {
    vec![("FORMAT", format as f64), ("BATCH", batch as f64), ("NORM", norm as u8 as f64), ("NORM_WEIGHT", norm_weight as u8 as f64)]
}

impl From<Kernel> for KernelSpec {
    fn from(kernel: Kernel) -> Self {
        kernel.spec()
    }
}

pub(crate) type SpecKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// Shader modules and pipelines of one device, built on first use. Shaders keep wgpu's
/// default runtime checks, bounds checks and loop bounding included: on a real driver a loop
/// bug must not hang the GPU.
#[derive(Default)]
pub(crate) struct KernelCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<SpecKey, Arc<wgpu::ComputePipeline>>>,
}

impl KernelCache {
    pub(crate) fn pipeline(&self, device: &wgpu::Device, spec: &KernelSpec) -> Arc<wgpu::ComputePipeline> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipelines.get(&spec.key()) {
            return p.clone();
        }
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            modules
                .entry(spec.file)
                .or_insert_with(|| {
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(spec.file),
                        source: wgpu::ShaderSource::Wgsl(spec.source.into()),
                    })
                })
                .clone()
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.entry),
            layout: None,
            module: &module,
            entry_point: Some(spec.entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &spec.constants, zero_initialize_workgroup_memory: false },
            cache: None,
        });
        let pipeline = Arc::new(pipeline);
        pipelines.insert(spec.key(), pipeline.clone());
        pipeline
    }
}
