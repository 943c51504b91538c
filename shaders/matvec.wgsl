// Matrix-vector product for decode (one token per sequence, BATCH sequences):
//   Y[m, y_offset + n] = act(s_m sum_k X[m * x_stride + x_offset + k] * W[n, k] + bias[bias_offset + n])
// with s_m = 1 where p.rms_norm is 0, and with `Y +=` in place of `Y =` where p.accumulate is 1
// (out_proj adding into the residual stream). With p.rms_norm = 1, s_m = 1 / sqrt(mean_k
// X[m, k]^2 + eps): an RMSNorm of X's row without its weight, which the loader folds into W's
// columns (src/model/gpu_weights.rs), so that in_proj normalizes its own input and a decode
// step needs no norm dispatch per layer. Every workgroup computes s_m for itself: main from a
// read of X's rows before its loop (norm_scales), main_blocks from the X values its loop loads
// anyway (block_sums).
//
// Decode is bound by reading the weights: every weight byte is read once per token, so this
// kernel is built around the loads of W, 16 bytes at a time (a "unit": 4 f32 or 8 packed f16
// of one row). All BATCH rows of X share each weight load; BATCH is an override constant so
// the accumulators stay in registers (a pipeline per batch size). The entry points follow the
// weight layout (src/gpu/tensor.rs, WeightLayout):
// - main (GPUs, row-major W): 32 invocations share an output row and together load 512
//   contiguous bytes of it per iteration (coalesced), then reduce in workgroup memory.
// - main_blocks (CPU devices such as lavapipe, W in blocks of 64 rows): a workgroup of 8
//   invocations owns one block and each invocation 8 of its rows (block_row). A CPU device
//   runs the 8 invocations as SIMD lanes and every load lane by lane, so loads are what
//   cost: each X load is reused by 8 rows of W, and the block layout puts the 8 lanes' 64
//   units of one iteration in 1 KiB of contiguous memory, one stream for the prefetcher
//   instead of 64; block_row deals the rows so that each load of the 8 lanes reads one
//   contiguous piece of it.
//   Where the device has 64-bit integers, X and W load as u64 instead of u32, W two rows'
//   units at a time (shaders/matrix_loads_int64.wgsl, weight_pairs_int64.wgsl): fewer
//   lane-by-lane loads. Where its subgroups are the workgroup's 8 invocations, each lane
//   loads a part of X and the subgroup shares them (block_units: shaders/block_x_subgroup.wgsl,
//   else block_x_lanes.wgsl).
// - main_conv, main_blocks_conv: main and main_blocks for in_proj in a decode step, with the
//   causal conv1d + SiLU of the next op fused into the store of the x half (saves a dispatch
//   per layer).
// Rows of X that are not 16-byte aligned (tiny test models) take an element-wise path.

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
    conv_channels: u32,  // main_conv, main_blocks_conv: rows below this (in_proj's x half) get the conv step
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
// main_blocks: rows per block, invocations per block, rows per invocation.
const BLOCK_ROWS: u32 = 64u;
const BLOCK_WG: u32 = 8u;
const ROWS: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
// @binding(1) X (BATCH, x_stride), f32, and @binding(2) W's units (n, k) in the layouts above,
// read through x_quad, x_elem, w_unit and w_unit_pair, which the module's first parts declare:
// shaders/matrix_loads.wgsl (u32 loads) or matrix_loads_int64.wgsl and weight_pairs_int64.wgsl
// (u64 loads); then block_units, main_blocks's loop, which gets X (block_x_lanes.wgsl or
// block_x_subgroup.wgsl).
@group(0) @binding(3) var<storage, read> bias: array<f32>;      // (bias_offset + n)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;   // (BATCH, y_stride)

// main_conv and main_blocks_conv only (shaders/conv1d.wgsl's conv_step, on in_proj's output),
// for d_conv = 4 (every Mamba release; src/ops/linear.rs runs the conv step on its own
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
    return x_elem(i);
}

// Elements 4 * q .. 4 * q + 3 of row m of X (q counts vec4s), zero past k. `wide` is
// p.wide, passed as a constant where the caller has branched on it: CPU devices run both
// sides of a branch inside a loop, so main_blocks branches once, outside its loop.
fn x_vec(m: u32, q: u32, wide: bool) -> vec4<f32> {
    if (wide) {
        return x_quad((m * p.x_stride + p.x_offset) / 4u + q);
    }
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (4u * q + i < p.k) {
            v[i] = x_at(m, 4u * q + i);
        }
    }
    return v;
}

// The X values that unit j of a row of W multiplies, for every batch row: [2 * m + half].
fn x_unit(j: u32, wide: bool) -> array<vec4<f32>, 16> {
    var xs: array<vec4<f32>, 16>;
    for (var m = 0u; m < BATCH; m++) {
        if (WEIGHT_F16) {
            xs[2u * m] = x_vec(m, 2u * j, wide);
            xs[2u * m + 1u] = x_vec(m, 2u * j + 1u, wide);
        } else {
            xs[2u * m] = x_vec(m, j, wide);
        }
    }
    return xs;
}

// sum over one unit of W (4 f32 or 8 f16) times the matching X values of batch row m.
fn unit_dot(unit: vec4<u32>, xs: ptr<function, array<vec4<f32>, 16>>, m: u32) -> f32 {
    if (WEIGHT_F16) {
        let lo = vec4<f32>(unpack2x16float(unit.x), unpack2x16float(unit.y));
        let hi = vec4<f32>(unpack2x16float(unit.z), unpack2x16float(unit.w));
        return dot(lo, (*xs)[2u * m]) + dot(hi, (*xs)[2u * m + 1u]);
    }
    return dot(bitcast<vec4<f32>>(unit), (*xs)[2u * m]);
}

fn softplus(v: f32) -> f32 {
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
            let unit = w_unit(n * units + j);
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

// Block b holds rows b * 64 .. b * 64 + size (size = 64 except in a part's last block), unit j
// of its row i at w[b * 64 * units + j * size + i].
@compute @workgroup_size(BLOCK_WG)
fn main_blocks(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let first = wg.x * BLOCK_ROWS;
    let size = min(BLOCK_ROWS, p.n - first);
    let acc = block_sums(t, first, size);
    for (var r = 0u; r < ROWS; r++) {
        let i = block_row(t, r);
        if (i < size) {
            for (var m = 0u; m < BATCH; m++) {
                store(m, first + i, acc[r * BATCH + m]);
            }
        }
    }
}

@compute @workgroup_size(BLOCK_WG)
fn main_blocks_conv(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let first = wg.x * BLOCK_ROWS;
    let size = min(BLOCK_ROWS, p.n - first);
    var acc = block_sums(t, first, size);
    conv_rows(&acc, t, first, size);
}

// The end of main_blocks_conv: store_or_conv of each row sum acc[r * BATCH + m] of invocation
// t's rows of the block starting at row `first`. One call per row and batch row, with
// constants r and m, not loops (as in accumulate_rows): lavapipe did not unroll loops around
// the conv step, so acc was indexed at run time and lived in memory through block_sums's loop,
// and in_proj with the conv step took 1.14-1.16x as long as without it at batch 1 (1.03-1.07x
// written this way, 1.005-1.03x with store_or_conv's vec4s; BENCHMARKS.md). main_blocks keeps
// its loops: its plain store written this way was not measurably faster.
fn conv_rows(acc: ptr<function, array<f32, 64>>, t: u32, first: u32, size: u32) {
    conv_row(acc, t, first, size, 0u);
    conv_row(acc, t, first, size, 1u);
    conv_row(acc, t, first, size, 2u);
    conv_row(acc, t, first, size, 3u);
    conv_row(acc, t, first, size, 4u);
    conv_row(acc, t, first, size, 5u);
    conv_row(acc, t, first, size, 6u);
    conv_row(acc, t, first, size, 7u);
}

fn conv_row(acc: ptr<function, array<f32, 64>>, t: u32, first: u32, size: u32, r: u32) {
    let i = block_row(t, r);
    if (i < size) {
        conv_sum(acc, first + i, r, 0u);
        conv_sum(acc, first + i, r, 1u);
        conv_sum(acc, first + i, r, 2u);
        conv_sum(acc, first + i, r, 3u);
        conv_sum(acc, first + i, r, 4u);
        conv_sum(acc, first + i, r, 5u);
        conv_sum(acc, first + i, r, 6u);
        conv_sum(acc, first + i, r, 7u);
    }
}

fn conv_sum(acc: ptr<function, array<f32, 64>>, n: u32, r: u32, m: u32) {
    if (m < BATCH) {
        store_or_conv(m, n, (*acc)[r * BATCH + m]);
    }
}

const_assert ROWS == 8u && MAX_BATCH == 8u;  // the calls of conv_rows and conv_row

// Row sums of invocation t's 8 rows of the block starting at row `first`: [r * BATCH + m],
// times s_m where p.rms_norm is 1. Every lane holds all the X values of each unit (block_unit's
// xs), so it sums their squares as it goes: s_m costs no loads. The branches on p.wide and
// p.rms_norm are taken once, outside the loop (block_units's constant arguments): CPU devices
// run both sides of a branch inside a loop.
fn block_sums(t: u32, first: u32, size: u32) -> array<f32, 64> {
    var acc: array<f32, 64>;
    var sum_sq: array<f32, 8>;
    let norm = p.rms_norm == 1u;
    let units = units_per_row();
    let base = first * units;
    if (p.wide == 1u) {
        if (norm) {
            block_units(&acc, &sum_sq, t, base, size, units, true, true);
        } else {
            block_units(&acc, &sum_sq, t, base, size, units, true, false);
        }
    } else {
        if (norm) {
            block_units(&acc, &sum_sq, t, base, size, units, false, true);
        } else {
            block_units(&acc, &sum_sq, t, base, size, units, false, false);
        }
    }
    if (norm) {
        for (var m = 0u; m < BATCH; m++) {
            let s = scale_of(sum_sq[m]);
            for (var r = 0u; r < ROWS; r++) {
                acc[r * BATCH + m] *= s;
            }
        }
    }
    return acc;
}

// One step of block_units, the loop of block_sums over the units of the block's rows, which
// the part that gets X declares (block_x_lanes.wgsl or block_x_subgroup.wgsl): the unit column
// at w[column] times xs, its X values; with `squares`, also the sums of squares of X's rows.
fn block_unit(acc: ptr<function, array<f32, 64>>, sum_sq: ptr<function, array<f32, 8>>, xs: ptr<function, array<vec4<f32>, 16>>, column: u32, t: u32, size: u32, squares: bool) {
    accumulate_rows(acc, xs, column, t, size);
    if (squares) {
        for (var m = 0u; m < BATCH; m++) {
            (*sum_sq)[m] += dot((*xs)[2u * m], (*xs)[2u * m]);
            if (WEIGHT_F16) {
                (*sum_sq)[m] += dot((*xs)[2u * m + 1u], (*xs)[2u * m + 1u]);
            }
        }
    }
}

// Row n of this part is row c = bias_offset + n of in_proj. The x half (c < conv_channels) goes
// through the conv step instead of being stored: x_t = in_proj's output; the window is the
// state's last 3 inputs then x_t, and becomes the new state;
//   x_conv = silu(conv_b + conv_w[c] . window).
// Whole vec4s, not a loop over the window: a CPU device loads lane by lane, and this is 3
// loads and stores per row instead of 11.
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

// Invocation t's row r of its block, dealt so that one load of the 8 lanes reads a contiguous
// piece of the block's column of units: rows 8r + t (lane t's unit); with W_UNIT_PAIRS, rows
// 16q + 2t and 16q + 2t + 1 for r = 2q and 2q + 1 (lane t's pair, units 2t and 2t + 1 of the
// q-th 16). With rows 8t .. 8t + 7 instead, the lanes of a load read 8 pieces 128 bytes
// apart, and the matvec ran 1.01-1.11x slower on lavapipe (BENCHMARKS.md).
fn block_row(t: u32, r: u32) -> u32 {
    if (W_UNIT_PAIRS) {
        return 2u * BLOCK_WG * (r / 2u) + 2u * t + r % 2u;
    }
    return BLOCK_WG * r + t;
}

const_assert BLOCK_ROWS == BLOCK_WG * ROWS;  // block_row's rows fill the block

// acc[r * BATCH + m] += invocation t's row r of the block (unit column at w[column]) . X.
// Rows past the block's end repeat its last row (pair); their sums are not stored. With
// W_UNIT_PAIRS (the first parts'), rows r and r + 1 load together, which needs every block of
// an even size (src/ops/linear.rs picks this module only then).
// The rows are one call each with a constant r, not a loop: lavapipe unrolls a loop over rows
// around the loop over batch rows only while the two are small, and at 8 batch rows it did
// not, so acc was indexed at run time (a copy of this kernel read 1.6x faster at batch 8
// written this way; BENCHMARKS.md).
fn accumulate_rows(acc: ptr<function, array<f32, 64>>, xs: ptr<function, array<vec4<f32>, 16>>, column: u32, t: u32, size: u32) {
    if (W_UNIT_PAIRS) {
        accumulate_pair(acc, xs, column, t, size, 0u);
        accumulate_pair(acc, xs, column, t, size, 2u);
        accumulate_pair(acc, xs, column, t, size, 4u);
        accumulate_pair(acc, xs, column, t, size, 6u);
        return;
    }
    accumulate_row(acc, xs, column, t, size, 0u);
    accumulate_row(acc, xs, column, t, size, 1u);
    accumulate_row(acc, xs, column, t, size, 2u);
    accumulate_row(acc, xs, column, t, size, 3u);
    accumulate_row(acc, xs, column, t, size, 4u);
    accumulate_row(acc, xs, column, t, size, 5u);
    accumulate_row(acc, xs, column, t, size, 6u);
    accumulate_row(acc, xs, column, t, size, 7u);
}

const_assert ROWS == 8u;  // accumulate_rows's calls

// Rows r and r + 1 of accumulate_rows, one load of two units.
fn accumulate_pair(acc: ptr<function, array<f32, 64>>, xs: ptr<function, array<vec4<f32>, 16>>, column: u32, t: u32, size: u32, r: u32) {
    let units = w_unit_pair(column + min(block_row(t, r), size - 2u));
    for (var m = 0u; m < BATCH; m++) {
        (*acc)[r * BATCH + m] += unit_dot(units[0], xs, m);
        (*acc)[(r + 1u) * BATCH + m] += unit_dot(units[1], xs, m);
    }
}

// Row r of accumulate_rows, one unit.
fn accumulate_row(acc: ptr<function, array<f32, 64>>, xs: ptr<function, array<vec4<f32>, 16>>, column: u32, t: u32, size: u32, r: u32) {
    let unit = w_unit(column + min(block_row(t, r), size - 1u));
    for (var m = 0u; m < BATCH; m++) {
        (*acc)[r * BATCH + m] += unit_dot(unit, xs, m);
    }
}
