// W as u64, two 16-byte units per element: the second part of the matvec_int64 modules and of
// matmul_int64_subgroup, after shaders/matrix_loads_int64.wgsl. main_blocks (shaders/matvec.wgsl) loads the units of two
// neighbouring rows in one 32-byte load: per byte, half the lane-by-lane loads of one unit at
// a time (the 130m f16 decode step ran 1.13x faster on lavapipe). The weight buffers are padded
// to whole 32-byte elements (src/gpu/tensor.rs).

@group(0) @binding(2) var<storage, read> w: array<vec4<u64>>;

// Whether w_unit_pair is one load (see shaders/matvec.wgsl, accumulate_rows).
const W_UNIT_PAIRS: bool = true;

// Unit i of W: two one-component loads (loading the whole element would load four).
fn w_unit(i: u32) -> vec4<u32> {
    let half = 2u * (i & 1u);
    return unit_of(w[i >> 1u][half], w[i >> 1u][half + 1u]);
}

// Units i and i + 1 of W, i even.
fn w_unit_pair(i: u32) -> array<vec4<u32>, 2> {
    let v = w[i >> 1u];
    return array<vec4<u32>, 2>(unit_of(v.x, v.y), unit_of(v.z, v.w));
}

// Words i and i + 1 of W, i even: one u64.
fn w_pair(i: u32) -> vec2<u32> {
    let v = w[i >> 3u][(i >> 1u) & 3u];
    return vec2<u32>(low(v), high(v));
}

// Word i of W.
fn w_word(i: u32) -> u32 {
    return u32(w[i >> 3u][(i >> 1u) & 3u] >> (32u * (i & 1u)));
}
