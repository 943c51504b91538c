// Matrix-vector product for decode (a few rows of X, one token per sequence):
//   Y[m, y_offset + n] = act(sum_k X[m * x_stride + x_offset + k] * W[n, k] + bias[bias_offset + n])
// Decode is bound by reading the weights: every weight byte is read once per token. A group of
// 32 invocations owns one output row n and walks its k range with consecutive invocations on
// consecutive words, so the reads of W coalesce; all batch rows (m < 8) share each weight read.

override WEIGHT_F16: bool = false;

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
    _pad0: u32,
    _pad1: u32,
}

const LANES: u32 = 32u;       // invocations per output row
const ROWS_PER_WG: u32 = 8u;  // output rows per workgroup
const MAX_M: u32 = 8u;        // batch rows handled per dispatch

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // (m, x_stride)
@group(0) @binding(2) var<storage, read> w: array<u32>;        // (n, k) as f32 or packed f16 pairs
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // (bias_offset + n)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (m, y_stride)

var<workgroup> partial: array<f32, 2048>;  // (MAX_M, ROWS_PER_WG, LANES)

fn softplus(v: f32) -> f32 {
    return select(log(1.0 + exp(v)), v, v > 20.0);
}

@compute @workgroup_size(32, 8)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let lane = lid.x;
    let n = wg.x * ROWS_PER_WG + lid.y;
    var acc: array<f32, 8>;
    if (n < p.n) {
        let row = n * p.k;
        if (WEIGHT_F16) {
            // Each word holds two halves; walk words so consecutive lanes read consecutive words.
            // A row may start on an odd half when k is odd; the edges are done element-wise.
            let first = row;
            let last = row + p.k;
            let word_begin = (first + 1u) / 2u;
            let word_end = last / 2u;
            for (var wi = word_begin + lane; wi < word_end; wi += LANES) {
                let pair = unpack2x16float(w[wi]);
                let k = wi * 2u - row;
                for (var m = 0u; m < p.m; m++) {
                    let xb = m * p.x_stride + p.x_offset + k;
                    acc[m] = fma(pair.x, x[xb], fma(pair.y, x[xb + 1u], acc[m]));
                }
            }
            if (lane == 0u && (first & 1u) == 1u) {
                let v = unpack2x16float(w[first >> 1u]).y;
                for (var m = 0u; m < p.m; m++) {
                    acc[m] = fma(v, x[m * p.x_stride + p.x_offset], acc[m]);
                }
            }
            if (lane == 1u && (last & 1u) == 1u) {
                let v = unpack2x16float(w[last >> 1u]).x;
                for (var m = 0u; m < p.m; m++) {
                    acc[m] = fma(v, x[m * p.x_stride + p.x_offset + p.k - 1u], acc[m]);
                }
            }
        } else {
            for (var k = lane; k < p.k; k += LANES) {
                let v = bitcast<f32>(w[row + k]);
                for (var m = 0u; m < p.m; m++) {
                    acc[m] = fma(v, x[m * p.x_stride + p.x_offset + k], acc[m]);
                }
            }
        }
    }
    for (var m = 0u; m < MAX_M; m++) {
        partial[(m * ROWS_PER_WG + lid.y) * LANES + lane] = acc[m];
    }
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            for (var m = 0u; m < MAX_M; m++) {
                let i = (m * ROWS_PER_WG + lid.y) * LANES + lane;
                partial[i] += partial[i + stride];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && n < p.n) {
        for (var m = 0u; m < p.m; m++) {
            var v = partial[(m * ROWS_PER_WG + lid.y) * LANES];
            if (p.has_bias == 1u) {
                v += bias[p.bias_offset + n];
            }
            if (p.activation == 1u) {
                v = softplus(v);
            }
            y[m * p.y_stride + p.y_offset + n] = v;
        }
    }
}
