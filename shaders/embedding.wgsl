// Embedding gather: out[r, :] = table[ids[r], :] for the ids that fall in this part of the table.
// A table larger than one storage binding is split by rows into parts; the host dispatches this
// kernel once per part and every row is written by exactly one part.
//
// Weights are stored as u32 words: one f32 each, or two f16 halves each (WEIGHT_F16), read with
// unpack2x16float, which every WebGPU device has (no shader-f16 needed). Rows are padded to
// whole 16-byte units: the table doubles as the LM head, which the matrix kernels read.

override WEIGHT_F16: bool = false;

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

// table[n, c] for row n of this part.
fn weight(n: u32, c: u32) -> f32 {
    let per_unit = select(4u, 8u, WEIGHT_F16);
    let units = (p.d_model + per_unit - 1u) / per_unit;
    let unit = n * units + c / per_unit;
    let i = unit * per_unit + c % per_unit;  // element index, in halves or floats
    if (WEIGHT_F16) {
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
