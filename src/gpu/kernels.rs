//! Typed kernel ids -> shader module, entry point and `override` constants; each pipeline is
//! compiled once per context, on first use, and cached. A module is one or more WGSL files
//! put together (WGSL has no includes): that is how one kernel body gets its weights through
//! 32-bit or 64-bit loads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every compute pipeline the engine runs. Variants that differ only in an `override` constant
/// (f32 or packed-f16 weights) are separate kernels because they are separate pipelines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Embedding {
        f16: bool,
    },
    /// `small_workgroup`: 8 invocations per row (CPU devices, where every barrier of a big
    /// workgroup switches dozens of coroutines) instead of 256.
    AddRmsNorm {
        small_workgroup: bool,
    },
    Matmul {
        f16: bool,
    },
    /// The matmul for CPU devices: no workgroup memory, no barriers. `int64`: X and W load as
    /// u64 (needs SHADER_INT64; shaders/matrix_loads_int64.wgsl, weight_units_int64.wgsl).
    MatmulDirect {
        f16: bool,
        int64: bool,
    },
    /// The matmul for CPU devices whose subgroups are exactly its workgroup of 8, with u64
    /// loads (SHADER_INT64, SUBGROUP; shaders/matmul_subgroup.wgsl): the lanes share X through
    /// the subgroup. Needs k and X's row stride and offset multiples of 8, and n and Y's row
    /// stride and offset multiples of 4. `softplus`: the activation, a pipeline constant here.
    MatmulSubgroup {
        f16: bool,
        softplus: bool,
    },
    /// `batch` = rows of X (1..=8), an override constant so accumulators stay in registers.
    /// Weights in WeightLayout::RowMajor (GPUs).
    Matvec {
        f16: bool,
        batch: u8,
    },
    /// The matvec for weights in WeightLayout::RowBlocks (CPU devices). `int64`: X and W load
    /// as u64, W two rows' units at a time (needs SHADER_INT64 and every block of an even
    /// size; shaders/matrix_loads_int64.wgsl, weight_pairs_int64.wgsl).
    MatvecBlocks {
        f16: bool,
        batch: u8,
        int64: bool,
        /// With `int64`: X shared through the subgroup (shaders/block_x_subgroup.wgsl; needs
        /// SUBGROUP and subgroups of exactly 8 invocations).
        shared_x: bool,
    },
    /// Matvec for in_proj with the decode conv step fused into the store of its x half.
    MatvecConv {
        f16: bool,
        batch: u8,
    },
    /// MatvecBlocks for in_proj with the decode conv step fused into the store of its x half.
    MatvecBlocksConv {
        f16: bool,
        batch: u8,
        int64: bool,
        shared_x: bool,
    },
    ConvPrefill,
    ConvStateUpdate,
    ConvStep,
    /// The prefill conv and state update for CPU devices: one invocation per 4 channels walking
    /// time (shaders/conv1d_walk.wgsl; d_conv 4, channels and x_stride multiples of 4).
    ConvWalk,
    ScanChunked,
    /// `channels`: channels per invocation (CHANNELS there), 1 on GPUs, 4 on CPU devices.
    /// `loads`: how B, C, dt_low, A and the state load.
    ScanStep {
        channels: u8,
        loads: ScanLoads,
    },
    /// The prefill scan for CPU devices with u64 loads, d_state 16 and d_inner a multiple of
    /// 4: ScanStep's walk over a whole prompt with the state in registers
    /// (shaders/scan_sequential_int64.wgsl; SCAN_SEQUENTIAL_CHANNELS channels per invocation).
    ScanSequential,
    /// The decode scan step with the dt projection fused in; `f16` and `blocks`: dt_proj's
    /// storage and layout (WeightLayout::RowBlocks).
    ScanStepDt {
        f16: bool,
        blocks: bool,
        channels: u8,
        loads: ScanLoads,
    },
    /// ScanStepDt for CPU devices with u64 loads, d_state 16, d_inner a multiple of 4 and
    /// dt_proj in WeightLayout::RowBlocks: per-channel values 4 channels per vec4
    /// (shaders/scan_sequential_int64.wgsl, step_dt_quads).
    ScanStepDtQuads {
        f16: bool,
    },
    /// ScanStepDt with each channel spread over 16 invocations (GPUs).
    ScanStepStates {
        f16: bool,
        blocks: bool,
    },
    /// The benchmark's baseline scan, one invocation per (channel, state) as in llama.cpp's
    /// WebGPU backend (shaders/scan_per_state.wgsl); `subgroups`: each step's sum by
    /// subgroupAdd (needs SUBGROUP) instead of a tree in workgroup memory. `workgroup`:
    /// d_state rounded up to a power of two (WG there).
    ScanPerState {
        subgroups: bool,
        workgroup: u8,
    },
    Argmax,
    /// Top-k candidates of a row of logits after the repetition penalty (sampling).
    TopK,
    /// Benchmark probe: streaming reads (shaders/read_bandwidth.wgsl), grid-strided.
    ReadBandwidth,
    /// Benchmark probe: streaming reads, a contiguous chunk per workgroup.
    ReadBandwidthChunks,
    /// ReadBandwidthChunks with 32-byte loads of u64 (needs SHADER_INT64).
    ReadBandwidthChunksInt64,
}

/// How the scan step kernels load x_proj's output (dt_low, B, C), A and the state: the first
/// part of their module. A CPU device loads every component lane by lane, so fewer, wider
/// components cost less there. Ordered by width (GpuContext::scan_loads caps it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScanLoads {
    /// One value per load (shaders/scan_state.wgsl): any shape, and GPUs.
    Single,
    /// Four, as a vec4 (shaders/scan_state_quads.wgsl): d_state and dt_rank multiples of 4.
    Quads,
    /// Eight, as four u64 (shaders/scan_state_int64.wgsl): d_state and dt_rank multiples of
    /// 8, and SHADER_INT64.
    Int64,
}

/// Chunk length of shaders/scan_chunked.wgsl (SEG * STEPS there).
pub const SCAN_CHUNK: u32 = 64;
/// Channels per invocation of shaders/scan_sequential_int64.wgsl, and the d_state it holds.
pub const SCAN_SEQUENTIAL_CHANNELS: u32 = 4;
pub const SCAN_SEQUENTIAL_STATE: u32 = 16;
/// Channels per workgroup of shaders/scan_step.wgsl's step_dt_states (STATE_CHANNELS there).
pub const SCAN_STEP_STATE_CHANNELS: u32 = 4;
/// Channels per workgroup in shaders/scan_chunked.wgsl (CH there).
pub const SCAN_CHANNELS_PER_WG: u32 = 16;
/// Largest d_state shaders/scan_chunked.wgsl holds in its carry (MAX_STATE there).
pub const SCAN_MAX_STATE: u32 = 64;
/// Output tile edge of shaders/matmul.wgsl (TILE there).
pub const MATMUL_TILE: u32 = 64;
/// Output tile edge of a main_direct workgroup in shaders/matmul.wgsl (8 x 8 invocations x 4).
pub const MATMUL_DIRECT_TILE: u32 = 32;
/// Output tile of a main_subgroup workgroup in shaders/matmul_subgroup.wgsl: [columns, rows]
/// (SUB_COLS, SUB_ROWS there).
pub const MATMUL_SUBGROUP_TILE: [u32; 2] = [32, 32];
/// Most batch rows of shaders/matvec.wgsl.
pub const MATVEC_MAX_M: u32 = 8;

/// Output rows per workgroup of shaders/matvec.wgsl's main (WG / LANES there); main_blocks
/// has one workgroup per block of tensor::BLOCK_ROWS rows.
pub const MATVEC_ROWS_PER_WG: u32 = 8;
/// Workgroup size of the 1-D kernels (conv1d, scan_step: 64; embedding, argmax: 256).
pub const WG_64: u32 = 64;
pub const WG_256: u32 = 256;

/// The shader files, embedded at build time so the binary is self-contained.
pub const SHADERS: &[(&str, &str)] = &[
    ("embedding.wgsl", include_str!("../../shaders/embedding.wgsl")),
    ("add_rms_norm.wgsl", include_str!("../../shaders/add_rms_norm.wgsl")),
    ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
    ("matmul_subgroup.wgsl", include_str!("../../shaders/matmul_subgroup.wgsl")),
    ("matvec.wgsl", include_str!("../../shaders/matvec.wgsl")),
    ("conv1d.wgsl", include_str!("../../shaders/conv1d.wgsl")),
    ("conv1d_walk.wgsl", include_str!("../../shaders/conv1d_walk.wgsl")),
    ("scan_chunked.wgsl", include_str!("../../shaders/scan_chunked.wgsl")),
    ("scan_step.wgsl", include_str!("../../shaders/scan_step.wgsl")),
    ("scan_state.wgsl", include_str!("../../shaders/scan_state.wgsl")),
    ("scan_state_quads.wgsl", include_str!("../../shaders/scan_state_quads.wgsl")),
    ("scan_state_int64.wgsl", include_str!("../../shaders/scan_state_int64.wgsl")),
    ("scan_sequential_int64.wgsl", include_str!("../../shaders/scan_sequential_int64.wgsl")),
    ("scan_per_state.wgsl", include_str!("../../shaders/scan_per_state.wgsl")),
    ("scan_per_state_tree.wgsl", include_str!("../../shaders/scan_per_state_tree.wgsl")),
    ("scan_per_state_subgroup.wgsl", include_str!("../../shaders/scan_per_state_subgroup.wgsl")),
    ("scan_params.wgsl", include_str!("../../shaders/scan_params.wgsl")),
    ("argmax.wgsl", include_str!("../../shaders/argmax.wgsl")),
    ("top_k.wgsl", include_str!("../../shaders/top_k.wgsl")),
    ("read_bandwidth.wgsl", include_str!("../../shaders/read_bandwidth.wgsl")),
    ("read_bandwidth_int64.wgsl", include_str!("../../shaders/read_bandwidth_int64.wgsl")),
    ("matrix_loads.wgsl", include_str!("../../shaders/matrix_loads.wgsl")),
    ("matrix_loads_int64.wgsl", include_str!("../../shaders/matrix_loads_int64.wgsl")),
    ("weight_units_int64.wgsl", include_str!("../../shaders/weight_units_int64.wgsl")),
    ("weight_pairs_int64.wgsl", include_str!("../../shaders/weight_pairs_int64.wgsl")),
    ("block_x_lanes.wgsl", include_str!("../../shaders/block_x_lanes.wgsl")),
    ("block_x_subgroup.wgsl", include_str!("../../shaders/block_x_subgroup.wgsl")),
];

/// A shader module: its files, in order, and whether it needs 64-bit integers (SHADER_INT64)
/// or subgroup operations (SUBGROUP).
pub struct ModuleSpec {
    pub name: &'static str,
    pub files: &'static [&'static str],
    pub int64: bool,
    /// Needs subgroup operations (SUBGROUP).
    pub subgroup: bool,
}

/// A module of one file, named after it.
macro_rules! single {
    ($file:literal) => {
        ModuleSpec { name: $file, files: &[$file], int64: false, subgroup: false }
    };
    ($file:literal, int64) => {
        ModuleSpec { name: $file, files: &[$file], int64: true, subgroup: false }
    };
}

/// Every shader module the kernels use. The matrix kernels' modules begin with the parts that
/// load X and W, with 32-bit or (CPU devices that have them) 64-bit components, and the
/// matvec's with how its CPU-device blocks get X (each invocation, or shared in a subgroup);
/// the scan step's with the part that holds the state, one, four or eight states per load.
/// Three end with entry points for CPU devices that build on the files before them:
/// matmul_subgroup.wgsl, scan_sequential_int64.wgsl and conv1d_walk.wgsl.
pub const MODULES: &[ModuleSpec] = &[
    single!("embedding.wgsl"),
    single!("add_rms_norm.wgsl"),
    ModuleSpec { name: "matmul", files: &["matrix_loads.wgsl", "matmul.wgsl"], int64: false, subgroup: false },
    ModuleSpec { name: "matmul_int64", files: &["matrix_loads_int64.wgsl", "weight_units_int64.wgsl", "matmul.wgsl"], int64: true, subgroup: false },
    ModuleSpec {
        name: "matmul_int64_subgroup",
        files: &["matrix_loads_int64.wgsl", "weight_pairs_int64.wgsl", "matmul.wgsl", "matmul_subgroup.wgsl"],
        int64: true,
        subgroup: true,
    },
    ModuleSpec { name: "matvec", files: &["matrix_loads.wgsl", "block_x_lanes.wgsl", "matvec.wgsl"], int64: false, subgroup: false },
    ModuleSpec {
        name: "matvec_int64",
        files: &["matrix_loads_int64.wgsl", "weight_pairs_int64.wgsl", "block_x_lanes.wgsl", "matvec.wgsl"],
        int64: true,
        subgroup: false,
    },
    ModuleSpec {
        name: "matvec_int64_subgroup",
        files: &["matrix_loads_int64.wgsl", "weight_pairs_int64.wgsl", "block_x_subgroup.wgsl", "matvec.wgsl"],
        int64: true,
        subgroup: true,
    },
    ModuleSpec { name: "conv1d", files: &["conv1d.wgsl", "conv1d_walk.wgsl"], int64: false, subgroup: false },
    ModuleSpec { name: "scan_chunked", files: &["scan_params.wgsl", "scan_chunked.wgsl"], int64: false, subgroup: false },
    ModuleSpec { name: "scan_step", files: &["scan_params.wgsl", "scan_state.wgsl", "scan_step.wgsl"], int64: false, subgroup: false },
    ModuleSpec { name: "scan_step_quads", files: &["scan_params.wgsl", "scan_state_quads.wgsl", "scan_step.wgsl"], int64: false, subgroup: false },
    ModuleSpec {
        name: "scan_step_int64",
        files: &["scan_params.wgsl", "scan_state_int64.wgsl", "scan_step.wgsl", "scan_sequential_int64.wgsl"],
        int64: true,
        subgroup: false,
    },
    ModuleSpec {
        name: "scan_per_state",
        files: &["scan_params.wgsl", "scan_per_state.wgsl", "scan_per_state_tree.wgsl"],
        int64: false,
        subgroup: false,
    },
    ModuleSpec {
        name: "scan_per_state_subgroup",
        files: &["scan_params.wgsl", "scan_per_state.wgsl", "scan_per_state_subgroup.wgsl"],
        int64: false,
        subgroup: true,
    },
    single!("argmax.wgsl"),
    single!("top_k.wgsl"),
    single!("read_bandwidth.wgsl"),
    single!("read_bandwidth_int64.wgsl", int64),
];

/// The WGSL of module `name`: its files joined.
pub fn module_source(name: &str) -> String {
    let module = MODULES.iter().find(|m| m.name == name).expect("every kernel names a module in MODULES");
    let file = |f: &str| SHADERS.iter().find(|(n, _)| *n == f).map(|(_, src)| *src).expect("every module names files in SHADERS");
    module.files.iter().map(|f| file(f)).collect::<Vec<_>>().join("\n")
}

impl Kernel {
    /// (module, entry point, override constants)
    fn spec(self) -> (&'static str, &'static str, Vec<(&'static str, f64)>) {
        let f16 = |f: bool| ("WEIGHT_F16", f as u8 as f64);
        let matvec = |int64: bool, shared_x: bool| match (int64, shared_x) {
            (false, _) => "matvec",
            (true, false) => "matvec_int64",
            (true, true) => "matvec_int64_subgroup",
        };
        let matmul = |int64: bool| if int64 { "matmul_int64" } else { "matmul" };
        let scan_step = |loads: ScanLoads| match loads {
            ScanLoads::Single => "scan_step",
            ScanLoads::Quads => "scan_step_quads",
            ScanLoads::Int64 => "scan_step_int64",
        };
        match self {
            Kernel::Embedding { f16: f } => ("embedding.wgsl", "main", vec![f16(f)]),
            Kernel::AddRmsNorm { small_workgroup } => ("add_rms_norm.wgsl", "main", vec![("WG", if small_workgroup { 8.0 } else { 256.0 })]),
            Kernel::Matmul { f16: f } => ("matmul", "main", vec![f16(f)]),
            Kernel::MatmulDirect { f16: f, int64 } => (matmul(int64), "main_direct", vec![f16(f)]),
            Kernel::MatmulSubgroup { f16: f, softplus } => {
                ("matmul_int64_subgroup", "main_subgroup", vec![f16(f), ("SOFTPLUS", softplus as u8 as f64)])
            }
            Kernel::Matvec { f16: f, batch } => ("matvec", "main", vec![f16(f), ("BATCH", batch as f64)]),
            Kernel::MatvecBlocks { f16: f, batch, int64, shared_x } => {
                (matvec(int64, shared_x), "main_blocks", vec![f16(f), ("BATCH", batch as f64)])
            }
            Kernel::MatvecConv { f16: f, batch } => ("matvec", "main_conv", vec![f16(f), ("BATCH", batch as f64)]),
            Kernel::MatvecBlocksConv { f16: f, batch, int64, shared_x } => {
                (matvec(int64, shared_x), "main_blocks_conv", vec![f16(f), ("BATCH", batch as f64)])
            }
            Kernel::ConvPrefill => ("conv1d", "conv_prefill", vec![]),
            Kernel::ConvStateUpdate => ("conv1d", "conv_state_update", vec![]),
            Kernel::ConvStep => ("conv1d", "conv_step", vec![]),
            Kernel::ConvWalk => ("conv1d", "conv_walk", vec![]),
            Kernel::ScanChunked => ("scan_chunked", "main", vec![]),
            Kernel::ScanStep { channels, loads } => (scan_step(loads), "main", vec![("CHANNELS", channels as f64)]),
            Kernel::ScanSequential => ("scan_step_int64", "scan_sequential", vec![]),
            Kernel::ScanStepDt { f16: f, blocks, channels, loads } => {
                (scan_step(loads), "step_dt", vec![f16(f), ("WEIGHT_BLOCKS", blocks as u8 as f64), ("CHANNELS", channels as f64)])
            }
            Kernel::ScanStepDtQuads { f16: f } => ("scan_step_int64", "step_dt_quads", vec![f16(f)]),
            Kernel::ScanStepStates { f16: f, blocks } => ("scan_step", "step_dt_states", vec![f16(f), ("WEIGHT_BLOCKS", blocks as u8 as f64)]),
            Kernel::ScanPerState { subgroups: false, workgroup } => ("scan_per_state", "main", vec![("WG", workgroup as f64)]),
            Kernel::ScanPerState { subgroups: true, workgroup } => ("scan_per_state_subgroup", "main_subgroup", vec![("WG", workgroup as f64)]),
            Kernel::Argmax => ("argmax.wgsl", "main", vec![]),
            Kernel::TopK => ("top_k.wgsl", "main", vec![]),
            Kernel::ReadBandwidth => ("read_bandwidth.wgsl", "main", vec![]),
            Kernel::ReadBandwidthChunks => ("read_bandwidth.wgsl", "main_chunks", vec![]),
            Kernel::ReadBandwidthChunksInt64 => ("read_bandwidth_int64.wgsl", "main_chunks", vec![]),
        }
    }
}

#[derive(Default)]
pub(crate) struct KernelCache {
    /// naga puts a counter into every loop that breaks out after 2^64 iterations, so that a
    /// shader cannot hang the device (wgpu's default, `force_loop_bounding`). Ours do without
    /// it (false) unless a context asks (GpuContext::with_loop_bounding): every loop in
    /// shaders/ counts up to a bound taken from its parameters or a constant, or halves a
    /// stride to zero, so none can run forever. On lavapipe the counter cost the matvec about
    /// a tenth of its speed: the loop cannot be unrolled and every iteration carries the
    /// 64-bit count.
    pub(crate) loop_bounding: bool,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<Kernel, Arc<wgpu::ComputePipeline>>>,
}

impl KernelCache {
    pub(crate) fn new(loop_bounding: bool) -> Self {
        KernelCache { loop_bounding, ..Default::default() }
    }

    pub(crate) fn pipeline(&self, device: &wgpu::Device, kernel: Kernel) -> Arc<wgpu::ComputePipeline> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipelines.get(&kernel) {
            return p.clone();
        }
        let (name, entry, constants) = kernel.spec();
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            modules
                .entry(name)
                .or_insert_with(|| {
                    let descriptor = wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(module_source(name).into()) };
                    let checks = wgpu::ShaderRuntimeChecks { force_loop_bounding: self.loop_bounding, ..wgpu::ShaderRuntimeChecks::checked() };
                    // SAFETY: the one check turned off is the loop counter, and no loop of ours
                    // runs forever (see `loop_bounding`); bounds checks stay on.
                    unsafe { device.create_shader_module_trusted(descriptor, checks) }
                })
                .clone()
        };
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
