// Embedding gather: out[r, :] = table[ids[r], :] for the ids that fall in this part of the table.
// A table larger than one storage binding is split by rows into parts; the host dispatches this
// kernel once per part and every row is written by exactly one part.
//
// The table is stored as the matrix kernels read it (it doubles as the LM head): u32 words of
// f32, of two f16 halves, or of a block format's blocks (FORMAT, "weight formats" below); f32
// and f16 rows are padded to whole 16-byte units.

override FORMAT: u32 = 0u;

struct Params {
    rows: u32,       // tokens to gather
    d_model: u32,
    first_row: u32,  // first table row held by this part
    part_rows: u32,  // rows held by this part
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;         // (rows)
@group(0) @binding(2) var<storage, read> table: array<u32>;       // (part_rows, d_model)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // (rows, d_model)

fn word(i: u32) -> u32 {
    return table[i];
}

// table[n, c] for row n of this part.
fn weight(n: u32, c: u32) -> f32 {
    if (FORMAT >= Q8_0) {
        let e = dequant8(n * block_row_words(p.d_model), c / 8u);
        let i = c % 8u;
        return select(e.hi[i % 4u], e.lo[i % 4u], i < 4u);
    }
    let per_unit = select(4u, 8u, FORMAT == F16);
    let units = (p.d_model + per_unit - 1u) / per_unit;
    let unit = n * units + c / per_unit;
    let i = unit * per_unit + c % per_unit;  // element index, in halves or floats
    if (FORMAT == F16) {
        let pair = unpack2x16float(table[i >> 1u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(table[i]);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let r = gid.y;
    if (col >= p.d_model || r >= p.rows) {
        return;
    }
    let id = ids[r];
    if (id < p.first_row || id >= p.first_row + p.part_rows) {
        return;
    }
    out[r * p.d_model + col] = weight(id - p.first_row, col);
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
