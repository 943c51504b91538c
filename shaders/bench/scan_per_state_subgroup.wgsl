// The sequential-in-time scan the benchmark measures the chunked scan against, as llama.cpp's
// WebGPU backend runs it (its ssm_scan.wgsl): one workgroup per (channel, sequence) and one
// invocation per state n, whose h[n] stays in a register while it walks the whole sequence:
//   h_t[n] = exp(dt_t A[n]) h_{t-1}[n] + dt_t B_t[n] x_t
//   y_t    = (sum_n C_t[n] h_t[n] + D x_t) * silu(z_t)
// Every time step sums C_t[n] h_t[n] over the workgroup, so the steps meet at barriers; D and
// the gate (separate ops in llama.cpp) are applied by invocation 0, so that the output is that
// of the engine's scans. Not used by the model: the benchmark's baseline (src/bench/kernels.rs).
// Each step's sum by subgroupAdd, as llama.cpp's ssm_scan.wgsl does where the device has
// subgroups: each subgroup sums its invocations' terms, its first invocation puts that in
// workgroup memory, and invocation 0 adds the subgroups' sums. Needs SUBGROUP.

// Invocations per workgroup: d_state rounded up to a power of two (at most 64); those past
// d_state add zero.
override WG: u32 = 16u;

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
            y[i] = fma(d_skip[c], x[i], c_dot_h) * silu(xz[row * p.z_stride + p.z_offset + c]);
        }
        workgroupBarrier();  // state_sum's workspace is read before the next step writes it
    }
    if (live) {
        h[state] = h_n;
    }
}

var<private> lane: u32;
var<private> subgroup: u32;
var<private> subgroups: u32;

// sum_n C_t[n] h_t[n] from each invocation's term, valid in invocation 0.
fn state_sum(n: u32, term: f32) -> f32 {
    let sum = subgroupAdd(term);
    if (lane == 0u) {
        partial[subgroup] = sum;
    }
    workgroupBarrier();
    var total = 0.0;
    if (n == 0u) {
        for (var s = 0u; s < subgroups; s++) {
            total += partial[s];
        }
    }
    return total;
}

@compute @workgroup_size(WG)
fn main_subgroup(
    @builtin(local_invocation_index) n: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane_id: u32,
    @builtin(subgroup_id) subgroup_id: u32,
    @builtin(num_subgroups) subgroup_count: u32,
) {
    lane = lane_id;
    subgroup = subgroup_id;
    subgroups = subgroup_count;
    walk(n, wg);
}
