// Loads of X and W as u64: the first part of the matvec and matmul modules for CPU devices with
// 64-bit integers (SHADER_INT64; src/gpu/kernels.rs, MODULES), in place of
// shaders/matrix_loads.wgsl, with the same bindings and functions. lavapipe loads every
// component of a storage-buffer load lane by lane, so two 8-byte components cost less than
// four 4-byte ones: decode steps ran 1.13-1.20x and prefill 1.12-1.15x faster in interleaved
// A/B runs on lavapipe (examples/cpu_variants_ab.rs -- int64-loads, mamba-130m f16 and f32).
// Little-endian, as every wgpu backend is: the low half of a u64 is the first 32-bit word.

@group(0) @binding(1) var<storage, read> x: array<vec2<u64>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u64>>;  // two units per element

// main_blocks (shaders/matvec.wgsl) loads W two units at a time, 32 bytes in one load: per
// byte, half the lane-by-lane loads of one unit at a time (the matvec ran 1.1-1.2x faster on
// lavapipe). The weight buffers are padded to whole 32-byte elements (src/gpu/tensor.rs).
const W_UNIT_PAIRS: bool = true;

fn low(v: u64) -> u32 {
    return u32(v);
}

fn high(v: u64) -> u32 {
    return u32(v >> 32u);
}

// Elements 4q .. 4q + 3 of X.
fn x_quad(q: u32) -> vec4<f32> {
    let v = x[q];
    return bitcast<vec4<f32>>(vec4<u32>(low(v.x), high(v.x), low(v.y), high(v.y)));
}

// Element i of X.
fn x_elem(i: u32) -> f32 {
    return bitcast<f32>(u32(x[i >> 2u][(i >> 1u) & 1u] >> (32u * (i & 1u))));
}

fn unit_of(a: u64, b: u64) -> vec4<u32> {
    return vec4<u32>(low(a), high(a), low(b), high(b));
}

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
