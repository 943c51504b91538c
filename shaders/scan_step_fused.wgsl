// One Mamba-1 / FalconMamba decode step (one token per sequence, BATCH sequences) with x_proj,
// FalconMamba's norms and the dt projection fused into the scan step:
//   x_dbl = x_proj . x                      dt_low (dt_rank) | B (d_state) | C (d_state)
//   (FalconMamba, p.mixer_norm: dt_low, B and C each RMS-normalized without a weight)
//   dt    = softplus(dt_proj . dt_low + dt_bias)
//   h     = exp(dt A) h + dt B x;   y = (C . h + D x) * silu(z)
// x (the conv output) and z are columns of in_proj's output rows (`proj`), where in_proj's
// kernel left them (shaders/matvec.wgsl, main_conv, writes the conv's output in place); y
// overwrites z, and out_proj reads it there.
//
// Why: a decode step is latency bound, and every dispatch has a fixed cost whatever its size;
// this saves x_proj's dispatch per layer (and FalconMamba's norm's). There is no grid-wide
// barrier, so each workgroup computes the whole x_dbl for itself, into workgroup memory, from
// all of x: every workgroup reads x_proj (from the cache), so a workgroup owns many channels
// (WG, one per invocation) to keep them few. For the same reason y cannot overwrite x in place
// (as step_dt_states in scan_step.wgsl does): other workgroups still read all of x, while each
// channel's z is read only by its own invocation.
//
// 1. x_dbl: 16 invocations per row of x_proj (256 contiguous bytes of it per step, coalesced),
//    16 rows at a time; the BATCH rows of x share each weight load (accumulators in two vec4s,
//    as in matvec.wgsl), then a tree over the 16 lanes in workgroup memory.
// 2. FalconMamba: one invocation per (batch row, segment) sums its squares; all scale.
// 3. One invocation per channel: dt for every batch row, then the state update and y.

override WEIGHT_F16: bool = false;  // x_proj's and dt_proj's storage (f32, or f16 pairs)
override BATCH: u32 = 1u;           // 1..=8, the sequences

struct Params {
    batch: u32,
    d_inner: u32,
    d_state: u32,
    dt_rank: u32,
    proj_stride: u32,  // a row of in_proj's output
    x_offset: u32,     // x's first column in it
    z_offset: u32,     // z's first column in it: y overwrites z
    wide: u32,         // 1: x's rows 16-byte aligned and d_inner whole units of x_proj: vec4 loads of x
    mixer_norm: u32,   // 1: FalconMamba's norms of dt_low, B and C
    norm_eps: f32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;         // invocations, and channels, per workgroup
const ROW_LANES: u32 = 16u;   // invocations per row of x_proj in step 1
const XDBL_CAP: u32 = 2560u;  // BATCH * (dt_rank + 2 d_state) at most

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> proj: array<vec4<f32>>;  // (BATCH, proj_stride): x read, z read, y written over z
@group(0) @binding(2) var<storage, read> x_proj: array<vec4<u32>>;      // (dt_rank + 2 d_state, units of d_inner)
@group(0) @binding(3) var<storage, read> a: array<f32>;                 // (d_inner, d_state): A = -exp(A_log)
@group(0) @binding(4) var<storage, read> d_skip: array<f32>;            // (d_inner)
@group(0) @binding(5) var<storage, read_write> h: array<f32>;           // (BATCH, d_inner, d_state)
@group(0) @binding(6) var<storage, read> dt_w: array<vec4<u32>>;        // (d_inner, units of dt_rank)
@group(0) @binding(7) var<storage, read> dt_b: array<f32>;              // (d_inner)

var<workgroup> x_dbl: array<f32, 2560>;     // (BATCH, dt_rank + 2 d_state)
var<workgroup> red: array<vec4<f32>, 256>;  // (WG): step 1's partial sums of 4 batch rows
var<workgroup> seg_scale: array<f32, 24>;   // (BATCH, 3): FalconMamba's norm scales

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

fn softplus(v: f32) -> f32 {
    // log(1 + exp(v)), and v itself above 20 as PyTorch does (exp would lose nothing there).
    return select(log(1.0 + exp(v)), v, v > 20.0);
}

fn x_at(m: u32, c: u32) -> f32 {
    let i = m * p.proj_stride + p.x_offset + c;
    return proj[i >> 2u][i & 3u];
}

// Elements 4 * q .. 4 * q + 3 of x's row m, zero past d_inner; one vec4 load where `wide`.
fn x_vec(m: u32, q: u32, wide: bool) -> vec4<f32> {
    if (wide) {
        return proj[(m * p.proj_stride + p.x_offset) / 4u + q];
    }
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (4u * q + i < p.d_inner) {
            v[i] = x_at(m, 4u * q + i);
        }
    }
    return v;
}

// A unit of x_proj's row (lo: its first 4 values, hi: the next 4 where f16) times x's row m
// from vec4 q on.
fn unit_dot_x(lo: vec4<f32>, hi: vec4<f32>, m: u32, q: u32, wide: bool) -> f32 {
    var s = dot(lo, x_vec(m, q, wide));
    if (WEIGHT_F16) {
        s += dot(hi, x_vec(m, q + 1u, wide));
    }
    return s;
}

// Element e of a 16-byte unit of weights.
fn unit_element(unit: vec4<u32>, e: u32) -> f32 {
    if (WEIGHT_F16) {
        return unpack2x16float(unit[e / 2u])[e % 2u];
    }
    return bitcast<f32>(unit[e]);
}

// `v` summed over the 16 lanes of each row slot; lane 0 of the slot gets the sum. Every
// invocation calls it (barriers).
fn sum_lanes(flat: u32, v: vec4<f32>) -> vec4<f32> {
    let lane = flat % ROW_LANES;
    red[flat] = v;
    workgroupBarrier();
    for (var stride = ROW_LANES / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            red[flat] += red[flat + stride];
        }
        workgroupBarrier();
    }
    let sum = red[flat];
    workgroupBarrier();  // red is reused by the next call
    return sum;
}

// Step 1: x_dbl = x_proj . x for every batch row.
fn project(flat: u32) {
    let rows = p.dt_rank + 2u * p.d_state;
    let per = select(1u, 2u, WEIGHT_F16);  // vec4s of x per unit
    let units = select((p.d_inner + 3u) / 4u, (p.d_inner + 7u) / 8u, WEIGHT_F16);
    let lane = flat % ROW_LANES;
    let wide = p.wide == 1u;
    for (var r0 = 0u; r0 < rows; r0 += WG / ROW_LANES) {
        let r = r0 + flat / ROW_LANES;
        var acc_lo = vec4<f32>(0.0);  // batch rows 0..3
        var acc_hi = vec4<f32>(0.0);  // batch rows 4..7
        if (r < rows) {
            for (var j = lane; j < units; j += ROW_LANES) {
                let unit = x_proj[r * units + j];
                var lo: vec4<f32>;
                var hi = vec4<f32>(0.0);
                if (WEIGHT_F16) {
                    lo = vec4<f32>(unpack2x16float(unit.x), unpack2x16float(unit.y));
                    hi = vec4<f32>(unpack2x16float(unit.z), unpack2x16float(unit.w));
                } else {
                    lo = bitcast<vec4<f32>>(unit);
                }
                for (var m = 0u; m < min(BATCH, 4u); m++) {
                    acc_lo[m] += unit_dot_x(lo, hi, m, per * j, wide);
                }
                for (var m = 4u; m < BATCH; m++) {
                    acc_hi[m - 4u] += unit_dot_x(lo, hi, m, per * j, wide);
                }
            }
        }
        let lo_sum = sum_lanes(flat, acc_lo);
        if (lane == 0u && r < rows) {
            for (var m = 0u; m < min(BATCH, 4u); m++) {
                x_dbl[m * rows + r] = lo_sum[m];
            }
        }
        if (BATCH > 4u) {
            let hi_sum = sum_lanes(flat, acc_hi);
            if (lane == 0u && r < rows) {
                for (var m = 4u; m < BATCH; m++) {
                    x_dbl[m * rows + r] = hi_sum[m - 4u];
                }
            }
        }
    }
    workgroupBarrier();
}

// Step 2 (FalconMamba): dt_low, B and C of each batch row times 1 / sqrt(mean(v^2) + eps).
fn mixer_norms(flat: u32) {
    let rows = p.dt_rank + 2u * p.d_state;
    if (flat < 3u * BATCH) {
        let m = flat / 3u;
        let seg = flat % 3u;
        var start = 0u;
        var width = p.dt_rank;
        if (seg > 0u) {
            start = p.dt_rank + (seg - 1u) * p.d_state;
            width = p.d_state;
        }
        var sum_sq = 0.0;
        for (var i = 0u; i < width; i++) {
            let v = x_dbl[m * rows + start + i];
            sum_sq += v * v;
        }
        seg_scale[flat] = inverseSqrt(sum_sq / f32(width) + p.norm_eps);
    }
    workgroupBarrier();
    for (var i = flat; i < BATCH * rows; i += WG) {
        let col = i % rows;
        let seg = select(select(2u, 1u, col < p.dt_rank + p.d_state), 0u, col < p.dt_rank);
        x_dbl[i] *= seg_scale[(i / rows) * 3u + seg];
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) flat: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    project(flat);
    if (p.mixer_norm == 1u) {
        mixer_norms(flat);
    }
    let c = wg.x * WG + flat;
    if (c >= p.d_inner) {
        return;
    }
    // Step 3. dt_low . dt_proj[c] for every batch row (each weight loaded once).
    let rows = p.dt_rank + 2u * p.d_state;
    let per_unit = select(4u, 8u, WEIGHT_F16);
    let dt_units = (p.dt_rank + per_unit - 1u) / per_unit;
    var dt_lo = vec4<f32>(0.0);
    var dt_hi = vec4<f32>(0.0);
    for (var u = 0u; u < dt_units; u++) {
        let unit = dt_w[c * dt_units + u];
        for (var e = 0u; e < per_unit; e++) {
            let k = u * per_unit + e;
            if (k < p.dt_rank) {
                let wk = unit_element(unit, e);
                for (var m = 0u; m < min(BATCH, 4u); m++) {
                    dt_lo[m] = fma(wk, x_dbl[m * rows + k], dt_lo[m]);
                }
                for (var m = 4u; m < BATCH; m++) {
                    dt_hi[m - 4u] = fma(wk, x_dbl[m * rows + k], dt_hi[m - 4u]);
                }
            }
        }
    }
    for (var m = 0u; m < BATCH; m++) {
        let dt = softplus(select(dt_hi[m % 4u], dt_lo[m % 4u], m < 4u) + dt_b[c]);
        let xv = x_at(m, c);
        let bc = m * rows + p.dt_rank;
        let hb = (m * p.d_inner + c) * p.d_state;
        var c_dot_h = 0.0;
        for (var n = 0u; n < p.d_state; n++) {
            let hn = fma(exp(dt * a[c * p.d_state + n]), h[hb + n], dt * x_dbl[bc + n] * xv);
            h[hb + n] = hn;
            c_dot_h = fma(hn, x_dbl[bc + p.d_state + n], c_dot_h);
        }
        let zi = m * p.proj_stride + p.z_offset + c;
        proj[zi >> 2u][zi & 3u] = fma(d_skip[c], xv, c_dot_h) * silu(proj[zi >> 2u][zi & 3u]);
    }
}
