// The scan's per-step inputs B, C, dt_low (x_proj's output), its state h and A, four values
// per load: the second part of the scan_step_quads module, in place of shaders/scan_state.wgsl,
// with the same functions. For CPU devices when d_state and dt_rank are multiples of 4: they
// load every storage-buffer access lane by lane, and one vec4 access costs much less than four
// scalar ones (BENCHMARKS.md).

@group(0) @binding(3) var<storage, read> xdbl: array<vec4<f32>>;      // (batch, t_len, xdbl_stride / 4)
@group(0) @binding(5) var<storage, read> a: array<vec4<f32>>;         // (d_inner, d_state / 4)
@group(0) @binding(7) var<storage, read_write> h: array<vec4<f32>>;   // (batch, d_inner, d_state / 4)

fn xdbl_at(i: u32) -> f32 {
    return xdbl[i >> 2u][i & 3u];
}

fn state_a(i: u32) -> f32 {
    return a[i >> 2u][i & 3u];
}

fn state_h(i: u32) -> f32 {
    return h[i >> 2u][i & 3u];
}

fn set_state_h(i: u32, v: f32) {
    h[i >> 2u][i & 3u] = v;
}

// dt_low[k .. k + 4] of a row of x_proj's output (k a multiple of 4), zero past dt_rank.
fn dt_low4(row: u32, k: u32) -> vec4<f32> {
    // In bounds either way: the row goes on with B and C past dt_rank.
    return select(vec4<f32>(0.0), xdbl[(row * p.xdbl_stride + k) / 4u], k < p.dt_rank);
}

// dt_low[k .. k + 8], zero past dt_rank: [first four, last four].
fn dt_low8(row: u32, k: u32) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(dt_low4(row, k), dt_low4(row, k + 4u));
}

// step_channels of shaders/scan_state.wgsl, states n = 4q .. 4q + 3 at a time.
fn step_channels(row: u32, b: u32, c0: u32, ch: vec4<u32>, xv: vec4<f32>, dtv: vec4<f32>) -> vec4<f32> {
    let quads = p.d_state / 4u;
    let hb = b * p.d_inner * quads;
    let bc = (row * p.xdbl_stride + p.dt_rank) / 4u;
    var acc = vec4<f32>(0.0);
    for (var q = 0u; q < quads; q++) {
        let b_q = xdbl[bc + q];
        let c_q = xdbl[bc + quads + q];
        for (var r = 0u; r < CHANNELS; r++) {
            let i = hb + ch[r] * quads + q;
            let hq = updated_states(dtv[r], a[ch[r] * quads + q], h[i], b_q, xv[r]);
            if (c0 + r < p.d_inner) {
                h[i] = hq;
            }
            acc[r] += dot(hq, c_q);
        }
    }
    return acc;
}
