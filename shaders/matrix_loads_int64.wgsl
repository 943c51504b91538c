// Loads of X as u64, and the u64 helpers: the first part of the matvec and matmul modules for
// CPU devices with 64-bit integers (SHADER_INT64; src/gpu/kernels.rs, MODULES), in place of
// shaders/matrix_loads.wgsl. The second part declares W: shaders/weight_units_int64.wgsl
// (matmul_int64) or weight_pairs_int64.wgsl (matvec_int64*, matmul_int64_subgroup); together
// they have the bindings and functions of matrix_loads.wgsl. lavapipe loads every component of a storage-buffer load lane by lane,
// so two 8-byte components cost less than four 4-byte ones: decode steps ran 1.13-1.20x and
// prefill 1.12-1.15x faster in interleaved A/B runs on lavapipe (examples/cpu_variants_ab.rs
// -- int64-loads, mamba-130m f16 and f32).
// Little-endian, as every wgpu backend is: the low half of a u64 is the first 32-bit word.

@group(0) @binding(1) var<storage, read> x: array<vec2<u64>>;

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

// Elements 2i and 2i + 1 of X: one u64.
fn x_pair(i: u32) -> vec2<f32> {
    let v = x[i >> 1u][i & 1u];
    return bitcast<vec2<f32>>(vec2<u32>(low(v), high(v)));
}

// Element i of X.
fn x_elem(i: u32) -> f32 {
    return bitcast<f32>(u32(x[i >> 2u][(i >> 1u) & 1u] >> (32u * (i & 1u))));
}

// A unit of W (16 bytes) from its two u64.
fn unit_of(a: u64, b: u64) -> vec4<u32> {
    return vec4<u32>(low(a), high(a), low(b), high(b));
}
