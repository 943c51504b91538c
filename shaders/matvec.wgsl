// Matrix-vector product for decode (one token per sequence, BATCH sequences):
//   Y[m, y_offset + n] = act(sum_k X[m * x_stride + x_offset + k] * W[n, k] + bias[bias_offset + n])
//
// Decode is bound by reading the weights: every weight byte is read once per token, so this
// kernel is built around the loads of W. LANES invocations share an output row and read its
// weights 16 bytes at a time (4 f32 or 8 packed f16): on GPUs 8 lanes load 128 contiguous
// bytes of a row per iteration (coalesced); on CPU devices one lane walks the whole row. All
// BATCH rows of X share each weight load, and BATCH is an override constant so the
// accumulators stay in registers (a pipeline per batch size). Rows or offsets not aligned to
// 16 bytes (tiny test models) take an element-wise path.

override WEIGHT_F16: bool = false;
override BATCH: u32 = 1u;  // 1..=8
// Invocations per output row: 8 on GPUs (coalesced loads); 1 on CPU devices (lavapipe), where
// each SIMD lane streams its own row best and the reduction's barriers cost more than they save.
override LANES: u32 = 8u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    x_stride: u32,
    x_offset: u32,
    y_stride: u32,
    y_offset: u32,
    bias_offset: u32,
    has_bias: u32,
    activation: u32,  // 0: identity, 1: softplus
    wide: u32,        // 1: rows of W and X are 16-byte aligned, use vec4 loads
    _pad0: u32,
}

// Invocations per workgroup: 256 with 8 lanes per row; 64 with 1 lane per row, so that even
// a 768-row matrix spreads over enough workgroups to keep every core of a CPU device busy.
override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;  // (BATCH, x_stride), f32
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;  // (n, k) as f32 or packed f16 pairs
@group(0) @binding(3) var<storage, read> bias: array<f32>;      // (bias_offset + n)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;   // (BATCH, y_stride)

var<workgroup> partial: array<f32, 2048>;  // (8, WG): one slot per invocation and batch row

fn x_at(i: u32) -> f32 {
    return x[i >> 2u][i & 3u];
}

// Element i of the row-major weight matrix, for the element-wise path.
fn w_at(i: u32) -> f32 {
    if (WEIGHT_F16) {
        let word = i >> 1u;
        let pair = unpack2x16float(w[word >> 2u][word & 3u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(w[i >> 2u][i & 3u]);
}

fn softplus(v: f32) -> f32 {
    return select(log(1.0 + exp(v)), v, v > 20.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) flat: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let lane = flat % LANES;
    let n = wg.x * (WG / LANES) + flat / LANES;
    var acc: array<f32, 8>;
    if (n < p.n) {
        if (p.wide == 1u && WEIGHT_F16) {
            let per_row = p.k / 8u;
            for (var j = lane; j < per_row; j += LANES) {
                let q = w[n * per_row + j];
                let lo = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
                let hi = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
                for (var m = 0u; m < BATCH; m++) {
                    let xi = (m * p.x_stride + p.x_offset) / 4u + j * 2u;
                    acc[m] += dot(lo, x[xi]) + dot(hi, x[xi + 1u]);
                }
            }
        } else if (p.wide == 1u) {
            let per_row = p.k / 4u;
            for (var j = lane; j < per_row; j += LANES) {
                let q = bitcast<vec4<f32>>(w[n * per_row + j]);
                for (var m = 0u; m < BATCH; m++) {
                    acc[m] += dot(q, x[(m * p.x_stride + p.x_offset) / 4u + j]);
                }
            }
        } else {
            for (var kk = lane; kk < p.k; kk += LANES) {
                let wv = w_at(n * p.k + kk);
                for (var m = 0u; m < BATCH; m++) {
                    acc[m] = fma(wv, x_at(m * p.x_stride + p.x_offset + kk), acc[m]);
                }
            }
        }
    }
    if (LANES == 1u) {
        if (n < p.n) {
            for (var m = 0u; m < BATCH; m++) {
                store(m, n, acc[m]);
            }
        }
        return;
    }
    for (var m = 0u; m < BATCH; m++) {
        partial[m * WG + flat] = acc[m];
    }
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            for (var m = 0u; m < BATCH; m++) {
                partial[m * WG + flat] += partial[m * WG + flat + stride];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && n < p.n) {
        for (var m = 0u; m < BATCH; m++) {
            store(m, n, partial[m * WG + flat]);
        }
    }
}

fn store(m: u32, n: u32, sum: f32) {
    var v = sum;
    if (p.has_bias == 1u) {
        v += bias[p.bias_offset + n];
    }
    if (p.activation == 1u) {
        v = softplus(v);
    }
    y[m * p.y_stride + p.y_offset + n] = v;
}
