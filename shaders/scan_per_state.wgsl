// The sequential-in-time scan the benchmark measures the chunked scan against, as llama.cpp's
// WebGPU backend runs it (its ssm_scan.wgsl): one workgroup per (channel, sequence) and one
// invocation per state n, whose h[n] stays in a register while it walks the whole sequence:
//   h_t[n] = exp(dt_t A[n]) h_{t-1}[n] + dt_t B_t[n] x_t
//   y_t    = (sum_n C_t[n] h_t[n] + D x_t) * silu(z_t)
// Every time step sums C_t[n] h_t[n] over the workgroup, so the steps meet at barriers; D and
// the gate (separate ops in llama.cpp) are applied by invocation 0, so that the output is that
// of the engine's scans. main sums in workgroup memory (a tree), main_subgroup
// (shaders/scan_per_state_subgroup.wgsl) with subgroupAdd, as llama.cpp does where the device
// has subgroups. Not used by the model: src/ops/scan.rs, ScanKind::PerState.

// Invocations per workgroup: d_state rounded up to a power of two (at most 64); those past
// d_state add zero.
override WG: u32 = 16u;

struct Params {
    batch: u32,
    t_len: u32,
    d_inner: u32,
    d_state: u32,
    dt_rank: u32,
    xdbl_stride: u32,  // dt_rank + 2 * d_state: x_proj's output row is dt_low | B | C
    z_stride: u32,     // 2 * d_inner: z is the second half of in_proj's output
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // (batch, t_len, d_inner) conv output
@group(0) @binding(2) var<storage, read> dt: array<f32>;       // (batch, t_len, d_inner) after softplus
@group(0) @binding(3) var<storage, read> xdbl: array<f32>;     // (batch, t_len, xdbl_stride)
@group(0) @binding(4) var<storage, read> xz: array<f32>;       // (batch, t_len, z_stride)
@group(0) @binding(5) var<storage, read> a: array<f32>;        // (d_inner, d_state): A = -exp(A_log)
@group(0) @binding(6) var<storage, read> d_skip: array<f32>;   // (d_inner)
@group(0) @binding(7) var<storage, read_write> h: array<f32>;  // (batch, d_inner, d_state)
@group(0) @binding(8) var<storage, read_write> y: array<f32>;  // (batch, t_len, d_inner)

var<workgroup> partial: array<f32, 64>;  // main: the tree; main_subgroup: one sum per subgroup

// Where invocation n of the workgroup for (channel c, sequence b) keeps its state in h, and
// A[n]; invocations past d_state hold h = A = 0 and store nothing.
struct Walker {
    c: u32,
    b: u32,
    n: u32,
    live: bool,
}

fn walker(n: u32, wg: vec3<u32>) -> Walker {
    return Walker(wg.x, wg.y, n, n < p.d_state);
}

fn state_index(w: Walker) -> u32 {
    return (w.b * p.d_inner + w.c) * p.d_state + w.n;
}

fn initial_state(w: Walker) -> f32 {
    return select(0.0, h[state_index(w)], w.live);
}

fn a_of(w: Walker) -> f32 {
    return select(0.0, a[w.c * p.d_state + w.n], w.live);
}

// h_t[n] from h_{t-1}[n] at time step t; returns C_t[n] h_t[n] as the second component.
fn step(w: Walker, t: u32, a_n: f32, h_n: f32) -> vec2<f32> {
    if (!w.live) {
        return vec2<f32>(0.0);
    }
    let row = w.b * p.t_len + t;
    let i = row * p.d_inner + w.c;
    let bc = row * p.xdbl_stride + p.dt_rank;
    let next = fma(exp(dt[i] * a_n), h_n, dt[i] * xdbl[bc + w.n] * x[i]);
    return vec2<f32>(next, xdbl[bc + p.d_state + w.n] * next);
}

// y_t of the workgroup's channel from sum_n C_t[n] h_t[n] (invocation 0).
fn store_y(w: Walker, t: u32, c_dot_h: f32) {
    let row = w.b * p.t_len + t;
    let i = row * p.d_inner + w.c;
    let z = xz[row * p.z_stride + p.d_inner + w.c];
    y[i] = fma(d_skip[w.c], x[i], c_dot_h) * (z / (1.0 + exp(-z)));
}

fn store_state(w: Walker, h_n: f32) {
    if (w.live) {
        h[state_index(w)] = h_n;
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) n: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let w = walker(n, wg);
    let a_n = a_of(w);
    var h_n = initial_state(w);
    for (var t = 0u; t < p.t_len; t++) {
        let stepped = step(w, t, a_n, h_n);
        h_n = stepped.x;
        partial[n] = stepped.y;
        workgroupBarrier();
        for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
            if (n < stride) {
                partial[n] += partial[n + stride];
            }
            workgroupBarrier();
        }
        if (n == 0u) {
            store_y(w, t, partial[0]);
        }
        workgroupBarrier();  // partial[0] is read before the next step writes it
    }
    store_state(w, h_n);
}
