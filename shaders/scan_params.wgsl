// What every scan module shares, its first part (src/gpu/kernels.rs, MODULES): the parameters
// (src/gpu/params.rs, ScanParams), the per-channel buffers and silu. Each module's next part
// declares x_proj's output (binding 3), A (5) and the state h (7), in the width it loads them:
// shaders/scan_state*.wgsl (the scan step), scan_chunked.wgsl, scan_per_state.wgsl.

struct Params {
    batch: u32,
    t_len: u32,
    d_inner: u32,
    d_state: u32,
    dt_rank: u32,
    xdbl_stride: u32,  // dt_rank + 2 * d_state: x_proj's output row is dt_low | B | C
    z_stride: u32,     // 2 * d_inner: z is the second half of in_proj's output
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // (batch, t_len, d_inner) conv output
@group(0) @binding(2) var<storage, read> dt: array<f32>;          // (batch, t_len, d_inner) after softplus
@group(0) @binding(4) var<storage, read> xz: array<f32>;          // (batch, t_len, z_stride)
@group(0) @binding(6) var<storage, read> d_skip: array<f32>;      // (d_inner)
@group(0) @binding(8) var<storage, read_write> y: array<f32>;     // (batch, t_len, d_inner)

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}
