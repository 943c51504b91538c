// Selective scan, sequential in time, updating the state in place:
//   h_t[n] = exp(dt_t A[n]) h_{t-1}[n] + dt_t B_t[n] x_t,   A = -exp(A_log), from the loader
//   y_t    = (sum_n C_t[n] h_t[n] + D x_t) * silu(z_t)
// Two entry points:
// - main: dt given, one invocation per (sequence, channel) walking time. With a whole prompt
//   it is the scan the chunked one (shaders/scan_chunked.wgsl) is tested against; with
//   t_len = 1 a decode step where dt_proj is split into several parts.
// - step_dt_states: one decode step with the dt projection fused in,
//   dt = softplus(dt_proj . dt_low + bias), and each channel spread over 16 invocations
//   (below). y overwrites x in place (x_y), which keeps it within 8 storage buffers.

override WEIGHT_F16: bool = false;   // step_dt_states: dt_proj's storage (f32, or f16 pairs)

struct Params {
    batch: u32,
    t_len: u32,
    d_inner: u32,
    d_state: u32,
    dt_rank: u32,
    xdbl_stride: u32,  // x_proj's output row is dt_low (dt_rank) | B (d_state) | C (d_state)
    z_stride: u32,     // z of row r at xz[r * z_stride + z_offset]
    z_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // (batch, t_len, d_inner) conv output
@group(0) @binding(2) var<storage, read> dt: array<f32>;          // (batch, t_len, d_inner) after softplus
@group(0) @binding(3) var<storage, read> xdbl: array<f32>;        // (batch, t_len, xdbl_stride): dt_low | B | C
@group(0) @binding(4) var<storage, read> xz: array<f32>;          // (batch, t_len, z_stride)
@group(0) @binding(5) var<storage, read> a: array<f32>;           // (d_inner, d_state): A = -exp(A_log)
@group(0) @binding(6) var<storage, read> d_skip: array<f32>;      // (d_inner)
@group(0) @binding(7) var<storage, read_write> h: array<f32>;     // (batch, d_inner, d_state)
@group(0) @binding(8) var<storage, read_write> y: array<f32>;     // (batch, t_len, d_inner)

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

@group(0) @binding(9) var<storage, read_write> x_y: array<f32>;   // step_dt_states: (batch, d_inner) conv output in, y out
@group(0) @binding(10) var<storage, read> dt_w: array<vec4<u32>>; // step_dt_states: dt_proj (d_inner, dt_rank) in 16-byte units
@group(0) @binding(11) var<storage, read> dt_b: array<f32>;       // step_dt_states: (d_inner)

fn softplus(v: f32) -> f32 {
    // log(1 + exp(v)), and v itself above 20 as PyTorch does (exp would lose nothing there).
    return select(log(1.0 + exp(v)), v, v > 20.0);
}

// y = (C . h + D x) * silu(z) for channel c of a row.
fn gated(row: u32, c: u32, xv: f32, c_dot_h: f32) -> f32 {
    return fma(d_skip[c], xv, c_dot_h) * silu(xz[row * p.z_stride + p.z_offset + c]);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let b = gid.y;
    if (c >= p.d_inner || b >= p.batch) {
        return;
    }
    let hb = (b * p.d_inner + c) * p.d_state;
    for (var t = 0u; t < p.t_len; t++) {
        let row = b * p.t_len + t;
        let xv = x[row * p.d_inner + c];
        let dtv = dt[row * p.d_inner + c];
        let bc = row * p.xdbl_stride + p.dt_rank;
        var c_dot_h = 0.0;
        for (var n = 0u; n < p.d_state; n++) {
            let hn = fma(exp(dtv * a[c * p.d_state + n]), h[hb + n], dtv * xdbl[bc + n] * xv);
            h[hb + n] = hn;
            c_dot_h = fma(hn, xdbl[bc + p.d_state + n], c_dot_h);
        }
        y[row * p.d_inner + c] = gated(row, c, xv, c_dot_h);
    }
}

// step_dt_states: a decode step with the work of a channel spread over 16 invocations, so
// that it has d_inner * 16 invocations instead of d_inner, and each does a few independent
// loads instead of a chain of d_state + dt_rank of them. A workgroup holds 4 channels; lane s
// of a channel sums dt_low[k] dt_proj[c, k] for k = s, s + 16, ... and updates the states
// n = s, s + 16, ...; the channel's sums then meet in workgroup memory.
const STATE_LANES: u32 = 16u;
const STATE_CHANNELS: u32 = 4u;  // channels per workgroup of step_dt_states

var<workgroup> lane_sums: array<f32, 64>;  // (STATE_CHANNELS, STATE_LANES)

// Element k of row c of dt_proj (rows padded to whole 16-byte units).
fn dt_weight(c: u32, k: u32) -> f32 {
    let per_unit = select(4u, 8u, WEIGHT_F16);
    let units = (p.dt_rank + per_unit - 1u) / per_unit;
    let q = dt_w[c * units + k / per_unit];
    let e = k % per_unit;
    if (WEIGHT_F16) {
        return unpack2x16float(q[e / 2u])[e % 2u];
    }
    return bitcast<f32>(q[e]);
}

// The sum of `v` over the 16 lanes of channel slot `slot` (all invocations call it: barriers).
fn channel_sum(slot: u32, s: u32, v: f32) -> f32 {
    let i = slot * STATE_LANES + s;
    lane_sums[i] = v;
    workgroupBarrier();
    for (var stride = STATE_LANES / 2u; stride > 0u; stride /= 2u) {
        if (s < stride) {
            lane_sums[i] += lane_sums[i + stride];
        }
        workgroupBarrier();
    }
    let sum = lane_sums[slot * STATE_LANES];
    workgroupBarrier();  // lane_sums is reused by the next call
    return sum;
}

@compute @workgroup_size(64)
fn step_dt_states(@builtin(local_invocation_index) flat: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let slot = flat / STATE_LANES;
    let s = flat % STATE_LANES;
    let b = wg.y;
    let row = b;  // t_len = 1
    // Channels past d_inner (the last workgroup) load the last channel and store nothing; they
    // still take part in the barriers.
    let c_real = wg.x * STATE_CHANNELS + slot;
    let c = min(c_real, p.d_inner - 1u);
    var dot_part = 0.0;
    for (var k = s; k < p.dt_rank; k += STATE_LANES) {
        dot_part = fma(dt_weight(c, k), xdbl[row * p.xdbl_stride + k], dot_part);
    }
    let dt = softplus(channel_sum(slot, s, dot_part) + dt_b[c]);
    let xv = x_y[row * p.d_inner + c];
    let bc = row * p.xdbl_stride + p.dt_rank;
    let hb = (b * p.d_inner + c) * p.d_state;
    var c_dot_h = 0.0;
    for (var n = s; n < p.d_state; n += STATE_LANES) {
        let hn = fma(exp(dt * a[c * p.d_state + n]), h[hb + n], dt * xdbl[bc + n] * xv);
        if (c_real < p.d_inner) {
            h[hb + n] = hn;
        }
        c_dot_h = fma(hn, xdbl[bc + p.d_state + n], c_dot_h);
    }
    let total = channel_sum(slot, s, c_dot_h);
    if (s == 0u && c_real < p.d_inner) {
        x_y[row * p.d_inner + c] = gated(row, c, xv, total);
    }
}
