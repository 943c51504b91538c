// Loads of W (4-byte words: an f32 or two packed f16) as u32: the first part of the matvec and
// matmul modules (src/gpu/kernels.rs, MODULES). shaders/weight_units_int64.wgsl declares the
// same binding and functions with 64-bit loads. W is stored in 16-byte units (4 f32 or 8 f16 of
// a row); each function loads as few components as its caller needs.

@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;

// Unit i.
fn w_unit(i: u32) -> vec4<u32> {
    return w[i];
}

// Words i and i + 1, i even (half a unit).
fn w_pair(i: u32) -> vec2<u32> {
    return vec2<u32>(w[i >> 2u][i & 3u], w[i >> 2u][(i & 3u) + 1u]);
}

// Word i.
fn w_word(i: u32) -> u32 {
    return w[i >> 2u][i & 3u];
}
