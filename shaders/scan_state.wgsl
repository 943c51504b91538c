// The scan's per-step inputs B, C, dt_low (x_proj's output), its state h and A, one value per
// load: the second part of the scan_step module, after shaders/scan_params.wgsl
// (src/gpu/kernels.rs, MODULES).
// shaders/scan_state_quads.wgsl and scan_state_int64.wgsl have the same functions with four and
// eight values per load.

@group(0) @binding(3) var<storage, read> xdbl: array<f32>;      // (batch, t_len, xdbl_stride): dt_low | B | C
@group(0) @binding(5) var<storage, read> a: array<f32>;         // (d_inner, d_state): A = -exp(A_log)
@group(0) @binding(7) var<storage, read_write> h: array<f32>;   // (batch, d_inner, d_state)

fn xdbl_at(i: u32) -> f32 {
    return xdbl[i];
}

fn state_a(i: u32) -> f32 {
    return a[i];
}

fn state_h(i: u32) -> f32 {
    return h[i];
}

fn set_state_h(i: u32, v: f32) {
    h[i] = v;
}

// dt_low[k .. k + 4] of a row of x_proj's output, zero past dt_rank.
fn dt_low4(row: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        v[e] = select(0.0, xdbl[row * p.xdbl_stride + min(k + e, p.dt_rank - 1u)], k + e < p.dt_rank);
    }
    return v;
}

// dt_low[k .. k + 8], zero past dt_rank: [first four, last four].
fn dt_low8(row: u32, k: u32) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(dt_low4(row, k), dt_low4(row, k + 4u));
}

// One time step (row) of the channels c0 + r: updates h, returns sum_n C[n] h[n] per channel.
fn step_channels(row: u32, b: u32, c0: u32, ch: vec4<u32>, xv: vec4<f32>, dtv: vec4<f32>) -> vec4<f32> {
    let hb = b * p.d_inner * p.d_state;
    let bc = row * p.xdbl_stride + p.dt_rank;
    var acc = vec4<f32>(0.0);
    for (var n = 0u; n < p.d_state; n++) {
        let b_n = xdbl[bc + n];
        let c_n = xdbl[bc + p.d_state + n];
        for (var r = 0u; r < CHANNELS; r++) {
            let i = hb + ch[r] * p.d_state + n;
            let hn = fma(exp(dtv[r] * a[ch[r] * p.d_state + n]), h[i], dtv[r] * b_n * xv[r]);
            if (c0 + r < p.d_inner) {
                h[i] = hn;
            }
            acc[r] = fma(hn, c_n, acc[r]);
        }
    }
    return acc;
}
