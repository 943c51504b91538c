// Read bandwidth probe for benchmarks: streams a buffer larger than the caches with 16-byte
// loads; every invocation writes one sum, so the reads cannot be optimised away (and the probe
// checks the sums once). Decode is a stream of weight reads, so the faster of the two access
// patterns is its roofline:
// - main: grid-strided, neighbouring invocations read neighbouring vec4s at every step
//   (coalesced loads from a grid wide enough to keep the memory busy).
// - main_chunks: each workgroup of 8 streams its own contiguous chunk, so a core of a CPU
//   device reads forward through memory the way its prefetcher expects.

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

// Workgroup g reads vec4s g * chunk .. (g + 1) * chunk, chunk = n_vec4 / workgroups (the
// caller makes it divide evenly).
@compute @workgroup_size(8)
fn main_chunks(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>) {
    let chunk = p.n_vec4 / (p.threads / 8u);
    let first = g.x * chunk;
    var acc = vec4<f32>(0.0);
    for (var i = t; i < chunk; i += 8u) {
        acc += src[first + i];
    }
    sums[g.x * 8u + t] = acc.x + acc.y + acc.z + acc.w;
}
