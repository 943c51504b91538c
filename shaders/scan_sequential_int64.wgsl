// The prefill scan for CPU devices with d_state 16 (every Mamba release) and d_inner a multiple
// of 4: the last part of the scan_step_int64 module, after shaders/scan_state_int64.wgsl and
// scan_step.wgsl (Params, the bindings, updated_states, silu). It computes what their main
// computes over a whole prompt, one invocation per 4 channels walking time:
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
// (d_inner is a multiple of 4, so a row's 4 channels from c0 are one element). Only
// scan_sequential uses these, and it uses none of those.
@group(0) @binding(1) var<storage, read> x_quads: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dt_quads: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> xz_quads: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> d_skip_quads: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> y_quads: array<vec4<f32>>;

// Sixteen values of one channel (its states, or A), four per vec4.
alias Sixteen = array<vec4<f32>, 4>;

@compute @workgroup_size(64)
fn scan_sequential(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let b = gid.y;
    if (c0 >= p.d_inner || b >= p.batch) {
        return;
    }
    // h and A of channels c0 .. c0 + 3: two octets (u64 quads) per channel.
    let h0 = (b * p.d_inner + c0) * 2u;
    var h_0 = sixteen(h[h0], h[h0 + 1u]);
    var h_1 = sixteen(h[h0 + 2u], h[h0 + 3u]);
    var h_2 = sixteen(h[h0 + 4u], h[h0 + 5u]);
    var h_3 = sixteen(h[h0 + 6u], h[h0 + 7u]);
    let a0 = c0 * 2u;
    let a_0 = sixteen(a[a0], a[a0 + 1u]);
    let a_1 = sixteen(a[a0 + 2u], a[a0 + 3u]);
    let a_2 = sixteen(a[a0 + 4u], a[a0 + 5u]);
    let a_3 = sixteen(a[a0 + 6u], a[a0 + 7u]);
    let d = d_skip_quads[c0 / 4u];
    for (var t = 0u; t < p.t_len; t++) {
        let row = b * p.t_len + t;
        let q = (row * p.d_inner + c0) / 4u;
        let xv = x_quads[q];
        let dtv = dt_quads[q];
        // B and C of the row, after dt_low (dt_rank a multiple of 8).
        let bc = (row * p.xdbl_stride + p.dt_rank) / 8u;
        let bv = sixteen(xdbl[bc], xdbl[bc + 1u]);
        let cv = sixteen(xdbl[bc + 2u], xdbl[bc + 3u]);
        let c_dot_h = vec4<f32>(
            channel_step(&h_0, a_0, bv, cv, dtv.x, xv.x),
            channel_step(&h_1, a_1, bv, cv, dtv.y, xv.y),
            channel_step(&h_2, a_2, bv, cv, dtv.z, xv.z),
            channel_step(&h_3, a_3, bv, cv, dtv.w, xv.w),
        );
        let z = xz_quads[(row * p.z_stride + p.d_inner + c0) / 4u];
        y_quads[q] = fma(d, xv, c_dot_h) * vec4<f32>(silu(z.x), silu(z.y), silu(z.z), silu(z.w));
    }
    store_sixteen(h0, h_0);
    store_sixteen(h0 + 2u, h_1);
    store_sixteen(h0 + 4u, h_2);
    store_sixteen(h0 + 6u, h_3);
}

// One time step of a channel's 16 states (updated_states, four at a time); returns C . h.
fn channel_step(state: ptr<function, Sixteen>, a_c: Sixteen, bv: Sixteen, cv: Sixteen, dt: f32, xv: f32) -> f32 {
    (*state)[0] = updated_states(dt, a_c[0], (*state)[0], bv[0], xv);
    (*state)[1] = updated_states(dt, a_c[1], (*state)[1], bv[1], xv);
    (*state)[2] = updated_states(dt, a_c[2], (*state)[2], bv[2], xv);
    (*state)[3] = updated_states(dt, a_c[3], (*state)[3], bv[3], xv);
    return dot((*state)[0], cv[0]) + dot((*state)[1], cv[1]) + dot((*state)[2], cv[2]) + dot((*state)[3], cv[3]);
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
