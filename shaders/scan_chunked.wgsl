// Selective scan for prefill: a chunked, work-efficient parallel scan in workgroup memory.
//   h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,   y_t = (C_t . h_t + D x_t) * silu(z_t)
//
// Each step is an affine map h -> a h + b with a = exp(dt A), b = dt B x. Maps compose
// associatively: applying (a1, b1) then (a2, b2) gives (a1 a2, a2 b1 + b2). So the recurrence is
// a scan, as in the Mamba paper's CUDA kernel, with workgroup memory playing the role of SRAM:
//
// - a workgroup owns one sequence and CH = 16 channels, and walks the sequence in chunks of
//   CHUNK = 64 steps; the 16 invocations of a channel each own STEPS = 4 consecutive steps;
// - per group of G = 4 states, each invocation composes its 4 steps in registers (a, b), the
//   workgroup turns those into exclusive prefixes with a Blelloch up-/down-sweep over the 16
//   segments of every (state, channel) line, and each invocation re-walks its steps from
//   h_in = a_prefix * carry + b_prefix, accumulating C_t h_t into y in registers;
// - the state at the chunk's end is the carry into the next chunk; it stays in workgroup
//   memory and goes to global memory once, at the end, as the session state.
// Steps past the end of the sequence use dt = 0, the identity map (1, 0).

const CH: u32 = 16u;         // channels per workgroup
const SEG: u32 = 16u;        // invocations along time per channel
const STEPS: u32 = 4u;       // consecutive steps per invocation
const CHUNK: u32 = 64u;      // SEG * STEPS
const G: u32 = 4u;           // states scanned together
const LINES: u32 = 64u;      // G * CH scan lines of SEG entries each
const MAX_STATE: u32 = 64u;
const WG: u32 = 256u;        // CH * SEG

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
@group(0) @binding(5) var<storage, read> a: array<f32>;           // (d_inner, d_state): A = -exp(A_log), d_state <= MAX_STATE
@group(0) @binding(6) var<storage, read> d_skip: array<f32>;      // (d_inner)
@group(0) @binding(7) var<storage, read_write> h: array<f32>;     // (batch, d_inner, d_state)
@group(0) @binding(8) var<storage, read_write> y: array<f32>;     // (batch, t_len, d_inner)

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

var<workgroup> scan_a: array<f32, 1024>;  // (G, CH, SEG) composed a per segment, then prefixes
var<workgroup> scan_b: array<f32, 1024>;  // (G, CH, SEG) composed b per segment, then prefixes
var<workgroup> carry: array<f32, 1024>;   // (CH, MAX_STATE) state at the end of the previous chunk

// Up-sweep: the right node of each pair becomes (left then right).
fn up_sweep(lid: u32) {
    for (var d = 1u; d < SEG; d *= 2u) {
        let pairs = SEG / (2u * d);
        for (var i = lid; i < LINES * pairs; i += WG) {
            let left = (i / pairs) * SEG + (i % pairs) * 2u * d + d - 1u;
            let right = left + d;
            scan_b[right] = fma(scan_a[right], scan_b[left], scan_b[right]);
            scan_a[right] = scan_a[left] * scan_a[right];
        }
        workgroupBarrier();
    }
}

// Down-sweep from the identity at the root: left gets the node's prefix P, right gets
// (P then left subtree), leaving exclusive prefixes.
fn down_sweep(lid: u32) {
    for (var i = lid; i < LINES; i += WG) {
        scan_a[i * SEG + SEG - 1u] = 1.0;
        scan_b[i * SEG + SEG - 1u] = 0.0;
    }
    workgroupBarrier();
    for (var d = SEG / 2u; d >= 1u; d /= 2u) {
        let pairs = SEG / (2u * d);
        for (var i = lid; i < LINES * pairs; i += WG) {
            let left = (i / pairs) * SEG + (i % pairs) * 2u * d + d - 1u;
            let right = left + d;
            let la = scan_a[left];
            let lb = scan_b[left];
            let pa = scan_a[right];
            let pb = scan_b[right];
            scan_a[left] = pa;
            scan_b[left] = pb;
            scan_a[right] = pa * la;
            scan_b[right] = fma(la, pb, lb);
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let b = wg.y;
    let ch = lid / SEG;
    let seg = lid % SEG;
    let c = wg.x * CH + ch;
    let live = c < p.d_inner;

    for (var i = lid; i < CH * p.d_state; i += WG) {
        let cc = wg.x * CH + i / p.d_state;
        let n = i % p.d_state;
        carry[(i / p.d_state) * MAX_STATE + n] = select(0.0, h[(b * p.d_inner + cc) * p.d_state + n], cc < p.d_inner);
    }
    workgroupBarrier();

    let chunks = (p.t_len + CHUNK - 1u) / CHUNK;
    for (var chunk = 0u; chunk < chunks; chunk++) {
        let t0 = chunk * CHUNK + seg * STEPS;
        // STEPS = 4 values each, in vec4s rather than arrays: registers on every compiler.
        var xs = vec4<f32>(0.0);
        var dts = vec4<f32>(0.0);
        var ys = vec4<f32>(0.0);
        for (var s = 0u; s < STEPS; s++) {
            let t = t0 + s;
            if (live && t < p.t_len) {
                let row = b * p.t_len + t;
                xs[s] = x[row * p.d_inner + c];
                dts[s] = dt[row * p.d_inner + c];
            }
        }
        for (var n0 = 0u; n0 < p.d_state; n0 += G) {
            // 1. Compose this invocation's steps, per state of the group.
            for (var g = 0u; g < G; g++) {
                let n = n0 + g;
                var a_acc = 1.0;
                var b_acc = 0.0;
                if (live && n < p.d_state) {
                    let a_n = a[c * p.d_state + n];
                    for (var s = 0u; s < STEPS; s++) {
                        let t = t0 + s;
                        if (t < p.t_len) {
                            let row = b * p.t_len + t;
                            let da = exp(dts[s] * a_n);
                            a_acc *= da;
                            b_acc = fma(da, b_acc, dts[s] * xdbl[row * p.xdbl_stride + p.dt_rank + n] * xs[s]);
                        }
                    }
                }
                scan_a[(g * CH + ch) * SEG + seg] = a_acc;
                scan_b[(g * CH + ch) * SEG + seg] = b_acc;
            }
            workgroupBarrier();
            // 2. Exclusive prefixes over the segments of every line.
            up_sweep(lid);
            down_sweep(lid);
            // 3. Re-walk the steps from the true incoming state and accumulate C . h.
            var h_end = vec4<f32>(0.0);  // G = 4 states
            for (var g = 0u; g < G; g++) {
                let n = n0 + g;
                if (live && n < p.d_state) {
                    let a_n = a[c * p.d_state + n];
                    let line = (g * CH + ch) * SEG + seg;
                    var hn = fma(scan_a[line], carry[ch * MAX_STATE + n], scan_b[line]);
                    for (var s = 0u; s < STEPS; s++) {
                        let t = t0 + s;
                        if (t < p.t_len) {
                            let row = b * p.t_len + t;
                            let bc = row * p.xdbl_stride + p.dt_rank;
                            hn = fma(exp(dts[s] * a_n), hn, dts[s] * xdbl[bc + n] * xs[s]);
                            ys[s] = fma(xdbl[bc + p.d_state + n], hn, ys[s]);
                        }
                    }
                    h_end[g] = hn;
                }
            }
            // 4. Everyone has read the carry: the last segment publishes the chunk's end state.
            workgroupBarrier();
            if (seg == SEG - 1u && live) {
                for (var g = 0u; g < G; g++) {
                    if (n0 + g < p.d_state) {
                        carry[ch * MAX_STATE + n0 + g] = h_end[g];
                    }
                }
            }
            workgroupBarrier();
        }
        // 5. D skip and SiLU(z) gate, fused into the write of y.
        for (var s = 0u; s < STEPS; s++) {
            let t = t0 + s;
            if (live && t < p.t_len) {
                let row = b * p.t_len + t;
                let z = xz[row * p.z_stride + p.z_offset + c];
                y[row * p.d_inner + c] = fma(d_skip[c], xs[s], ys[s]) * silu(z);
            }
        }
    }

    for (var i = lid; i < CH * p.d_state; i += WG) {
        let cc = wg.x * CH + i / p.d_state;
        if (cc < p.d_inner) {
            h[(b * p.d_inner + cc) * p.d_state + i % p.d_state] = carry[(i / p.d_state) * MAX_STATE + i % p.d_state];
        }
    }
}
