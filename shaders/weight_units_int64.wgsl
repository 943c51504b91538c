// W as u64, one 16-byte unit per element: the second part of the matmul_int64 module, after
// shaders/matrix_loads_int64.wgsl. The matmul loads single units and half units of W, so its
// elements are units (shaders/weight_pairs_int64.wgsl, the matvec's and the subgroup
// matmul's, pairs them).

@group(0) @binding(2) var<storage, read> w: array<vec2<u64>>;

// Whether w_unit_pair is one load (see shaders/matvec.wgsl, accumulate_rows).
const W_UNIT_PAIRS: bool = false;

// Unit i of W.
fn w_unit(i: u32) -> vec4<u32> {
    let u = w[i];
    return unit_of(u.x, u.y);
}

// Units i and i + 1 of W.
fn w_unit_pair(i: u32) -> array<vec4<u32>, 2> {
    return array<vec4<u32>, 2>(w_unit(i), w_unit(i + 1u));
}

// Words i and i + 1 of W, i even: one u64.
fn w_pair(i: u32) -> vec2<u32> {
    let v = w[i >> 2u][(i >> 1u) & 1u];
    return vec2<u32>(low(v), high(v));
}

// Word i of W.
fn w_word(i: u32) -> u32 {
    return u32(w[i >> 2u][(i >> 1u) & 1u] >> (32u * (i & 1u)));
}
