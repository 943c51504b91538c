//! Adapter and device selection. The context owns the device, the queue and the pipeline cache;
//! nothing in the crate is global.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::kernels::{KernelCache, ScanLoads};

const NO_ADAPTER_HELP: &str = "no GPU adapter found. On Linux without a GPU, install a software Vulkan driver: \
`apt-get install mesa-vulkan-drivers` (lavapipe); otherwise install your GPU's Vulkan, Metal or DX12 driver";

/// What `mamba-wgpu info` prints and benchmarks record.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_binding_bytes: u64,
    pub max_buffer_bytes: u64,
    pub max_workgroup_storage_bytes: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_storage_buffers_per_stage: u32,
    pub shader_f16: bool,
    /// 64-bit integers in shaders (SHADER_INT64; native Vulkan, Metal and DX12 only): enabled on
    /// the device where the adapter has them.
    pub shader_int64: bool,
    /// Subgroup operations (SUBGROUP): enabled on the device where the adapter has them.
    pub subgroups: bool,
    /// The adapter's smallest and largest subgroup size.
    pub subgroup_sizes: [u32; 2],
}

impl AdapterSummary {
    /// Whether the CPU-device matvec can share X through subgroups: its workgroups of 8
    /// invocations (shaders/matvec.wgsl, BLOCK_WG) must be exactly one subgroup.
    fn can_share_x(&self) -> bool {
        self.subgroups && self.subgroup_sizes == [8, 8]
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    /// Largest storage binding a single weight part may occupy; weights above it are split by
    /// rows. Normally the device limit; tests lower it to exercise the split path on small models.
    pub max_binding_bytes: u64,
    /// Kernel variants and weight layout for GPUs (row-major weights, tiled matmul, 32
    /// invocations per matvec row: coalesced loads) or for CPU devices such as lavapipe (weights
    /// in blocks of 64 rows, 8 rows per matvec invocation, a matmul without barriers, which
    /// cost more there than the caches save). See tensor::WeightLayout.
    pub gpu_kernels: bool,
    /// The CPU-device matvec and matmul load X and W as u64 (shaders/matrix_loads_int64.wgsl
    /// and the weight parts after it) instead of u32: set where the device has 64-bit integers.
    pub int64_loads: bool,
    /// The CPU-device matvec and matmul with u64 loads share X through the subgroup
    /// (shaders/block_x_subgroup.wgsl, matmul_subgroup.wgsl): set where the device has
    /// subgroups of exactly their workgroup's 8 invocations.
    pub shared_x: bool,
    /// The widest loads of B, C, dt_low, A and the state that the CPU-device scan steps use
    /// where d_state and dt_rank allow: eight values as four u64 where the device has 64-bit
    /// integers, else four as a vec4 (ScanLoads).
    pub scan_loads: ScanLoads,
    /// A forward pass whose rows the matvec takes (a decode step) runs each layer's RMSNorm
    /// inside in_proj and the residual add inside out_proj, one dispatch per layer fewer
    /// (src/model/forward.rs). On by default.
    pub fused_norms: bool,
    pub(crate) kernels: KernelCache,
    /// A tiny buffer bound where a kernel's optional input (a bias) is absent.
    pub(crate) placeholder: wgpu::Buffer,
}

impl GpuContext {
    /// Picks the adapter wgpu prefers (high performance), or the first whose name contains
    /// `adapter_filter` (case-insensitive) on native platforms.
    pub async fn new(adapter_filter: Option<&str>) -> Result<Arc<Self>> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = match adapter_filter {
            Some(filter) => pick_adapter(&instance, filter).await?,
            None => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    force_fallback_adapter: false,
                    compatible_surface: None,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::NoAdapter(format!("{NO_ADAPTER_HELP} ({e})")))?,
        };
        Self::from_adapter(adapter).await
    }

    pub async fn from_adapter(adapter: wgpu::Adapter) -> Result<Arc<Self>> {
        let info = adapter.get_info();
        let supported = adapter.limits();
        // Start from WebGPU's defaults (what every kernel is written to fit) and take the
        // adapter's larger buffers, so big weights need fewer splits where the device allows.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: supported.max_storage_buffer_binding_size,
            max_buffer_size: supported.max_buffer_size,
            ..Default::default()
        };
        // 64-bit integers let CPU devices load X and W with half as many components, and
        // subgroups let them load X once per workgroup (shared_x).
        let features = adapter.features() & (wgpu::Features::SHADER_INT64 | wgpu::Features::SUBGROUP);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("mamba-wgpu"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Gpu(format!("could not open a device on {}: {e}", info.name)))?;
        let adapter = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            max_storage_binding_bytes: limits.max_storage_buffer_binding_size,
            max_buffer_bytes: limits.max_buffer_size,
            max_workgroup_storage_bytes: limits.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
            shader_f16: adapter.features().contains(wgpu::Features::SHADER_F16),
            shader_int64: features.contains(wgpu::Features::SHADER_INT64),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_sizes: [info.subgroup_min_size, info.subgroup_max_size],
        };
        let max_binding_bytes = (limits.max_storage_buffer_binding_size).min(limits.max_buffer_size);
        let placeholder = crate::gpu::tensor::storage_with(&device, "placeholder", 4);
        Ok(Arc::new(GpuContext {
            device,
            queue,
            int64_loads: adapter.shader_int64,
            shared_x: adapter.can_share_x(),
            scan_loads: if adapter.shader_int64 { ScanLoads::Int64 } else { ScanLoads::Quads },
            fused_norms: true,
            adapter,
            limits,
            max_binding_bytes,
            gpu_kernels: info.device_type != wgpu::DeviceType::Cpu,
            kernels: KernelCache::new(false),
            placeholder,
        }))
    }

    /// A context whose weights are split at `bytes` per part (tests of the split path).
    pub fn with_max_binding_bytes(self: Arc<Self>, bytes: u64) -> Result<Arc<Self>> {
        self.reconfigured(|ctx| GpuContext { max_binding_bytes: bytes.min(ctx.max_binding_bytes), ..ctx })
    }

    /// Settings change only before anything (a model, a session) holds the context.
    fn reconfigured(self: Arc<Self>, change: impl FnOnce(GpuContext) -> GpuContext) -> Result<Arc<Self>> {
        let ctx = Arc::try_unwrap(self).map_err(|_| Error::invalid("context", "already shared; change its settings before loading a model"))?;
        Ok(Arc::new(change(ctx)))
    }

    /// A context that runs the kernel variants and weight layout meant for GPUs (`gpu_style`)
    /// or for CPU devices, whatever the adapter is: tests cover both everywhere.
    pub fn with_kernel_style(self: Arc<Self>, gpu_style: bool) -> Result<Arc<Self>> {
        self.reconfigured(|ctx| GpuContext { gpu_kernels: gpu_style, ..ctx })
    }

    /// Which kernel variants run, for reports: "GPU", or "CPU-device" with the load width of
    /// its matrix kernels and whether the matvec and matmul share X through subgroups.
    pub fn kernel_style(&self) -> &'static str {
        match (self.gpu_kernels, self.int64_loads, self.shared_x) {
            (true, _, _) => "GPU",
            (false, true, true) => "CPU-device, 64-bit loads, X shared in subgroups",
            (false, true, false) => "CPU-device, 64-bit loads",
            (false, false, _) => "CPU-device, 32-bit loads",
        }
    }

    /// A context whose CPU-device matvec and matmul load with 32-bit components even where the
    /// device has 64-bit integers (`int64_loads` false; tests cover both loads).
    pub fn with_int64_loads(self: Arc<Self>, int64: bool) -> Result<Arc<Self>> {
        if int64 && !self.adapter.shader_int64 {
            return Err(Error::invalid("context", format!("{} has no 64-bit integers in shaders", self.adapter.name)));
        }
        self.reconfigured(|ctx| GpuContext { int64_loads: int64, ..ctx })
    }

    /// A context whose CPU-device matvec and matmul share X through subgroups (`true`, the
    /// default where the device's subgroups are exactly 8 invocations) or have every invocation
    /// load it (`false`; tests cover both), for A/B measurements too
    /// (examples/cpu_variants_ab.rs).
    pub fn with_shared_x(self: Arc<Self>, shared: bool) -> Result<Arc<Self>> {
        if shared && !self.adapter.can_share_x() {
            let [min, max] = self.adapter.subgroup_sizes;
            return Err(Error::invalid("context", format!("{}: subgroups of {min}-{max} invocations, not exactly 8", self.adapter.name)));
        }
        self.reconfigured(|ctx| GpuContext { shared_x: shared, ..ctx })
    }

    /// A context whose CPU-device scan steps load at most `widest` (see `scan_loads`; tests
    /// cover each), for A/B measurements too (examples/cpu_variants_ab.rs).
    pub fn with_scan_loads(self: Arc<Self>, widest: ScanLoads) -> Result<Arc<Self>> {
        if widest == ScanLoads::Int64 && !self.adapter.shader_int64 {
            return Err(Error::invalid("context", format!("{} has no 64-bit integers in shaders", self.adapter.name)));
        }
        self.reconfigured(|ctx| GpuContext { scan_loads: widest, ..ctx })
    }

    /// A context whose decode steps run the norms inside in_proj (`true`, the default) or as
    /// dispatches of their own (`false`), for A/B measurements (examples/cpu_variants_ab.rs).
    pub fn with_fused_norms(self: Arc<Self>, fused: bool) -> Result<Arc<Self>> {
        self.reconfigured(|ctx| GpuContext { fused_norms: fused, ..ctx })
    }

    /// A context whose shaders carry naga's loop counters (`true`) or not (`false`, the
    /// default; see KernelCache::loop_bounding), for A/B measurements
    /// (examples/cpu_variants_ab.rs).
    pub fn with_loop_bounding(self: Arc<Self>, bounded: bool) -> Result<Arc<Self>> {
        self.reconfigured(|ctx| GpuContext { kernels: KernelCache::new(bounded), ..ctx })
    }

    /// Every adapter wgpu can see, for `mamba-wgpu info`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn list_adapters() -> Vec<String> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
            .into_iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect()
    }
}

async fn pick_adapter(instance: &wgpu::Instance, filter: &str) -> Result<wgpu::Adapter> {
    let wanted = filter.to_lowercase();
    let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
    let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
    adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&wanted)).ok_or_else(|| {
        if names.is_empty() {
            Error::NoAdapter(NO_ADAPTER_HELP.to_string())
        } else {
            Error::invalid("adapter", format!("no adapter matches `{filter}`; available: {}", names.join(", ")))
        }
    })
}
