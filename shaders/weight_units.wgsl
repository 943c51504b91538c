// W's 16-byte units (4 f32 or 8 packed f16 of a row) as four u32: the first part of the matvec
// module (src/gpu/kernels.rs, MODULES). shaders/weight_units_int64.wgsl declares the same
// binding and function with 64-bit loads.

@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;

fn w_unit(i: u32) -> vec4<u32> {
    return w[i];
}
