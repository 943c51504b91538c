// W's 16-byte units as two u64 each: the first part of the matvec module for CPU devices with
// 64-bit integers (SHADER_INT64; src/gpu/kernels.rs, MODULES), in place of
// shaders/weight_units.wgsl. lavapipe loads every component of a storage-buffer load lane by
// lane, so two 8-byte components cost less than four 4-byte ones: decode steps ran 1.09-1.16x
// faster in interleaved A/B runs on lavapipe (mamba-130m and 370m, f16 and f32).

@group(0) @binding(2) var<storage, read> w: array<vec2<u64>>;

fn w_unit(i: u32) -> vec4<u32> {
    let u = w[i];
    // Little-endian, as every wgpu backend is: the low half of a u64 is the first u32.
    return vec4<u32>(u32(u.x), u32(u.x >> 32u), u32(u.y), u32(u.y >> 32u));
}
