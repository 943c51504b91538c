// The scan for CPU devices with d_state 16 (every Mamba release) and d_inner a multiple of 4,
// 4 channels per invocation, their per-channel values as vec4s: the last part of the
// scan_step_int64 module, after shaders/scan_params.wgsl, scan_state_int64.wgsl and
// scan_step.wgsl (Params, the bindings, updated_states, silu, softplus, dt_low8). Two entry points: scan_sequential, a
// prompt (below), and step_dt_quads, a decode step (further down). scan_sequential computes
// what main computes over a whole prompt, walking time:
//   h_t[n] = exp(dt_t A[n]) h_{t-1}[n] + dt_t B_t[n] x_t
//   y_t    = (sum_n C_t[n] h_t[n] + D x_t) * silu(z_t)
//
// main serves decode steps too, so it loads and stores the state in its buffer at every time
// step. A CPU device accesses storage buffers lane by lane, while an invocation's own variables
// are SIMD registers (or stack, where they spill, still one access for all lanes). Here each
// invocation keeps the 64 states and A of its 4 channels in variables for the whole prompt,
// and loads x, dt, z and stores y of its 4 channels as one vec4 each: per time step 7 loads
// and a store (B and C 8 values per load), where main makes 36 loads and 12 stores.

// The same bindings as x, dt, xz, d_skip and y in scan_step.wgsl, four channels per element
// (d_inner is a multiple of 4, so a row's 4 channels from c0 are one element), and below as
// x_y, dt_w and dt_b. Only this file's entry points use these, and they use none of those.
@group(0) @binding(1) var<storage, read> x_quads: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dt_quads: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> xz_quads: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> d_skip_quads: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> y_quads: array<vec4<f32>>;

// Sixteen values of one channel (its states, or A), four per vec4, and those of 4 channels.
alias Sixteen = array<vec4<f32>, 4>;
alias Channels = array<Sixteen, 4>;

@compute @workgroup_size(64)
fn scan_sequential(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let b = gid.y;
    if (c0 >= p.d_inner || b >= p.batch) {
        return;
    }
    var states = load_states(b, c0);
    let a4 = load_a(c0);
    let d = d_skip_quads[c0 / 4u];
    for (var t = 0u; t < p.t_len; t++) {
        let row = b * p.t_len + t;
        let q = (row * p.d_inner + c0) / 4u;
        let xv = x_quads[q];
        let c_dot_h = step_quad(&states, a4, row, xv, dt_quads[q]);
        y_quads[q] = gated_quad(row, c0, d, xv, c_dot_h);
    }
    store_states(b, c0, states);
}

// h of channels c0 .. c0 + 3 of sequence b: two octets (u64 quads) per channel.
fn load_states(b: u32, c0: u32) -> Channels {
    let i = (b * p.d_inner + c0) * 2u;
    return Channels(
        sixteen(h[i], h[i + 1u]), sixteen(h[i + 2u], h[i + 3u]), sixteen(h[i + 4u], h[i + 5u]), sixteen(h[i + 6u], h[i + 7u]),
    );
}

fn store_states(b: u32, c0: u32, states: Channels) {
    let i = (b * p.d_inner + c0) * 2u;
    store_sixteen(i, states[0]);
    store_sixteen(i + 2u, states[1]);
    store_sixteen(i + 4u, states[2]);
    store_sixteen(i + 6u, states[3]);
}

// A of channels c0 .. c0 + 3.
fn load_a(c0: u32) -> Channels {
    let i = c0 * 2u;
    return Channels(
        sixteen(a[i], a[i + 1u]), sixteen(a[i + 2u], a[i + 3u]), sixteen(a[i + 4u], a[i + 5u]), sixteen(a[i + 6u], a[i + 7u]),
    );
}

// One time step of the 4 channels (x and dt one per channel), with B and C of x_proj's output
// row `row` (after dt_low; dt_rank a multiple of 8); returns C . h per channel. One call per
// channel with a constant index, so the states stay in registers.
fn step_quad(states: ptr<function, Channels>, a4: Channels, row: u32, xv: vec4<f32>, dtv: vec4<f32>) -> vec4<f32> {
    let bc = (row * p.xdbl_stride + p.dt_rank) / 8u;
    let bv = sixteen(xdbl[bc], xdbl[bc + 1u]);
    let cv = sixteen(xdbl[bc + 2u], xdbl[bc + 3u]);
    return vec4<f32>(
        channel_step(states, 0u, a4[0], bv, cv, dtv.x, xv.x),
        channel_step(states, 1u, a4[1], bv, cv, dtv.y, xv.y),
        channel_step(states, 2u, a4[2], bv, cv, dtv.z, xv.z),
        channel_step(states, 3u, a4[3], bv, cv, dtv.w, xv.w),
    );
}

// y = (C . h + D x) * silu(z) of the 4 channels from c0 in x_proj's output row `row`.
fn gated_quad(row: u32, c0: u32, d: vec4<f32>, xv: vec4<f32>, c_dot_h: vec4<f32>) -> vec4<f32> {
    let z = xz_quads[(row * p.z_stride + p.d_inner + c0) / 4u];
    return fma(d, xv, c_dot_h) * vec4<f32>(silu(z.x), silu(z.y), silu(z.z), silu(z.w));
}

// One decode step of step_dt (shaders/scan_step.wgsl) for the same shapes, with dt_proj in
// WeightLayout::RowBlocks: the conv output x, z, D, dt's bias and y 4 channels per vec4, and
// dt_proj's units of the 4 channels (neighbours in a block) two per load: 42 loads and 9
// stores per invocation (f16 dt_proj, dt_rank 48), where step_dt makes 66 and 12. 24 steps at the 130m shape (f16) on
// lavapipe: 1.11-1.44x as fast as step_dt (three runs, the two taking turns).
@group(0) @binding(9) var<storage, read_write> x_y_quads: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> dt_w_pairs: array<vec4<u64>>;
@group(0) @binding(11) var<storage, read> dt_b_quads: array<vec4<f32>>;

@compute @workgroup_size(64)
fn step_dt_quads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let b = gid.y;
    if (c0 >= p.d_inner || b >= p.batch) {
        return;
    }
    let row = b;  // t_len = 1
    // dt = softplus(dt_proj . dt_low + bias), 8 values of dt_low at a time. Unit u of channel
    // c0's row of dt_proj is at unit0 + u * size, and those of c0 + 1 .. c0 + 3 follow it.
    let per_unit = select(4u, 8u, WEIGHT_F16);
    let first = c0 / 64u * 64u;
    let size = min(64u, p.d_inner - first);
    let unit0 = first * (p.dt_rank / per_unit) + c0 - first;
    var sums = dt_b_quads[c0 / 4u];
    for (var k = 0u; k < p.dt_rank; k += 8u) {
        let low = dt_low8(row, k);
        let w = dt_chunk(unit0 + k / per_unit * size, size);
        sums += vec4<f32>(
            dot(low[0], w[0]) + dot(low[1], w[1]),
            dot(low[0], w[2]) + dot(low[1], w[3]),
            dot(low[0], w[4]) + dot(low[1], w[5]),
            dot(low[0], w[6]) + dot(low[1], w[7]),
        );
    }
    let dtv = vec4<f32>(softplus(sums.x), softplus(sums.y), softplus(sums.z), softplus(sums.w));
    let q = (row * p.d_inner + c0) / 4u;
    let xv = x_y_quads[q];
    var states = load_states(b, c0);
    let c_dot_h = step_quad(&states, load_a(c0), row, xv, dtv);
    store_states(b, c0, states);
    x_y_quads[q] = gated_quad(row, c0, d_skip_quads[c0 / 4u], xv, c_dot_h);
}

// dt_proj[c0 + r, k .. k + 8] from unit `unit` of channel c0 (even, as c0 and size are
// multiples of 4): [2 r] values 0-3 of channel c0 + r, [2 r + 1] values 4-7.
fn dt_chunk(unit: u32, size: u32) -> array<vec4<f32>, 8> {
    let c01 = dt_w_pairs[unit / 2u];        // channels c0, c0 + 1
    let c23 = dt_w_pairs[unit / 2u + 1u];   // channels c0 + 2, c0 + 3
    if (WEIGHT_F16) {
        return array<vec4<f32>, 8>(
            halves(c01.x), halves(c01.y), halves(c01.z), halves(c01.w), halves(c23.x), halves(c23.y), halves(c23.z), halves(c23.w),
        );
    }
    // f32: values 4-7 are the next unit column, `size` units on.
    let c01_next = dt_w_pairs[(unit + size) / 2u];
    let c23_next = dt_w_pairs[(unit + size) / 2u + 1u];
    return array<vec4<f32>, 8>(
        vec4<f32>(floats(c01.x), floats(c01.y)), vec4<f32>(floats(c01_next.x), floats(c01_next.y)),
        vec4<f32>(floats(c01.z), floats(c01.w)), vec4<f32>(floats(c01_next.z), floats(c01_next.w)),
        vec4<f32>(floats(c23.x), floats(c23.y)), vec4<f32>(floats(c23_next.x), floats(c23_next.y)),
        vec4<f32>(floats(c23.z), floats(c23.w)), vec4<f32>(floats(c23_next.z), floats(c23_next.w)),
    );
}

// The four halves packed in a u64.
fn halves(v: u64) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(u32(v)), unpack2x16float(u32(v >> 32u)));
}

// One time step of the 16 states of channel r (updated_states, four at a time); returns
// C . h. (r is a constant at every call: a pointer to the channel's own states trips naga's
// SPIR-V writer.)
fn channel_step(states: ptr<function, Channels>, r: u32, a_c: Sixteen, bv: Sixteen, cv: Sixteen, dt: f32, xv: f32) -> f32 {
    (*states)[r][0] = updated_states(dt, a_c[0], (*states)[r][0], bv[0], xv);
    (*states)[r][1] = updated_states(dt, a_c[1], (*states)[r][1], bv[1], xv);
    (*states)[r][2] = updated_states(dt, a_c[2], (*states)[r][2], bv[2], xv);
    (*states)[r][3] = updated_states(dt, a_c[3], (*states)[r][3], bv[3], xv);
    let h = (*states)[r];
    return dot(h[0], cv[0]) + dot(h[1], cv[1]) + dot(h[2], cv[2]) + dot(h[3], cv[3]);
}

// Two octets of u64 quads as 16 values.
fn sixteen(first: vec4<u64>, second: vec4<u64>) -> Sixteen {
    let lo = eight(first);
    let hi = eight(second);
    return Sixteen(lo[0], lo[1], hi[0], hi[1]);
}

// Writes a channel's 16 states back to h, from its first octet i on.
fn store_sixteen(i: u32, v: Sixteen) {
    h[i] = eight_bits(v[0], v[1]);
    h[i + 1u] = eight_bits(v[2], v[3]);
}
