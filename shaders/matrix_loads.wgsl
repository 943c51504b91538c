// Loads of X (f32 activations) and W (weights in 16-byte units: 4 f32 or 8 packed f16 of a
// row) as 32-bit components: the first part of the matvec and matmul modules
// (src/gpu/kernels.rs, MODULES). shaders/matrix_loads_int64.wgsl with weight_units_int64.wgsl
// or weight_pairs_int64.wgsl declare the same bindings and functions with 64-bit loads. Each
// function loads as few components as its caller needs.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;

// Elements 4q .. 4q + 3 of X.
fn x_quad(q: u32) -> vec4<f32> {
    return x[q];
}

// Element i of X.
fn x_elem(i: u32) -> f32 {
    return x[i >> 2u][i & 3u];
}

// Whether w_unit_pair is one load (see shaders/matvec.wgsl, accumulate_rows): 16 bytes is
// this part's widest load (shaders/weight_pairs_int64.wgsl loads two units at once).
const W_UNIT_PAIRS: bool = false;

// Unit i of W.
fn w_unit(i: u32) -> vec4<u32> {
    return w[i];
}

// Units i and i + 1 of W (unused where W_UNIT_PAIRS is false).
fn w_unit_pair(i: u32) -> array<vec4<u32>, 2> {
    return array<vec4<u32>, 2>(w[i], w[i + 1u]);
}

// Words i and i + 1 of W, i even (half a unit).
fn w_pair(i: u32) -> vec2<u32> {
    return vec2<u32>(w[i >> 2u][i & 3u], w[i >> 2u][(i & 3u) + 1u]);
}

// Word i of W (an f32 or two packed f16).
fn w_word(i: u32) -> u32 {
    return w[i >> 2u][i & 3u];
}
