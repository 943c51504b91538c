// Selective scan, one invocation per (batch, CHANNELS channels), walking time step by step and
// updating the state in place.
//   h_t[n] = exp(dt_t A[n]) h_{t-1}[n] + dt_t B_t[n] x_t,   A = -exp(A_log), from the loader
//   y_t    = (sum_n C_t[n] h_t[n] + D x_t) * silu(z_t)
// Three entry points:
// - main: dt given. With a whole prompt it is the sequential-in-time scan that the chunked scan
//   is tested and benchmarked against; with t_len = 1 a decode step.
// - step_dt (CPU devices): one decode step with the dt projection fused in, so it needs no
//   dispatch of its own: dt = softplus(dt_proj . dt_low + bias), per channel, from x_proj's
//   output. y overwrites x in place (x_y), which keeps the entry point within 8 storage buffers.
// - step_dt_states (GPUs): the same step with each channel spread over 16 invocations (below).

override WEIGHT_F16: bool = false;   // step_dt: dt_proj's storage
override WEIGHT_BLOCKS: bool = false;  // step_dt: dt_proj in WeightLayout::RowBlocks, else row-major
// Channels per invocation: 1 on GPUs; 4 on CPU devices, which load lane by lane, so that each
// load of B_t[n], C_t[n] and dt_low (the same for every channel) serves 4 channels.
override CHANNELS: u32 = 1u;  // 1..=4

// Params, x, dt, xz, d_skip, y and silu: shaders/scan_params.wgsl, the module's first part.
// @binding(3) x_proj's output (batch, t_len, xdbl_stride), @binding(5) A (d_inner, d_state)
// = -exp(A_log) and @binding(7) h (batch, d_inner, d_state): the module's second part declares
// them, with step_channels (the state update of one time step), dt_low4, dt_low8 and the
// element accessors xdbl_at, state_a, state_h, set_state_h: shaders/scan_state.wgsl (one value
// per load), scan_state_quads.wgsl (four) or scan_state_int64.wgsl (eight, as four u64).
@group(0) @binding(9) var<storage, read_write> x_y: array<f32>;   // step_dt: (batch, d_inner) conv output in, y out
@group(0) @binding(10) var<storage, read> dt_w: array<vec4<u32>>; // step_dt: dt_proj (d_inner, dt_rank) in 16-byte units
@group(0) @binding(11) var<storage, read> dt_b: array<f32>;       // step_dt: (d_inner)

// Four states of a channel one time step on (step_channels of the vec4 and u64 parts):
//   h = exp(dt A) h + dt B x
fn updated_states(dt: f32, a: vec4<f32>, h: vec4<f32>, b: vec4<f32>, x: f32) -> vec4<f32> {
    return fma(exp(dt * a), h, dt * b * x);
}

fn softplus(v: f32) -> f32 {
    return select(log(1.0 + exp(v)), v, v > 20.0);
}

// Per-channel values of an invocation are vec4s (CHANNELS <= 4), not arrays: arrays indexed in
// loops went to local memory on NVIDIA's Vulkan compiler.

// The invocation's channels; channels past d_inner repeat the last one for their loads and
// store nothing.
fn channels_from(c0: u32) -> vec4<u32> {
    var ch = vec4<u32>(0u);
    for (var r = 0u; r < CHANNELS; r++) {
        ch[r] = min(c0 + r, p.d_inner - 1u);
    }
    return ch;
}

// y = (C . h + D x) * silu(z) for channel c of a row.
fn gated(row: u32, c: u32, xv: f32, c_dot_h: f32) -> f32 {
    return fma(d_skip[c], xv, c_dot_h) * silu(xz[row * p.z_stride + p.d_inner + c]);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * CHANNELS;
    let b = gid.y;
    if (c0 >= p.d_inner || b >= p.batch) {
        return;
    }
    let ch = channels_from(c0);
    for (var t = 0u; t < p.t_len; t++) {
        let row = b * p.t_len + t;
        var xv = vec4<f32>(0.0);
        var dtv = vec4<f32>(0.0);
        for (var r = 0u; r < CHANNELS; r++) {
            xv[r] = x[row * p.d_inner + ch[r]];
            dtv[r] = dt[row * p.d_inner + ch[r]];
        }
        let acc = step_channels(row, b, c0, ch, xv, dtv);
        for (var r = 0u; r < CHANNELS; r++) {
            if (c0 + r < p.d_inner) {
                y[row * p.d_inner + ch[r]] = gated(row, ch[r], xv[r], acc[r]);
            }
        }
    }
}

// Unit j of row c of dt_proj, in its layout (src/gpu/tensor.rs, WeightLayout).
fn dt_unit(c: u32, j: u32, units: u32) -> vec4<u32> {
    if (WEIGHT_BLOCKS) {
        let first = c / 64u * 64u;
        return dt_w[first * units + j * min(64u, p.d_inner - first) + c - first];
    }
    return dt_w[c * units + j];
}

@compute @workgroup_size(64)
fn step_dt(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * CHANNELS;
    let b = gid.y;
    if (c0 >= p.d_inner || b >= p.batch) {
        return;
    }
    let ch = channels_from(c0);
    let row = b;  // t_len = 1
    // dt = softplus(dt_proj . dt_low + bias), a 16-byte unit of dt_proj at a time; each unit's
    // dt_low values are loaded once for all the invocation's channels.
    let per_unit = select(4u, 8u, WEIGHT_F16);
    let units = (p.dt_rank + per_unit - 1u) / per_unit;
    var sums = vec4<f32>(0.0);
    for (var r = 0u; r < CHANNELS; r++) {
        sums[r] = dt_b[ch[r]];
    }
    for (var j = 0u; j < units; j++) {
        // dt_low values of the unit, zero past dt_rank (where the padded weights are zero too)
        var low_lo: vec4<f32>;
        var low_hi = vec4<f32>(0.0);
        if (WEIGHT_F16) {
            let low = dt_low8(row, j * per_unit);
            low_lo = low[0];
            low_hi = low[1];
        } else {
            low_lo = dt_low4(row, j * per_unit);
        }
        for (var r = 0u; r < CHANNELS; r++) {
            let q = dt_unit(ch[r], j, units);
            if (WEIGHT_F16) {
                let lo = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
                let hi = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
                sums[r] += dot(lo, low_lo) + dot(hi, low_hi);
            } else {
                sums[r] += dot(bitcast<vec4<f32>>(q), low_lo);
            }
        }
    }
    var xv = vec4<f32>(0.0);
    var dtv = vec4<f32>(0.0);
    for (var r = 0u; r < CHANNELS; r++) {
        xv[r] = x_y[row * p.d_inner + ch[r]];
        dtv[r] = softplus(sums[r]);
    }
    let acc = step_channels(row, b, c0, ch, xv, dtv);
    for (var r = 0u; r < CHANNELS; r++) {
        if (c0 + r < p.d_inner) {
            x_y[row * p.d_inner + ch[r]] = gated(row, ch[r], xv[r], acc[r]);
        }
    }
}

// step_dt_states (GPUs): the step of step_dt with the work of a channel spread over 16
// invocations, so that a decode step has d_inner * 16 invocations instead of d_inner, and
// each does a few independent loads instead of a chain of d_state + dt_rank / 4 of them. A
// workgroup holds 4 channels; lane s of a channel sums dt_low[k] dt_proj[c, k] for k = s,
// s + 16, ... and updates the states n = s, s + 16, ...; the channel's sums then meet in
// workgroup memory. On CPU devices, which run the 16 lanes one after another, step_dt is the
// cheaper form.
const STATE_LANES: u32 = 16u;
const STATE_CHANNELS: u32 = 4u;  // channels per workgroup of step_dt_states

var<workgroup> lane_sums: array<f32, 64>;  // (STATE_CHANNELS, STATE_LANES)

// Element k of row c of dt_proj, in its layout.
fn dt_weight(c: u32, k: u32, units: u32) -> f32 {
    let per_unit = select(4u, 8u, WEIGHT_F16);
    let q = dt_unit(c, k / per_unit, units);
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
    let per_unit = select(4u, 8u, WEIGHT_F16);
    let units = (p.dt_rank + per_unit - 1u) / per_unit;
    var dot_part = 0.0;
    for (var k = s; k < p.dt_rank; k += STATE_LANES) {
        dot_part = fma(dt_weight(c, k, units), xdbl_at(row * p.xdbl_stride + k), dot_part);
    }
    let dt = softplus(channel_sum(slot, s, dot_part) + dt_b[c]);
    let xv = x_y[row * p.d_inner + c];
    let bc = row * p.xdbl_stride + p.dt_rank;
    let hb = (b * p.d_inner + c) * p.d_state;
    var c_dot_h = 0.0;
    for (var n = s; n < p.d_state; n += STATE_LANES) {
        let hn = fma(exp(dt * state_a(c * p.d_state + n)), state_h(hb + n), dt * xdbl_at(bc + n) * xv);
        if (c_real < p.d_inner) {
            set_state_h(hb + n, hn);
        }
        c_dot_h = fma(hn, xdbl_at(bc + p.d_state + n), c_dot_h);
    }
    let total = channel_sum(slot, s, c_dot_h);
    if (s == 0u && c_real < p.d_inner) {
        x_y[row * p.d_inner + c] = gated(row, c, xv, total);
    }
}
