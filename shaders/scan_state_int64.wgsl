// The scan's per-step inputs B, C, dt_low (x_proj's output), its state h and A, eight values
// per load as four u64: the second part of the scan_step_int64 module, in place of
// shaders/scan_state.wgsl, with the same functions. For CPU devices with 64-bit integers
// (SHADER_INT64) when d_state and dt_rank are multiples of 8. They load every component of a
// storage-buffer access lane by lane, so a u64 component brings twice what an f32 one does
// for the same cost (as in shaders/matrix_loads_int64.wgsl).
// Little-endian, as every wgpu backend is: the low half of a u64 is the first f32.

@group(0) @binding(3) var<storage, read> xdbl: array<vec4<u64>>;      // (batch, t_len, xdbl_stride / 8)
@group(0) @binding(5) var<storage, read> a: array<vec4<u64>>;         // (d_inner, d_state / 8)
@group(0) @binding(7) var<storage, read_write> h: array<vec4<u64>>;   // (batch, d_inner, d_state / 8)

// The two f32 of a u64, and back.
fn floats(v: u64) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(u32(v), u32(v >> 32u)));
}

fn bits(v: vec2<f32>) -> u64 {
    let u = bitcast<vec2<u32>>(v);
    return u64(u.x) | (u64(u.y) << 32u);
}

// The eight f32 of four u64: [first four, last four].
fn eight(v: vec4<u64>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(vec4<f32>(floats(v.x), floats(v.y)), vec4<f32>(floats(v.z), floats(v.w)));
}

fn eight_bits(lo: vec4<f32>, hi: vec4<f32>) -> vec4<u64> {
    return vec4<u64>(bits(lo.xy), bits(lo.zw), bits(hi.xy), bits(hi.zw));
}

// Element i of a buffer of u64 quads: one u64 component.
fn xdbl_at(i: u32) -> f32 {
    return floats(xdbl[i >> 3u][(i >> 1u) & 3u])[i & 1u];
}

fn state_a(i: u32) -> f32 {
    return floats(a[i >> 3u][(i >> 1u) & 3u])[i & 1u];
}

fn state_h(i: u32) -> f32 {
    return floats(h[i >> 3u][(i >> 1u) & 3u])[i & 1u];
}

// Rewrites the u64 that holds states i and i ^ 1: not for entry points where another
// invocation owns the other state (step_dt_states; GPUs take shaders/scan_state.wgsl).
fn set_state_h(i: u32, v: f32) {
    var pair = floats(h[i >> 3u][(i >> 1u) & 3u]);
    pair[i & 1u] = v;
    h[i >> 3u][(i >> 1u) & 3u] = bits(pair);
}

// dt_low[k .. k + 4] of a row of x_proj's output (k a multiple of 4, below dt_rank): two u64.
fn dt_low4(row: u32, k: u32) -> vec4<f32> {
    let i = (row * p.xdbl_stride + k) / 2u;
    return vec4<f32>(floats(xdbl[i >> 2u][i & 3u]), floats(xdbl[i >> 2u][(i & 3u) + 1u]));
}

// dt_low[k .. k + 8] (k a multiple of 8, below dt_rank): one load. [first four, last four]
fn dt_low8(row: u32, k: u32) -> array<vec4<f32>, 2> {
    return eight(xdbl[(row * p.xdbl_stride + k) / 8u]);
}

// step_channels of shaders/scan_state.wgsl, states n = 8o .. 8o + 7 at a time.
fn step_channels(row: u32, b: u32, c0: u32, ch: vec4<u32>, xv: vec4<f32>, dtv: vec4<f32>) -> vec4<f32> {
    let octets = p.d_state / 8u;
    let hb = b * p.d_inner * octets;
    let bc = (row * p.xdbl_stride + p.dt_rank) / 8u;
    var acc = vec4<f32>(0.0);
    for (var o = 0u; o < octets; o++) {
        let b_o = eight(xdbl[bc + o]);
        let c_o = eight(xdbl[bc + octets + o]);
        for (var r = 0u; r < CHANNELS; r++) {
            let i = hb + ch[r] * octets + o;
            let a_o = eight(a[ch[r] * octets + o]);
            let h_o = eight(h[i]);
            let lo = updated_states(dtv[r], a_o[0], h_o[0], b_o[0], xv[r]);
            let hi = updated_states(dtv[r], a_o[1], h_o[1], b_o[1], xv[r]);
            if (c0 + r < p.d_inner) {
                h[i] = eight_bits(lo, hi);
            }
            acc[r] += dot(lo, c_o[0]);
            acc[r] += dot(hi, c_o[1]);
        }
    }
    return acc;
}
