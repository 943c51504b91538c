// Embedding gather: out[r, :] = table[ids[r], :] for the ids that fall in this part of the table.
// A table larger than one storage binding is split by rows into parts; the host dispatches this
// kernel once per part and every row is written by exactly one part.
//
// Weights are stored as u32 words: one f32 each, or two f16 halves each (WEIGHT_F16), read with
// unpack2x16float, which every WebGPU device has (no shader-f16 needed).

override WEIGHT_F16: bool = false;

struct Params {
    rows: u32,       // tokens to gather
    d_model: u32,
    first_row: u32,  // first table row held by this part
    part_rows: u32,  // rows held by this part
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;         // (rows)
@group(0) @binding(2) var<storage, read> table: array<u32>;       // (part_rows, d_model)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // (rows, d_model)

fn weight(i: u32) -> f32 {
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
    out[r * p.d_model + col] = weight((id - p.first_row) * p.d_model + col);
}
