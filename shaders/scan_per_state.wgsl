// The sequential-in-time scan the benchmark measures the chunked scan against, as llama.cpp's
// WebGPU backend runs it (its ssm_scan.wgsl): one workgroup per (channel, sequence) and one
// invocation per state n, whose h[n] stays in a register while it walks the whole sequence:
//   h_t[n] = exp(dt_t A[n]) h_{t-1}[n] + dt_t B_t[n] x_t
//   y_t    = (sum_n C_t[n] h_t[n] + D x_t) * silu(z_t)
// Every time step sums C_t[n] h_t[n] over the workgroup, so the steps meet at barriers; D and
// the gate (separate ops in llama.cpp) are applied by invocation 0, so that the output is that
// of the engine's scans. Not used by the model: src/ops/scan.rs, ScanKind::PerState.
// The second part of two modules, after shaders/scan_params.wgsl (Params, x, dt, xz, d_skip,
// y, silu); the last part declares state_sum, the sum of each step, and the entry point:
// shaders/scan_per_state_tree.wgsl (in workgroup memory) or scan_per_state_subgroup.wgsl (by
// subgroupAdd, as llama.cpp does where the device has subgroups).

// Invocations per workgroup: d_state rounded up to a power of two (at most 64); those past
// d_state add zero.
override WG: u32 = 16u;

@group(0) @binding(3) var<storage, read> xdbl: array<f32>;     // (batch, t_len, xdbl_stride)
@group(0) @binding(5) var<storage, read> a: array<f32>;        // (d_inner, d_state): A = -exp(A_log)
@group(0) @binding(7) var<storage, read_write> h: array<f32>;  // (batch, d_inner, d_state)

var<workgroup> partial: array<f32, 64>;  // state_sum's workspace

// The whole walk of invocation n of the workgroup for (channel wg.x, sequence wg.y). Every
// invocation calls state_sum at every step (barriers); those past d_state hold h = A = 0.
fn walk(n: u32, wg: vec3<u32>) {
    let c = wg.x;
    let b = wg.y;
    let live = n < p.d_state;
    let state = (b * p.d_inner + c) * p.d_state + n;
    let a_n = select(0.0, a[c * p.d_state + n], live);
    var h_n = select(0.0, h[state], live);
    for (var t = 0u; t < p.t_len; t++) {
        let row = b * p.t_len + t;
        let i = row * p.d_inner + c;
        let bc = row * p.xdbl_stride + p.dt_rank;
        var c_h = 0.0;
        if (live) {
            h_n = fma(exp(dt[i] * a_n), h_n, dt[i] * xdbl[bc + n] * x[i]);
            c_h = xdbl[bc + p.d_state + n] * h_n;
        }
        let c_dot_h = state_sum(n, c_h);
        if (n == 0u) {
            y[i] = fma(d_skip[c], x[i], c_dot_h) * silu(xz[row * p.z_stride + p.d_inner + c]);
        }
        workgroupBarrier();  // state_sum's workspace is read before the next step writes it
    }
    if (live) {
        h[state] = h_n;
    }
}
