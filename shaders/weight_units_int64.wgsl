// Loads of W as u64: the first part of the matvec and matmul modules for CPU devices with
// 64-bit integers (SHADER_INT64; src/gpu/kernels.rs, MODULES), in place of
// shaders/weight_units.wgsl, with the same functions. lavapipe loads every component of a
// storage-buffer load lane by lane, so two 8-byte components cost less than four 4-byte ones:
// decode steps ran 1.09-1.18x faster in interleaved A/B runs on lavapipe (mamba-130m and
// 370m, f16 and f32).

@group(0) @binding(2) var<storage, read> w: array<vec2<u64>>;

// Unit i. Little-endian, as every wgpu backend is: the low half of a u64 is the first word.
fn w_unit(i: u32) -> vec4<u32> {
    let u = w[i];
    return vec4<u32>(u32(u.x), u32(u.x >> 32u), u32(u.y), u32(u.y >> 32u));
}

// Words i and i + 1, i even: one u64.
fn w_pair(i: u32) -> vec2<u32> {
    let v = w[i >> 2u][(i >> 1u) & 1u];
    return vec2<u32>(u32(v), u32(v >> 32u));
}

// Word i.
fn w_word(i: u32) -> u32 {
    return u32(w[i >> 2u][(i >> 1u) & 1u] >> (32u * (i & 1u)));
}
