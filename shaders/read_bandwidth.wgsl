// Read bandwidth probe for benchmarks: every invocation streams a strided share of a buffer
// larger than the caches with 16-byte loads and writes one sum, so the reads cannot be
// optimised away. Decode is a stream of weight reads, so this is its roofline.

struct Params {
    n_vec4: u32,    // vec4 elements in src
    threads: u32,   // total invocations of the dispatch
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;  // (threads)

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = vec4<f32>(0.0);
    for (var i = gid.x; i < p.n_vec4; i += p.threads) {
        acc += src[i];
    }
    sums[gid.x] = acc.x + acc.y + acc.z + acc.w;
}
