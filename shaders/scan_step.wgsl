// Selective scan, one invocation per (batch, channel), walking time step by step and updating
// the state in place. With t_len = 1 it is the decode kernel; with a whole prompt it is the
// sequential-in-time scan that the chunked scan is tested and benchmarked against.
//   h_t[n] = exp(dt_t A[n]) h_{t-1}[n] + dt_t B_t[n] x_t,   A = -exp(A_log)
//   y_t    = (sum_n C_t[n] h_t[n] + D x_t) * silu(z_t)

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
@group(0) @binding(1) var<storage, read> x: array<f32>;           // (batch, t_len, d_inner) conv output
@group(0) @binding(2) var<storage, read> dt: array<f32>;          // (batch, t_len, d_inner) after softplus
@group(0) @binding(3) var<storage, read> xdbl: array<f32>;        // (batch, t_len, xdbl_stride)
@group(0) @binding(4) var<storage, read> xz: array<f32>;          // (batch, t_len, z_stride)
@group(0) @binding(5) var<storage, read> a_log: array<f32>;       // (d_inner, d_state)
@group(0) @binding(6) var<storage, read> d_skip: array<f32>;      // (d_inner)
@group(0) @binding(7) var<storage, read_write> h: array<f32>;     // (batch, d_inner, d_state)
@group(0) @binding(8) var<storage, read_write> y: array<f32>;     // (batch, t_len, d_inner)

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
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
        var acc = 0.0;
        for (var n = 0u; n < p.d_state; n++) {
            let a = -exp(a_log[c * p.d_state + n]);
            let hn = fma(exp(dtv * a), h[hb + n], dtv * xdbl[bc + n] * xv);
            h[hb + n] = hn;
            acc = fma(hn, xdbl[bc + p.d_state + n], acc);
        }
        let z = xz[row * p.z_stride + p.d_inner + c];
        y[row * p.d_inner + c] = fma(d_skip[c], xv, acc) * silu(z);
    }
}
