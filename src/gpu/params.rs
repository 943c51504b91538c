//! Parameter blocks of the kernels, `#[repr(C)]` and Pod so they upload as bytes. Each mirrors
//! the `Params` struct at the top of its shader field for field (u32/f32 only, padded to 16
//! bytes as uniform buffers require).

use bytemuck::{Pod, Zeroable};

/// shaders/embedding.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct EmbeddingParams {
    pub rows: u32,
    pub d_model: u32,
    pub first_row: u32,
    pub part_rows: u32,
    pub _pad: [u32; 4],
}

/// shaders/add_rms_norm.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct NormParams {
    pub rows: u32,
    pub d: u32,
    pub in_step: u32,
    pub in_offset: u32,
    pub add: u32,
    pub eps: f32,
    pub has_weight: u32,
    pub _pad: u32,
}

/// shaders/matmul.wgsl and shaders/matvec.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LinearParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub x_stride: u32,
    pub x_offset: u32,
    pub y_stride: u32,
    pub y_offset: u32,
    pub bias_offset: u32,
    pub has_bias: u32,
    pub activation: u32,
    /// matvec only: rows of X are 16-byte aligned and k fills whole units of W (vec4 loads of X)
    pub wide: u32,
    /// matvec main_conv only: rows of W below this get the conv step (in_proj's x half)
    pub conv_channels: u32,
    pub conv_has_bias: u32,
    /// (matvec: whether and how X is normalized on load are its NORM and NORM_WEIGHT constants)
    pub _pad0: u32,
    /// matvec only: the epsilon of the RMSNorm on load
    pub norm_eps: f32,
    /// matvec only: Y += the result instead of Y = the result
    pub accumulate: u32,
    /// matvec main_conv only: in_proj's first row of the conv (Mamba-2: d_inner), and d_conv
    pub conv_first: u32,
    pub conv_k: u32,
    /// matvec only: groups of the RMSNorm on load (1: whole rows)
    pub norm_groups: u32,
    pub _pad1: u32,
}

/// shaders/conv1d.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ConvParams {
    pub batch: u32,
    pub t_len: u32,
    pub channels: u32,
    pub k: u32,
    pub x_stride: u32,
    pub has_bias: u32,
    pub x_offset: u32,
    pub _pad: u32,
}

/// shaders/scan_chunked.wgsl, scan_step.wgsl and the benchmark's bench/scan_per_state*.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ScanParams {
    pub batch: u32,
    pub t_len: u32,
    pub d_inner: u32,
    pub d_state: u32,
    pub dt_rank: u32,
    pub xdbl_stride: u32,
    pub z_stride: u32,
    pub z_offset: u32,
}

/// shaders/scan_step_fused.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ScanStepFusedParams {
    pub batch: u32,
    pub d_inner: u32,
    pub d_state: u32,
    pub dt_rank: u32,
    pub proj_stride: u32,
    pub x_offset: u32,
    pub z_offset: u32,
    pub wide: u32,
    pub mixer_norm: u32,
    pub norm_eps: f32,
    pub _pad: [u32; 2],
}

/// shaders/argmax.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ArgmaxParams {
    pub rows: u32,
    pub n: u32,
    pub _pad: [u32; 2],
}

/// shaders/sample.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct SampleParams {
    pub vocab: u32,
    pub batch: u32,
    pub hist_cap: u32,
    pub step: u32,
}

/// shaders/group_rms_norm.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GroupNormParams {
    pub rows: u32,
    pub x_stride: u32,
    pub x_offset: u32,
    pub first_width: u32,
    pub width: u32,
    pub gated: u32,
    pub z_stride: u32,
    pub z_offset: u32,
    pub has_weight: u32,
    pub eps: f32,
    pub _pad: [u32; 2],
}

/// shaders/ssd.wgsl
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct SsdParams {
    pub batch: u32,
    pub t_len: u32,
    pub n_heads: u32,
    pub head_dim: u32,
    pub d_state: u32,
    pub heads_per_group: u32,
    pub xbc_stride: u32,
    pub c_offset: u32,
    pub dt_stride: u32,
    pub dt_offset: u32,
    pub dt_min: f32,
    pub dt_max: f32,
    pub xbc_offset: u32,
    /// sequential only: y * silu(z)
    pub gated: u32,
    pub z_stride: u32,
    pub z_offset: u32,
}
