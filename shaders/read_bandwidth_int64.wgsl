// Read bandwidth probe, the chunked pattern of shaders/read_bandwidth.wgsl with 32-byte loads
// of four u64, for devices with 64-bit integers (SHADER_INT64). A module of its own: the others
// must compile where u64 does not exist. lavapipe streams 1.3-1.5x faster this way than with
// 16-byte loads (it loads every component lane by lane), and the CPU-device matvec loads its
// weights as u64 (shaders/weight_pairs_int64.wgsl), so this pattern belongs in the roofline.

struct Params {
    n_vec4: u32,    // 16-byte elements in src (an even number)
    threads: u32,   // total invocations of the dispatch
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u64>>;
@group(0) @binding(2) var<storage, read_write> sums: array<u32>;  // (threads): low 32 bits of each sum

// Workgroup g reads 32-byte elements g * chunk .. (g + 1) * chunk.
@compute @workgroup_size(8)
fn main_chunks(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>) {
    let chunk = p.n_vec4 / 2u / (p.threads / 8u);
    let first = g.x * chunk;
    var acc = vec4<u64>(0lu);
    for (var i = t; i < chunk; i += 8u) {
        acc += src[first + i];
    }
    sums[g.x * 8u + t] = u32(acc.x + acc.y + acc.z + acc.w);
}
