//! Adapter and device selection. The context owns the device, the queue and the pipeline cache;
//! nothing in the crate is global.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::kernels::KernelCache;

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
    /// Subgroup operations (SUBGROUP): enabled on the device where the adapter has them (the
    /// benchmark's per-state scan baseline sums with them; nothing in the model needs them).
    pub subgroups: bool,
    /// The adapter's smallest and largest subgroup size.
    pub subgroup_sizes: [u32; 2],
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
    pub(crate) kernels: KernelCache,
    /// The first error wgpu reported outside an error scope (out of memory, validation, a
    /// lost device): wgpu's default handler would abort the process; readbacks report it.
    device_error: Arc<Mutex<Option<String>>>,
    /// A tiny buffer bound where a kernel's optional input (a bias) is absent.
    pub(crate) placeholder: wgpu::Buffer,
}

impl GpuContext {
    /// The most decode steps a generation runs per submit on this adapter. On a GPU a step
    /// takes well under a millisecond and the submit, wait and readback around it cost as
    /// much: 16 steps share one round trip. A CPU device takes milliseconds per step, where
    /// the round trip is a small share: 8 keep the text flowing in smaller pieces.
    pub fn tokens_per_submit(&self) -> usize {
        if self.adapter.device_type == "Cpu" {
            8
        } else {
            16
        }
    }

    /// Picks the adapter wgpu prefers (high performance), or the one `adapter_filter` names on
    /// native platforms: an index in `info`'s list, or text its description contains.
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
        // Subgroups where the adapter has them, for the benchmark's baseline scan.
        let features = adapter.features() & wgpu::Features::SUBGROUP;
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
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_sizes: [info.subgroup_min_size, info.subgroup_max_size],
        };
        let device_error = Arc::new(Mutex::new(None));
        let slot = device_error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let message = match &e {
                wgpu::Error::OutOfMemory { .. } => "out of GPU memory: the model or batch does not fit the adapter".to_string(),
                other => other.to_string(),
            };
            slot.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(message);
        }));
        let slot = device_error.clone();
        device.set_device_lost_callback(move |reason, message| {
            slot.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(format!("the device was lost ({reason:?}): {message}"));
        });
        let max_binding_bytes = (limits.max_storage_buffer_binding_size).min(limits.max_buffer_size);
        let placeholder = crate::gpu::tensor::storage_with(&device, "placeholder", 4);
        Ok(Arc::new(GpuContext { device, queue, adapter, limits, max_binding_bytes, kernels: KernelCache::default(), device_error, placeholder }))
    }

    /// Fails with the device's error if wgpu reported one (out of memory, a lost device, a
    /// validation error) since the context was made.
    pub fn check_device(&self) -> Result<()> {
        match self.device_error.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(message) => Err(Error::Gpu(format!("{} on {}", message, self.adapter.name))),
            None => Ok(()),
        }
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

    /// Every adapter wgpu can see, numbered as `--adapter` takes them, for `mamba-wgpu info`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn list_adapters() -> Vec<String> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        numbered(&pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all())))
    }
}

/// The adapters as `info` lists them and `--adapter` counts them: "i: description".
fn numbered(adapters: &[wgpu::Adapter]) -> Vec<String> {
    adapters.iter().enumerate().map(|(i, a)| format!("{i}: {}", describe(a))).collect()
}

/// An adapter as `info` prints it and `--adapter` matches it: "name (Backend, DeviceType)".
fn describe(adapter: &wgpu::Adapter) -> String {
    let i = adapter.get_info();
    format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
}

/// The adapter `filter` picks: an index in the list `info` prints, or else the first whose
/// description ("name (Backend, DeviceType)", case-insensitive) contains it, so that two
/// adapters of one name on two backends can be told apart ("vulkan", "gl").
async fn pick_adapter(instance: &wgpu::Instance, filter: &str) -> Result<wgpu::Adapter> {
    let wanted = filter.to_lowercase();
    let mut adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
    let names = numbered(&adapters);
    if adapters.is_empty() {
        return Err(Error::NoAdapter(NO_ADAPTER_HELP.to_string()));
    }
    // A number within the list is an index; any other text (a number such as 4090 too) is
    // matched against the descriptions.
    let index = filter.trim().parse::<usize>().ok().filter(|&i| i < adapters.len());
    let position = index.or_else(|| adapters.iter().position(|a| describe(a).to_lowercase().contains(&wanted)));
    position
        .map(|i| adapters.swap_remove(i))
        .ok_or_else(|| Error::invalid("adapter", format!("no adapter matches `{filter}`; available: {}", names.join(", "))))
}
