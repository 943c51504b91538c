// Tiled matmul for prefill: Y = act(X . W^T + bias), PyTorch nn.Linear with weight (N, K).
//   Y[m, y_offset + n] = act(sum_k X[m * x_stride + x_offset + k] * W[n, k] + bias[bias_offset + n])
// Strides and offsets let a caller read a column slice of a wider activation (dt_low inside
// x_proj's output) and write into a slice of a wider output (one part of a split LM head).
//
// Rows of W are padded to whole 16-byte units (4 f32 or 8 packed f16, zeros past k). A 16x16
// workgroup computes a 64x64 tile of Y; each invocation owns a 4x4 block. Tiles of X and W,
// 64 rows x 16 k each, are staged in workgroup memory so every loaded value is reused 64 times
// (8.5 KiB of workgroup memory, inside WebGPU's 16 KiB).

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
    activation: u32,  // 0: identity, 1: softplus (dt projection)
    _wide: u32,           // shaders/matvec.wgsl's fields; the matmul does not use them
    _conv_channels: u32,
    _conv_has_bias: u32,
    _pad0: u32,           // matvec only, as are these
    _norm_eps: f32,
    _accumulate: u32,
    _conv_first: u32,
    _conv_k: u32,
    _norm_groups: u32,
    _pad1: u32,
}

const TILE: u32 = 64u;
const TK: u32 = 16u;
const PER: u32 = 4u;     // outputs per invocation along each axis
const LANES: u32 = 16u;  // invocations along each axis

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // (m, x_stride)
@group(0) @binding(2) var<storage, read> w: array<u32>;        // (n, units * 4): f32 words or f16 pairs
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // (bias_offset + n)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (m, y_stride)

// +1 column of padding keeps the column reads of the inner loop off the same bank.
var<workgroup> x_tile: array<array<f32, 17>, 64>;
var<workgroup> w_tile: array<array<f32, 17>, 64>;

fn units_per_row() -> u32 {
    return select((p.k + 3u) / 4u, (p.k + 7u) / 8u, WEIGHT_F16);
}

// W[n, kk].
fn weight(n: u32, kk: u32) -> f32 {
    let i = n * units_per_row() * select(4u, 8u, WEIGHT_F16) + kk;
    if (WEIGHT_F16) {
        let pair = unpack2x16float(w[i >> 1u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(w[i]);
}

fn softplus(v: f32) -> f32 {
    // log(1 + exp(v)), and v itself above 20 as PyTorch does (exp would lose nothing there).
    return select(log(1.0 + exp(v)), v, v > 20.0);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let flat = lid.y * LANES + lid.x;
    // One vec4 accumulator per output row of the invocation's 4x4 block, its columns along
    // the vector: plain registers. (Arrays of accumulators indexed in loops went to local
    // memory on NVIDIA's Vulkan compiler and ran 26x slower.)
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        // 256 invocations load 64 x 16 values of each tile, 4 each, consecutive k per row.
        for (var i = 0u; i < PER; i++) {
            let e = flat + i * 256u;
            let r = e / TK;
            let kk = e % TK;
            let gk = k0 + kk;
            var xv = 0.0;
            if (row0 + r < p.m && gk < p.k) {
                xv = x[(row0 + r) * p.x_stride + p.x_offset + gk];
            }
            x_tile[r][kk] = xv;
            var wv = 0.0;
            if (col0 + r < p.n && gk < p.k) {
                wv = weight(col0 + r, gk);
            }
            w_tile[r][kk] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let xr = vec4<f32>(x_tile[lid.y][kk], x_tile[lid.y + LANES][kk], x_tile[lid.y + 2u * LANES][kk], x_tile[lid.y + 3u * LANES][kk]);
            let wr = vec4<f32>(w_tile[lid.x][kk], w_tile[lid.x + LANES][kk], w_tile[lid.x + 2u * LANES][kk], w_tile[lid.x + 3u * LANES][kk]);
            acc0 = fma(vec4<f32>(xr.x), wr, acc0);
            acc1 = fma(vec4<f32>(xr.y), wr, acc1);
            acc2 = fma(vec4<f32>(xr.z), wr, acc2);
            acc3 = fma(vec4<f32>(xr.w), wr, acc3);
        }
        workgroupBarrier();
    }
    store_row(row0 + lid.y, col0 + lid.x, acc0);
    store_row(row0 + lid.y + LANES, col0 + lid.x, acc1);
    store_row(row0 + lid.y + 2u * LANES, col0 + lid.x, acc2);
    store_row(row0 + lid.y + 3u * LANES, col0 + lid.x, acc3);
}

// Row r of Y at columns c0, c0 + LANES, c0 + 2 LANES, c0 + 3 LANES (main's layout of a block).
fn store_row(r: u32, c0: u32, acc: vec4<f32>) {
    if (r >= p.m) {
        return;
    }
    for (var j = 0u; j < PER; j++) {
        let c = c0 + j * LANES;
        if (c < p.n) {
            store(r, c, acc[j]);
        }
    }
}

fn store(r: u32, c: u32, sum: f32) {
    var v = sum;
    if (p.has_bias == 1u) {
        v += bias[p.bias_offset + c];
    }
    if (p.activation == 1u) {
        v = softplus(v);
    }
    y[r * p.y_stride + p.y_offset + c] = v;
}
