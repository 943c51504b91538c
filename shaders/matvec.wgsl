// Matrix-vector product for decode (one token per sequence, BATCH sequences):
//   Y[m, y_offset + n] = act(s_m sum_k X[m * x_stride + x_offset + k] * W[n, k] + bias[bias_offset + n])
// with s_m = 1 where p.rms_norm is 0, and with `Y +=` in place of `Y =` where p.accumulate is 1
// (out_proj adding into the residual stream). With p.rms_norm = 1, s_m = 1 / sqrt(mean_k
// X[m, k]^2 + eps): an RMSNorm of X's row without its weight, which the loader folds into W's
// columns (src/model/gpu_weights.rs), so that in_proj normalizes its own input and a decode
// step needs no norm dispatch per layer. Every workgroup computes s_m for itself from a read
// of X's rows before its loop (norm_scales).
//
// Decode is bound by reading the weights: every weight byte is read once per token, so this
// kernel is built around the loads of W, 16 bytes at a time (a "unit": 4 f32 or 8 packed f16
// of one row, rows padded to whole units). All BATCH rows of X share each weight load; BATCH
// is an override constant so the accumulators stay in registers (a pipeline per batch size).
// - main: 32 invocations share an output row and together load 512 contiguous bytes of it per
//   iteration (coalesced), then reduce in workgroup memory.
// - main_conv: main for in_proj in a decode step, with the causal conv1d + SiLU of the next op
//   fused into the store of the x half (saves a dispatch per layer).
// Rows of X that are not 16-byte aligned (small test models) take an element-wise path.

override WEIGHT_F16: bool = false;
override BATCH: u32 = 1u;  // 1..=MAX_BATCH
const MAX_BATCH: u32 = 8u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    x_stride: u32,
    x_offset: u32,
    y_stride: u32,
    y_offset: u32,
    bias_offset: u32,
    has_bias: u32,
    activation: u32,  // 0: identity, 1: softplus
    wide: u32,        // 1: X rows are 16-byte aligned and k fills whole units: vec4 loads of X
    conv_channels: u32,  // main_conv: rows below this (in_proj's x half) get the conv step
    conv_has_bias: u32,
    rms_norm: u32,    // 1: scale row m's sums by s_m, X's RMSNorm (above)
    norm_eps: f32,
    accumulate: u32,  // 1: Y += the result instead of Y = the result
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

// main: invocations per workgroup and per output row (32: enough loads in flight per row to
// keep a GPU's memory busy even for matrices of few rows, such as x_proj's 80).
const WG: u32 = 256u;
const LANES: u32 = 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // (BATCH, x_stride)
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;   // (n, units): 16-byte units of W's rows
@group(0) @binding(3) var<storage, read> bias: array<f32>;      // (bias_offset + n)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;   // (BATCH, y_stride)

// main_conv only (shaders/conv1d.wgsl's conv_step, on in_proj's output), for d_conv = 4 (every Mamba release; src/ops/linear.rs runs the conv step on its own
// otherwise): a channel's weights and its window of the state are one vec4 each.
@group(0) @binding(5) var<storage, read> conv_w: array<vec4<f32>>;              // (conv_channels)
@group(0) @binding(6) var<storage, read> conv_b: array<f32>;                    // (conv_channels)
@group(0) @binding(7) var<storage, read_write> conv_state: array<vec4<f32>>;    // (BATCH, conv_channels), newest last
@group(0) @binding(8) var<storage, read_write> x_conv: array<f32>;              // (BATCH, conv_channels)

var<workgroup> partial: array<f32, 2048>;  // (BATCH, WG): main's per-invocation partial sums
var<workgroup> norm_scale: array<f32, 8>;  // (BATCH): main's s_m where p.rms_norm is 1

fn units_per_row() -> u32 {
    return select((p.k + 3u) / 4u, (p.k + 7u) / 8u, WEIGHT_F16);
}

fn x_at(m: u32, kk: u32) -> f32 {
    let i = m * p.x_stride + p.x_offset + kk;
    return x[i >> 2u][i & 3u];
}

// Elements 4 * q .. 4 * q + 3 of row m of X (q counts vec4s), zero past k. `wide` is p.wide:
// one vec4 load where X's rows are 16-byte aligned and k fills whole units.
fn x_vec(m: u32, q: u32, wide: bool) -> vec4<f32> {
    if (wide) {
        return x[(m * p.x_stride + p.x_offset) / 4u + q];
    }
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (4u * q + i < p.k) {
            v[i] = x_at(m, 4u * q + i);
        }
    }
    return v;
}

fn softplus(v: f32) -> f32 {
    // log(1 + exp(v)), and v itself above 20 as PyTorch does (exp would lose nothing there).
    return select(log(1.0 + exp(v)), v, v > 20.0);
}

// Row m's sum times s_m, in main and main_conv (zero-initialized norm_scale is not used
// where p.rms_norm is 0).
fn normed(m: u32, sum: f32) -> f32 {
    return select(sum, sum * norm_scale[m], p.rms_norm == 1u);
}

// Stores row sum `sum` (s_m applied) of batch row m, output n.
fn store(m: u32, n: u32, sum: f32) {
    var v = sum;
    if (p.has_bias == 1u) {
        v += bias[p.bias_offset + n];
    }
    if (p.activation == 1u) {
        v = softplus(v);
    }
    let i = m * p.y_stride + p.y_offset + n;
    if (p.accumulate == 1u) {
        v += y[i];
    }
    y[i] = v;
}

// norm_scale for main and main_conv, where p.rms_norm is 1: each of the WG invocations sums
// the squares of every WG-th vec4 of X's rows, then a tree in workgroup memory (`partial`,
// which row_sums reuses after the last barrier).
fn norm_scales(flat: u32) {
    if (p.rms_norm != 1u) {
        return;
    }
    let wide = p.wide == 1u;
    for (var m = 0u; m < BATCH; m++) {
        var total = 0.0;
        for (var q = flat; q < (p.k + 3u) / 4u; q += WG) {
            let v = x_vec(m, q, wide);
            total += dot(v, v);
        }
        partial[m * WG + flat] = total;
    }
    workgroupBarrier();
    sum_groups(flat, WG);
    if (flat < BATCH) {
        norm_scale[flat] = scale_of(partial[flat * WG]);
    }
    workgroupBarrier();
}

// s_m from the sum of squares of X's row m.
fn scale_of(sum_sq: f32) -> f32 {
    return inverseSqrt(sum_sq / f32(p.k) + p.norm_eps);
}

// sum over unit j of a row of W (4 f32 or 8 f16) times the matching X values of batch row m,
// loaded straight from X: main keeps no array of them, see below.
fn unit_dot_x(unit: vec4<u32>, m: u32, j: u32, wide: bool) -> f32 {
    if (WEIGHT_F16) {
        let lo = vec4<f32>(unpack2x16float(unit.x), unpack2x16float(unit.y));
        let hi = vec4<f32>(unpack2x16float(unit.z), unpack2x16float(unit.w));
        return dot(lo, x_vec(m, 2u * j, wide)) + dot(hi, x_vec(m, 2u * j + 1u, wide));
    }
    return dot(bitcast<vec4<f32>>(unit), x_vec(m, j, wide));
}

// Row sums of main and main_conv: the 32 invocations of output row n (returned) each sum
// a stride of its units, then reduce in workgroup memory; the sum of batch row m ends in
// partial[m * WG + flat] of the row's lane 0. Accumulators of up to 8 batch rows live in two
// vec4s, not an array: arrays indexed in loops went to local memory on NVIDIA's Vulkan
// compiler (this kernel then ran 1.3-1.8x slower on an H200).
fn row_sums(flat: u32, wg: u32) -> u32 {
    let lane = flat % LANES;
    let n = wg * (WG / LANES) + flat / LANES;
    let units = units_per_row();
    let wide = p.wide == 1u;
    var acc_lo = vec4<f32>(0.0);  // batch rows 0..3
    var acc_hi = vec4<f32>(0.0);  // batch rows 4..7
    if (n < p.n) {
        for (var j = lane; j < units; j += LANES) {
            let unit = w[n * units + j];
            for (var m = 0u; m < min(BATCH, 4u); m++) {
                acc_lo[m] += unit_dot_x(unit, m, j, wide);
            }
            for (var m = 4u; m < BATCH; m++) {
                acc_hi[m - 4u] += unit_dot_x(unit, m, j, wide);
            }
        }
    }
    for (var m = 0u; m < BATCH; m++) {
        partial[m * WG + flat] = select(acc_hi[m % 4u], acc_lo[m % 4u], m < 4u);
    }
    workgroupBarrier();
    sum_groups(flat, LANES);
    return n;
}

// partial[m * WG + i] summed over each group of `span` invocations (a power of two) into the
// group's first, in a tree; every invocation calls it (barriers).
fn sum_groups(flat: u32, span: u32) {
    for (var stride = span / 2u; stride > 0u; stride /= 2u) {
        if (flat % span < stride) {
            for (var m = 0u; m < BATCH; m++) {
                partial[m * WG + flat] += partial[m * WG + flat + stride];
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) flat: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    norm_scales(flat);
    let n = row_sums(flat, wg.x);
    if (flat % LANES == 0u && n < p.n) {
        for (var m = 0u; m < BATCH; m++) {
            store(m, n, normed(m, partial[m * WG + flat]));
        }
    }
}

@compute @workgroup_size(WG)
fn main_conv(@builtin(local_invocation_index) flat: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    norm_scales(flat);
    let n = row_sums(flat, wg.x);
    if (flat % LANES == 0u && n < p.n) {
        for (var m = 0u; m < BATCH; m++) {
            store_or_conv(m, n, normed(m, partial[m * WG + flat]));
        }
    }
}

// Row n of this part is row c = bias_offset + n of in_proj. The x half (c < conv_channels) goes
// through the conv step instead of being stored: x_t = in_proj's output; the window is the
// state's last 3 inputs then x_t, and becomes the new state;
//   x_conv = silu(conv_b + conv_w[c] . window).
// The window and the channel's weights are one vec4 each (d_conv = 4).
fn store_or_conv(m: u32, n: u32, sum: f32) {
    let c = p.bias_offset + n;
    if (c >= p.conv_channels) {
        store(m, n, sum);
        return;
    }
    var x_t = sum;
    if (p.has_bias == 1u) {
        x_t += bias[c];
    }
    let i = m * p.conv_channels + c;
    let window = vec4<f32>(conv_state[i].yzw, x_t);
    conv_state[i] = window;
    let acc = dot(conv_w[c], window) + select(0.0, conv_b[c], p.conv_has_bias == 1u);
    x_conv[i] = acc / (1.0 + exp(-acc));
}
