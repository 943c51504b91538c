// Matrix-vector product for decode (one token per sequence, BATCH sequences):
//   Y[m, y_offset + n] = act(sum_k X'[m, k] * W[n, k] + bias[bias_offset + n]),
//   X'[m, k] = X[m * x_stride + x_offset + k] * s_{m, g(k)} * norm_w[k]
// with `Y +=` in place of `Y =` where p.accumulate is 1 (out_proj adding into the residual
// stream). X' is X where NORM is 0. Otherwise it is an RMSNorm of X's row on load, over
// p.norm_groups groups of k / norm_groups columns (NORM 1: one group, the whole row):
//   s_{m, g} = 1 / sqrt(mean over group g of X[m, k]^2 + eps),
// times the norm's weight norm_w where NORM_WEIGHT is true. So in_proj normalizes the residual
// itself (the layer's RMSNorm), the LM head applies the final norm (its weight cannot be folded
// into a head tied to the embedding), and Mamba-2's out_proj applies the gated norm per group
// (the gate silu(z) is applied by the scan step before): a decode step has no norm dispatch.
// Every workgroup computes the s_{m, g} it needs for itself from a read of X's rows before its
// loop (norm_scales): there is no grid-wide barrier, and X is small next to W.
//
// Decode is bound by reading the weights: every weight byte is read once per token, so this
// kernel is built around the loads of W, a "unit" at a time: 4 f32 or 8 packed f16 of one row
// (16 bytes; rows padded to whole units), or 8 values of a block format, dequantized as they
// are loaded (8 to 36 bytes of a block, 4 to 12.5 bits per value). All BATCH rows of X share each weight load; BATCH
// is an override constant so the accumulators stay in registers (a pipeline per batch size);
// so are the norm's mode and weight, so the inner loop of a plain product has none of their
// branches (a pipeline per mode).
// The norm's weight multiplies the weight unit once (shared by the batch rows); a group's scale
// multiplies a unit's sum (one group per unit), or, with a single group, the row's sum.
// - main: 32 invocations share an output row and together load 512 contiguous bytes of it per
//   iteration (coalesced), then reduce in workgroup memory.
// - main_conv: main for in_proj in a decode step, with the causal conv1d + SiLU of the next op
//   fused into the store of the conv's rows (in_proj's x, or Mamba-2's xBC): their output
//   overwrites in_proj's output in place, which the conv consumed (saves a dispatch per layer,
//   and a binding: main_conv has the 8 storage buffers WebGPU guarantees).
// Rows of X that are not 16-byte aligned (small test models), or groups that split a unit, take
// an element-wise path.

override FORMAT: u32 = 0u;  // the weights' format: see "weight formats" below
override BATCH: u32 = 1u;  // 1..=MAX_BATCH
override NORM: u32 = 0u;   // 0: no norm on load; 1: RMSNorm over the whole row; 2: per group
override NORM_WEIGHT: bool = false;  // X' also times norm_w
const MAX_BATCH: u32 = 8u;
const MAX_GROUPS: u32 = 16u;  // most groups of the RMSNorm on load

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
    wide: u32,        // 1: X rows are 16-byte aligned, k fills whole units, and so does each norm group: vec4 loads of X
    conv_channels: u32,  // main_conv: rows conv_first .. conv_first + conv_channels of in_proj get the conv step
    conv_has_bias: u32,
    _pad0: u32,       // (the norm's mode is the NORM constant)
    norm_eps: f32,
    accumulate: u32,  // 1: Y += the result instead of Y = the result
    conv_first: u32,  // main_conv: in_proj's first conv row (Mamba-1: 0, x; Mamba-2: d_inner, xBC after z)
    conv_k: u32,      // main_conv: d_conv
    norm_groups: u32, // groups of the RMSNorm on load, 1..=MAX_GROUPS
    _pad1: u32,       // (and its weight NORM_WEIGHT)
}

// main: invocations per workgroup and per output row (32: enough loads in flight per row to
// keep a GPU's memory busy even for matrices of few rows, such as x_proj's 80).
const WG: u32 = 256u;
const LANES: u32 = 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // (BATCH, x_stride)
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;       // (n, units) 16-byte units of W's rows, or (n, blocks) of a block format
@group(0) @binding(3) var<storage, read> bias: array<f32>;          // (bias_offset + n)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;       // (BATCH, y_stride)
@group(0) @binding(5) var<storage, read> norm_w: array<vec4<f32>>;  // (k) where NORM_WEIGHT

// main_conv only (shaders/conv1d.wgsl's conv_step, on in_proj's output; its output goes to Y).
@group(0) @binding(6) var<storage, read> conv_w: array<f32>;               // (conv_channels, conv_k)
@group(0) @binding(7) var<storage, read> conv_b: array<f32>;               // (conv_channels)
@group(0) @binding(8) var<storage, read_write> conv_state: array<f32>;     // (BATCH, conv_channels, conv_k), newest last

var<workgroup> partial: array<f32, 2048>;   // (BATCH, WG): per-invocation partial sums
var<workgroup> norm_scale: array<f32, 128>; // (BATCH, MAX_GROUPS): s_{m, g} where NORM > 0

// Units of 4 values (f32) or 8 (every other format) per row.
fn units_per_row() -> u32 {
    return select((p.k + 3u) / 4u, (p.k + 7u) / 8u, FORMAT != F32);
}

fn word(i: u32) -> u32 {
    return w[i >> 2u][i & 3u];
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

fn group_width() -> u32 {
    return p.k / max(p.norm_groups, 1u);
}

// x_vec times the group scale of each element (the element-wise path, where a group boundary
// may fall inside a unit).
fn x_vec_scaled(m: u32, q: u32) -> vec4<f32> {
    var v = x_vec(m, q, false);
    for (var i = 0u; i < 4u; i++) {
        let g = min((4u * q + i) / group_width(), p.norm_groups - 1u);
        v[i] *= norm_scale[m * MAX_GROUPS + g];
    }
    return v;
}

fn softplus(v: f32) -> f32 {
    // log(1 + exp(v)), and v itself above 20 as PyTorch does (exp would lose nothing there).
    return select(log(1.0 + exp(v)), v, v > 20.0);
}

// Row m's sum times s_m where the norm has a single group (with several, row_sums applied them).
fn normed(m: u32, sum: f32) -> f32 {
    return select(sum, sum * norm_scale[m * MAX_GROUPS], NORM == 1u);
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

// Invocations per norm group in norm_scales: WG split into a power of two of slots, at least
// norm_groups of them.
fn group_lanes() -> u32 {
    var span = WG;
    while (span > 1u && span * p.norm_groups > WG) {
        span /= 2u;
    }
    return span;
}

// norm_scale for main and main_conv, where NORM > 0: the invocations of group g's slot
// each sum the squares of a stride of its columns of X's rows (vec4s where p.wide says the
// groups are whole vec4s), then a tree in workgroup memory (`partial`, which row_sums reuses
// after the last barrier).
fn norm_scales(flat: u32) {
    if (NORM == 0u) {
        return;
    }
    let span = group_lanes();
    let g = flat / span;
    let lane = flat % span;
    let width = group_width();
    let wide = p.wide == 1u;
    for (var m = 0u; m < BATCH; m++) {
        var total = 0.0;
        if (g < p.norm_groups) {
            if (wide) {
                for (var q = lane; q < width / 4u; q += span) {
                    let v = x_vec(m, g * width / 4u + q, true);
                    total += dot(v, v);
                }
            } else {
                for (var i = lane; i < width; i += span) {
                    let v = x_at(m, g * width + i);
                    total += v * v;
                }
            }
        }
        partial[m * WG + flat] = total;
    }
    workgroupBarrier();
    sum_groups(flat, span);
    if (flat < BATCH * p.norm_groups) {
        let m = flat / p.norm_groups;
        let gg = flat % p.norm_groups;
        norm_scale[m * MAX_GROUPS + gg] = inverseSqrt(partial[m * WG + gg * span] / f32(width) + p.norm_eps);
    }
    workgroupBarrier();
}

// sum over unit j of a row of W (lo: its first 4 values, hi: the next 4 where f16, times the
// norm's weight) times the matching X values of batch row m, loaded straight from X (main keeps
// no array of them, see below), times the scale of group g where the groups are whole units.
fn unit_dot_x(lo: vec4<f32>, hi: vec4<f32>, m: u32, j: u32, wide: bool, g: u32) -> f32 {
    let per = select(1u, 2u, FORMAT != F32);
    if (NORM == 2u) {
        if (!wide) {
            var s = dot(lo, x_vec_scaled(m, per * j));
            if (FORMAT != F32) {
                s += dot(hi, x_vec_scaled(m, per * j + 1u));
            }
            return s;
        }
        var s = dot(lo, x_vec(m, per * j, true));
        if (FORMAT != F32) {
            s += dot(hi, x_vec(m, per * j + 1u, true));
        }
        return s * norm_scale[m * MAX_GROUPS + g];
    }
    var s = dot(lo, x_vec(m, per * j, wide));
    if (FORMAT != F32) {
        s += dot(hi, x_vec(m, per * j + 1u, wide));
    }
    return s;
}

// Unit j of W's row n as f32 (lo, hi), times the norm's weight where NORM_WEIGHT.
fn weight_unit(n: u32, j: u32, units: u32) -> Eight {
    var u: Eight;
    if (FORMAT == F32) {
        u.lo = bitcast<vec4<f32>>(w[n * units + j]);
        u.hi = vec4<f32>(0.0);
    } else if (FORMAT == F16) {
        let unit = w[n * units + j];
        u.lo = vec4<f32>(unpack2x16float(unit.x), unpack2x16float(unit.y));
        u.hi = vec4<f32>(unpack2x16float(unit.z), unpack2x16float(unit.w));
    } else {
        u = dequant8(n * block_row_words(p.k), j);
    }
    if (NORM_WEIGHT) {
        let q = select(j, 2u * j, FORMAT != F32);
        u.lo *= norm_w[q];
        // The norm's weight holds (k + 3) / 4 vec4s; an f16 unit may reach one past them, where
        // W is zero padding.
        if (FORMAT != F32 && q + 1u < (p.k + 3u) / 4u) {
            u.hi *= norm_w[q + 1u];
        }
    }
    return u;
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
    // The norm group of unit j where the groups are whole units, tracked as j advances (no
    // division per unit).
    let group_units = max(group_width() / select(4u, 8u, FORMAT != F32), 1u);
    var g = lane / group_units;
    var next_group = (g + 1u) * group_units;
    var acc_lo = vec4<f32>(0.0);  // batch rows 0..3
    var acc_hi = vec4<f32>(0.0);  // batch rows 4..7
    if (n < p.n) {
        for (var j = lane; j < units; j += LANES) {
            if (NORM == 2u && j >= next_group) {
                g = j / group_units;
                next_group = (g + 1u) * group_units;
            }
            let u = weight_unit(n, j, units);
            for (var m = 0u; m < min(BATCH, 4u); m++) {
                acc_lo[m] += unit_dot_x(u.lo, u.hi, m, j, wide, g);
            }
            for (var m = 4u; m < BATCH; m++) {
                acc_hi[m - 4u] += unit_dot_x(u.lo, u.hi, m, j, wide, g);
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

// Row n of this part is row r = bias_offset + n of in_proj. Rows conv_first .. conv_first +
// conv_channels (channel c = r - conv_first) go through the conv step: x_t = in_proj's output;
// the window is the state's last conv_k - 1 inputs then x_t, and becomes the new state;
//   Y = silu(conv_b[c] + conv_w[c] . window),
// stored where in_proj's x_t would have been. Other rows are stored as in main.
fn store_or_conv(m: u32, n: u32, sum: f32) {
    let r = p.bias_offset + n;
    if (r < p.conv_first || r >= p.conv_first + p.conv_channels) {
        store(m, n, sum);
        return;
    }
    let c = r - p.conv_first;
    var x_t = sum;
    if (p.has_bias == 1u) {
        x_t += bias[r];
    }
    let base = (m * p.conv_channels + c) * p.conv_k;
    var acc = select(0.0, conv_b[c], p.conv_has_bias == 1u);
    for (var j = 0u; j + 1u < p.conv_k; j++) {
        let v = conv_state[base + j + 1u];
        conv_state[base + j] = v;
        acc = fma(conv_w[c * p.conv_k + j], v, acc);
    }
    conv_state[base + p.conv_k - 1u] = x_t;
    acc = fma(conv_w[c * p.conv_k + p.conv_k - 1u], x_t, acc);
    y[m * p.y_stride + p.y_offset + n] = silu(acc);
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// ---- weight formats: the same text in matvec.wgsl, matmul.wgsl and embedding.wgsl ----
// FORMAT 0: f32; 1: f16, two per word (unpack2x16float, which every WebGPU device has);
// 2..9: GGUF's Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q5_0, Q5_1, Q4_1 blocks with their fields aligned
// to words (src/quant/mod.rs, gpu_block), dequantized here as they are loaded; a row is a whole
// number of blocks. `word(i)` is word i of the weight buffer, defined by each shader.
const F32: u32 = 0u;
const F16: u32 = 1u;
const Q8_0: u32 = 2u;
const Q4_0: u32 = 3u;
const Q4_K: u32 = 4u;
const Q5_K: u32 = 5u;
const Q6_K: u32 = 6u;
const Q5_0: u32 = 7u;
const Q5_1: u32 = 8u;
const Q4_1: u32 = 9u;

// Values in a block and words per block on the GPU.
fn block_values() -> u32 {
    return select(32u, 256u, FORMAT >= Q4_K && FORMAT <= Q6_K);
}

fn block_words() -> u32 {
    switch (FORMAT) {
        case 2u: { return 9u; }
        case 3u, 9u: { return 5u; }
        case 4u: { return 36u; }
        case 5u: { return 44u; }
        case 7u, 8u: { return 6u; }
        default: { return 53u; }
    }
}

// Words of a row of k values in a block format.
fn block_row_words(k: u32) -> u32 {
    return k / block_values() * block_words();
}

// Eight consecutive values of a row: lo holds the first four.
struct Eight {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The four bytes of a word as signed values.
fn i8x4(v: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// The nibbles at bit `shift` (0: low, 4: high) of a word's four bytes.
fn nibbles(v: u32, shift: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(15u);
}

// Byte i of the block at word `base`.
fn block_byte(base: u32, i: u32) -> u32 {
    return (word(base + i / 4u) >> (8u * (i % 4u))) & 255u;
}

// Q4_K / Q5_K: sub-block j's 6-bit scale and minimum from the 12 bytes at word `at`.
fn scale_min_k4(at: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(block_byte(at, j) & 63u), f32(block_byte(at, j + 4u) & 63u));
    }
    let sc = (block_byte(at, j + 4u) & 15u) | ((block_byte(at, j - 4u) >> 6u) << 4u);
    let m = (block_byte(at, j + 4u) >> 4u) | ((block_byte(at, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Values 8u .. 8u + 7 of the block-format row whose blocks start at word `row`.
fn dequant8(row: u32, u: u32) -> Eight {
    var e: Eight;
    if (FORMAT == Q8_0) {
        // 32 int8 in words 0..7, d in word 8: value = d * q
        let base = row + (u / 4u) * 9u + (u % 4u) * 2u;
        let d = unpack2x16float(word(row + (u / 4u) * 9u + 8u)).x;
        e.lo = d * i8x4(word(base));
        e.hi = d * i8x4(word(base + 1u));
    } else if (FORMAT == Q4_0) {
        // byte i holds value i (low nibble) and i + 16 (high): value = d * (q - 8)
        let block = row + (u / 4u) * 5u;
        let q = u % 4u;
        let d = unpack2x16float(word(block + 4u)).x;
        let shift = (q / 2u) * 4u;
        e.lo = d * (vec4<f32>(nibbles(word(block + (q % 2u) * 2u), shift)) - 8.0);
        e.hi = d * (vec4<f32>(nibbles(word(block + (q % 2u) * 2u + 1u), shift)) - 8.0);
    } else if (FORMAT == Q5_0 || FORMAT == Q5_1 || FORMAT == Q4_1) {
        // quants in words 0..3 as Q4_0's; Q5: the fifth bits in word 4 (bit e: value e of the
        // block); then d (Q5_0: value = d * (q - 16)) or d and m (value = d * q + m)
        let block = row + (u / 4u) * block_words();
        let q = u % 4u;
        let shift = (q / 2u) * 4u;
        var lo = vec4<f32>(nibbles(word(block + (q % 2u) * 2u), shift));
        var hi = vec4<f32>(nibbles(word(block + (q % 2u) * 2u + 1u), shift));
        let dm = unpack2x16float(word(block + block_words() - 1u));
        var m = dm.y;
        if (FORMAT != Q4_1) {
            let bits = word(block + 4u) >> (8u * q);
            lo += 16.0 * vec4<f32>((vec4<u32>(bits) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u));
            hi += 16.0 * vec4<f32>((vec4<u32>(bits) >> vec4<u32>(4u, 5u, 6u, 7u)) & vec4<u32>(1u));
            m = select(dm.y, -16.0 * dm.x, FORMAT == Q5_0);
        }
        e.lo = dm.x * lo + m;
        e.hi = dm.x * hi + m;
    } else if (FORMAT == Q4_K || FORMAT == Q5_K) {
        // d, dmin | 12 scale bytes | (Q5_K: qh, 32 bytes) | qs, 128 bytes. Values 64c .. 64c + 31
        // are the low nibbles of qs[32c ..], 64c + 32 .. the high ones; Q5_K's fifth bit is bit
        // 2c (+ 1 for the high half) of qh[l]: value = d * sc * q - dmin * m per sub-block.
        let v = u % 32u;
        let block = row + (u / 32u) * block_words();
        let dm = unpack2x16float(word(block));
        let c = v / 8u;
        let half = (v % 8u) / 4u;
        let sm = scale_min_k4(block + 1u, 2u * c + half) * dm;
        let qs = block + select(4u, 12u, FORMAT == Q5_K) + 8u * c + (v % 4u) * 2u;
        var lo = vec4<f32>(nibbles(word(qs), 4u * half));
        var hi = vec4<f32>(nibbles(word(qs + 1u), 4u * half));
        if (FORMAT == Q5_K) {
            let qh = block + 4u + (v % 4u) * 2u;
            let bit = 2u * c + half;
            lo += 16.0 * vec4<f32>((vec4<u32>(word(qh)) >> (vec4<u32>(0u, 8u, 16u, 24u) + bit)) & vec4<u32>(1u));
            hi += 16.0 * vec4<f32>((vec4<u32>(word(qh + 1u)) >> (vec4<u32>(0u, 8u, 16u, 24u) + bit)) & vec4<u32>(1u));
        }
        e.lo = sm.x * lo - sm.y;
        e.hi = sm.x * hi - sm.y;
    } else {
        // Q6_K: ql (128 bytes) | qh (64) | 16 int8 scales | d. In each half of 128 values,
        // value l + 32g (l < 32) has its low 4 bits in ql[l + 32 (g % 2)] (nibble g / 2) and its
        // top 2 bits at bit 2g of qh[l]: value = d * scale[l / 16 + 2g] * (q - 32).
        let v = u % 32u;
        let block = row + (u / 32u) * 53u;
        let n2 = v / 16u;
        let r = (v % 16u) * 8u;
        let g = r / 32u;
        let l0 = r % 32u;
        let ql = block + (64u * n2 + l0 + 32u * (g % 2u)) / 4u;
        let qh = block + 32u + (32u * n2 + l0) / 4u;
        let s = 8u * n2 + l0 / 16u + 2u * g;
        let scale = f32(bitcast<i32>(word(block + 48u + s / 4u) << (24u - 8u * (s % 4u))) >> 24u);
        let d = unpack2x16float(word(block + 52u)).x * scale;
        let top_shift = vec4<u32>(0u, 8u, 16u, 24u) + 2u * g;
        let lo = nibbles(word(ql), 4u * (g / 2u)) | (((vec4<u32>(word(qh)) >> top_shift) & vec4<u32>(3u)) << vec4<u32>(4u));
        let hi = nibbles(word(ql + 1u), 4u * (g / 2u)) | (((vec4<u32>(word(qh + 1u)) >> top_shift) & vec4<u32>(3u)) << vec4<u32>(4u));
        e.lo = d * (vec4<f32>(lo) - 32.0);
        e.hi = d * (vec4<f32>(hi) - 32.0);
    }
    return e;
}
// ---- end of weight formats ----
