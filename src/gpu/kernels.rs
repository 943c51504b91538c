//! Typed kernel ids -> WGSL source, entry point and `override` constants; each pipeline is
//! compiled once per context, on first use, and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every compute pipeline the engine runs. Variants that differ only in an `override` constant
/// (f32 or packed-f16 weights) are separate kernels because they are separate pipelines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Embedding {
        f16: bool,
    },
    AddRmsNorm,
    Matmul {
        f16: bool,
    },
    /// The matmul for CPU devices: no workgroup memory, no barriers.
    MatmulDirect {
        f16: bool,
    },
    /// `batch` = rows of X (1..=8), an override constant so accumulators stay in registers;
    /// `lanes` = invocations per output row (8 on GPUs, 1 on CPU devices).
    Matvec {
        f16: bool,
        batch: u8,
        lanes: u8,
    },
    ConvPrefill,
    ConvStateUpdate,
    ConvStep,
    ScanChunked,
    ScanStep,
    Argmax,
    /// Benchmark probe: streaming reads (shaders/read_bandwidth.wgsl).
    ReadBandwidth,
}

/// Chunk length of shaders/scan_chunked.wgsl (SEG * STEPS there).
pub const SCAN_CHUNK: u32 = 64;
/// Channels per workgroup in shaders/scan_chunked.wgsl (CH there).
pub const SCAN_CHANNELS_PER_WG: u32 = 16;
/// Largest d_state shaders/scan_chunked.wgsl holds in its carry (MAX_STATE there).
pub const SCAN_MAX_STATE: u32 = 64;
/// Output tile edge of shaders/matmul.wgsl (TILE there).
pub const MATMUL_TILE: u32 = 64;
/// Output tile edge of a main_direct workgroup in shaders/matmul.wgsl (8 x 8 invocations x 4).
pub const MATMUL_DIRECT_TILE: u32 = 32;
/// Most batch rows of shaders/matvec.wgsl.
pub const MATVEC_MAX_M: u32 = 8;

/// Invocations per workgroup of shaders/matvec.wgsl (WG there) for `lanes` per output row.
pub fn matvec_workgroup(lanes: u8) -> u32 {
    if lanes == 1 {
        64
    } else {
        256
    }
}
/// Workgroup size of the 1-D kernels (conv1d, scan_step: 64; embedding, argmax: 256).
pub const WG_64: u32 = 64;
pub const WG_256: u32 = 256;

/// The shader files, embedded at build time so the binary is self-contained.
pub const SHADERS: &[(&str, &str)] = &[
    ("embedding.wgsl", include_str!("../../shaders/embedding.wgsl")),
    ("add_rms_norm.wgsl", include_str!("../../shaders/add_rms_norm.wgsl")),
    ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
    ("matvec.wgsl", include_str!("../../shaders/matvec.wgsl")),
    ("conv1d.wgsl", include_str!("../../shaders/conv1d.wgsl")),
    ("scan_chunked.wgsl", include_str!("../../shaders/scan_chunked.wgsl")),
    ("scan_step.wgsl", include_str!("../../shaders/scan_step.wgsl")),
    ("argmax.wgsl", include_str!("../../shaders/argmax.wgsl")),
    ("read_bandwidth.wgsl", include_str!("../../shaders/read_bandwidth.wgsl")),
];

fn shader_source(file: &str) -> &'static str {
    SHADERS.iter().find(|(name, _)| *name == file).map(|(_, src)| *src).expect("every kernel names a file in SHADERS")
}

impl Kernel {
    /// (file, entry point, weights are f16, matvec's (batch rows, lanes per row))
    fn spec(self) -> (&'static str, &'static str, Option<bool>, Option<(u8, u8)>) {
        match self {
            Kernel::Embedding { f16 } => ("embedding.wgsl", "main", Some(f16), None),
            Kernel::AddRmsNorm => ("add_rms_norm.wgsl", "main", None, None),
            Kernel::Matmul { f16 } => ("matmul.wgsl", "main", Some(f16), None),
            Kernel::MatmulDirect { f16 } => ("matmul.wgsl", "main_direct", Some(f16), None),
            Kernel::Matvec { f16, batch, lanes } => ("matvec.wgsl", "main", Some(f16), Some((batch, lanes))),
            Kernel::ConvPrefill => ("conv1d.wgsl", "conv_prefill", None, None),
            Kernel::ConvStateUpdate => ("conv1d.wgsl", "conv_state_update", None, None),
            Kernel::ConvStep => ("conv1d.wgsl", "conv_step", None, None),
            Kernel::ScanChunked => ("scan_chunked.wgsl", "main", None, None),
            Kernel::ScanStep => ("scan_step.wgsl", "main", None, None),
            Kernel::Argmax => ("argmax.wgsl", "main", None, None),
            Kernel::ReadBandwidth => ("read_bandwidth.wgsl", "main", None, None),
        }
    }
}

#[derive(Default)]
pub(crate) struct KernelCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<Kernel, Arc<wgpu::ComputePipeline>>>,
}

impl KernelCache {
    pub(crate) fn pipeline(&self, device: &wgpu::Device, kernel: Kernel) -> Arc<wgpu::ComputePipeline> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipelines.get(&kernel) {
            return p.clone();
        }
        let (file, entry, f16, matvec) = kernel.spec();
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            modules
                .entry(file)
                .or_insert_with(|| {
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(file),
                        source: wgpu::ShaderSource::Wgsl(shader_source(file).into()),
                    })
                })
                .clone()
        };
        let mut constants: Vec<(&str, f64)> = Vec::new();
        if let Some(f) = f16 {
            constants.push(("WEIGHT_F16", if f { 1.0 } else { 0.0 }));
        }
        if let Some((batch, lanes)) = matvec {
            constants.push(("BATCH", batch as f64));
            constants.push(("LANES", lanes as f64));
            constants.push(("WG", matvec_workgroup(lanes) as f64));
        }
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, zero_initialize_workgroup_memory: false },
            cache: None,
        });
        let pipeline = Arc::new(pipeline);
        pipelines.insert(kernel, pipeline.clone());
        pipeline
    }
}
