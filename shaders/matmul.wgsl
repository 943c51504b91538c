// Tiled matmul for prefill: Y = act(X . W^T + bias), PyTorch nn.Linear with weight (N, K).
//   Y[m, y_offset + n] = act(sum_k X[m * x_stride + x_offset + k] * W[n, k] + bias[bias_offset + n])
// Strides and offsets let a caller read a column slice of a wider activation (dt_low inside
// x_proj's output) and write into a slice of a wider output (one part of a split LM head).
//
// Rows of W are padded to whole 16-byte units (4 f32 or 8 packed f16, zeros past k), or are
// whole blocks of a block format, dequantized as the tile is loaded (FORMAT). A 16x16
// workgroup computes a 64x64 tile of Y; each invocation owns a 4x4 block. Tiles of X and W,
// 64 rows x 16 k each, are staged in workgroup memory so every loaded value is reused 64 times
// (8.5 KiB of workgroup memory, inside WebGPU's 16 KiB).

override FORMAT: u32 = 0u;  // the weights' format: see "weight formats" below

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
@group(0) @binding(2) var<storage, read> w: array<u32>;        // (n, units * 4): f32 words or f16 pairs; or (n, blocks) of a block format
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // (bias_offset + n)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (m, y_stride)

// +1 column of padding keeps the column reads of the inner loop off the same bank.
var<workgroup> x_tile: array<array<f32, 17>, 64>;
var<workgroup> w_tile: array<array<f32, 17>, 64>;

fn units_per_row() -> u32 {
    return select((p.k + 3u) / 4u, (p.k + 7u) / 8u, FORMAT == F16);
}

fn word(i: u32) -> u32 {
    return w[i];
}

// W[n, kk], f32 or f16.
fn weight(n: u32, kk: u32) -> f32 {
    let i = n * units_per_row() * select(4u, 8u, FORMAT == F16) + kk;
    if (FORMAT == F16) {
        let pair = unpack2x16float(w[i >> 1u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(w[i]);
}

// W's tile rows col0 .. col0 + 63, values k0 .. k0 + 15, into w_tile. A block format's row is
// whole blocks of 32 or 256 (k is a multiple of 32): 128 invocations each dequantize 8 values.
fn load_w_tile(flat: u32, col0: u32, k0: u32) {
    if (FORMAT >= Q8_0) {
        let r = flat / 2u;
        let u = k0 / 8u + flat % 2u;
        if (flat < 128u) {
            var e = Eight(vec4<f32>(0.0), vec4<f32>(0.0));
            if (col0 + r < p.n && u * 8u < p.k) {
                e = dequant8((col0 + r) * block_row_words(p.k), u);
            }
            for (var i = 0u; i < 4u; i++) {
                w_tile[r][(flat % 2u) * 8u + i] = e.lo[i];
                w_tile[r][(flat % 2u) * 8u + 4u + i] = e.hi[i];
            }
        }
        return;
    }
    for (var i = 0u; i < PER; i++) {
        let e = flat + i * 256u;
        let r = e / TK;
        let kk = e % TK;
        var wv = 0.0;
        if (col0 + r < p.n && k0 + kk < p.k) {
            wv = weight(col0 + r, k0 + kk);
        }
        w_tile[r][kk] = wv;
    }
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
        }
        load_w_tile(flat, col0, k0);
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

// ---- weight formats: the same text in matvec.wgsl, matmul.wgsl and embedding.wgsl ----
// FORMAT 0: f32; 1: f16, two per word (unpack2x16float, which every WebGPU device has);
// 2..9: GGUF's Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q5_0, Q5_1, Q4_1 blocks with their fields aligned
// to words (src/quant/mod.rs, gpu_block), dequantized here as they are loaded; a row is a whole
// number of blocks. `word(i)` is word i of the weight buffer, defined by each shader.
const F32: u32 = 0u;
const F16: u32 = 1u;
const Q8_0: u32 = 2u;
const Q4_0: u32 = 3u;
const Q4_K: u32 = 4u;
const Q5_K: u32 = 5u;
const Q6_K: u32 = 6u;
const Q5_0: u32 = 7u;
const Q5_1: u32 = 8u;
const Q4_1: u32 = 9u;

// Values in a block and words per block on the GPU.
fn block_values() -> u32 {
    return select(32u, 256u, FORMAT >= Q4_K && FORMAT <= Q6_K);
}

fn block_words() -> u32 {
    switch (FORMAT) {
        case 2u: { return 9u; }
        case 3u, 9u: { return 5u; }
        case 4u: { return 36u; }
        case 5u: { return 44u; }
        case 7u, 8u: { return 6u; }
        default: { return 53u; }
    }
}

// Words of a row of k values in a block format.
fn block_row_words(k: u32) -> u32 {
    return k / block_values() * block_words();
}

// Eight consecutive values of a row: lo holds the first four.
struct Eight {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The four bytes of a word as signed values.
fn i8x4(v: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// The nibbles at bit `shift` (0: low, 4: high) of a word's four bytes.
fn nibbles(v: u32, shift: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(15u);
}

// Byte i of the block at word `base`.
fn block_byte(base: u32, i: u32) -> u32 {
    return (word(base + i / 4u) >> (8u * (i % 4u))) & 255u;
}

// Q4_K / Q5_K: sub-block j's 6-bit scale and minimum from the 12 bytes at word `at`.
fn scale_min_k4(at: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(block_byte(at, j) & 63u), f32(block_byte(at, j + 4u) & 63u));
    }
    let sc = (block_byte(at, j + 4u) & 15u) | ((block_byte(at, j - 4u) >> 6u) << 4u);
    let m = (block_byte(at, j + 4u) >> 4u) | ((block_byte(at, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Values 8u .. 8u + 7 of the block-format row whose blocks start at word `row`.
fn dequant8(row: u32, u: u32) -> Eight {
    var e: Eight;
    if (FORMAT == Q8_0) {
        // 32 int8 in words 0..7, d in word 8: value = d * q
        let base = row + (u / 4u) * 9u + (u % 4u) * 2u;
        let d = unpack2x16float(word(row + (u / 4u) * 9u + 8u)).x;
        e.lo = d * i8x4(word(base));
        e.hi = d * i8x4(word(base + 1u));
    } else if (FORMAT == Q4_0) {
        // byte i holds value i (low nibble) and i + 16 (high): value = d * (q - 8)
        let block = row + (u / 4u) * 5u;
        let q = u % 4u;
        let d = unpack2x16float(word(block + 4u)).x;
        let shift = (q / 2u) * 4u;
        e.lo = d * (vec4<f32>(nibbles(word(block + (q % 2u) * 2u), shift)) - 8.0);
        e.hi = d * (vec4<f32>(nibbles(word(block + (q % 2u) * 2u + 1u), shift)) - 8.0);
    } else if (FORMAT == Q5_0 || FORMAT == Q5_1 || FORMAT == Q4_1) {
        // quants in words 0..3 as Q4_0's; Q5: the fifth bits in word 4 (bit e: value e of the
        // block); then d (Q5_0: value = d * (q - 16)) or d and m (value = d * q + m)
        let block = row + (u / 4u) * block_words();
        let q = u % 4u;
        let shift = (q / 2u) * 4u;
        var lo = vec4<f32>(nibbles(word(block + (q % 2u) * 2u), shift));
        var hi = vec4<f32>(nibbles(word(block + (q % 2u) * 2u + 1u), shift));
        let dm = unpack2x16float(word(block + block_words() - 1u));
        var m = dm.y;
        if (FORMAT != Q4_1) {
            let bits = word(block + 4u) >> (8u * q);
            lo += 16.0 * vec4<f32>((vec4<u32>(bits) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u));
            hi += 16.0 * vec4<f32>((vec4<u32>(bits) >> vec4<u32>(4u, 5u, 6u, 7u)) & vec4<u32>(1u));
            m = select(dm.y, -16.0 * dm.x, FORMAT == Q5_0);
        }
        e.lo = dm.x * lo + m;
        e.hi = dm.x * hi + m;
    } else if (FORMAT == Q4_K || FORMAT == Q5_K) {
        // d, dmin | 12 scale bytes | (Q5_K: qh, 32 bytes) | qs, 128 bytes. Values 64c .. 64c + 31
        // are the low nibbles of qs[32c ..], 64c + 32 .. the high ones; Q5_K's fifth bit is bit
        // 2c (+ 1 for the high half) of qh[l]: value = d * sc * q - dmin * m per sub-block.
        let v = u % 32u;
        let block = row + (u / 32u) * block_words();
        let dm = unpack2x16float(word(block));
        let c = v / 8u;
        let half = (v % 8u) / 4u;
        let sm = scale_min_k4(block + 1u, 2u * c + half) * dm;
        let qs = block + select(4u, 12u, FORMAT == Q5_K) + 8u * c + (v % 4u) * 2u;
        var lo = vec4<f32>(nibbles(word(qs), 4u * half));
        var hi = vec4<f32>(nibbles(word(qs + 1u), 4u * half));
        if (FORMAT == Q5_K) {
            let qh = block + 4u + (v % 4u) * 2u;
            let bit = 2u * c + half;
            lo += 16.0 * vec4<f32>((vec4<u32>(word(qh)) >> (vec4<u32>(0u, 8u, 16u, 24u) + bit)) & vec4<u32>(1u));
            hi += 16.0 * vec4<f32>((vec4<u32>(word(qh + 1u)) >> (vec4<u32>(0u, 8u, 16u, 24u) + bit)) & vec4<u32>(1u));
        }
        e.lo = sm.x * lo - sm.y;
        e.hi = sm.x * hi - sm.y;
    } else {
        // Q6_K: ql (128 bytes) | qh (64) | 16 int8 scales | d. In each half of 128 values,
        // value l + 32g (l < 32) has its low 4 bits in ql[l + 32 (g % 2)] (nibble g / 2) and its
        // top 2 bits at bit 2g of qh[l]: value = d * scale[l / 16 + 2g] * (q - 32).
        let v = u % 32u;
        let block = row + (u / 32u) * 53u;
        let n2 = v / 16u;
        let r = (v % 16u) * 8u;
        let g = r / 32u;
        let l0 = r % 32u;
        let ql = block + (64u * n2 + l0 + 32u * (g % 2u)) / 4u;
        let qh = block + 32u + (32u * n2 + l0) / 4u;
        let s = 8u * n2 + l0 / 16u + 2u * g;
        let scale = f32(bitcast<i32>(word(block + 48u + s / 4u) << (24u - 8u * (s % 4u))) >> 24u);
        let d = unpack2x16float(word(block + 52u)).x * scale;
        let top_shift = vec4<u32>(0u, 8u, 16u, 24u) + 2u * g;
        let lo = nibbles(word(ql), 4u * (g / 2u)) | (((vec4<u32>(word(qh)) >> top_shift) & vec4<u32>(3u)) << vec4<u32>(4u));
        let hi = nibbles(word(ql + 1u), 4u * (g / 2u)) | (((vec4<u32>(word(qh + 1u)) >> top_shift) & vec4<u32>(3u)) << vec4<u32>(4u));
        e.lo = d * (vec4<f32>(lo) - 32.0);
        e.hi = d * (vec4<f32>(hi) - 32.0);
    }
    return e;
}
// ---- end of weight formats ----
