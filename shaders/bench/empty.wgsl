// A kernel that does nothing but one store: what a dispatch costs whatever its work (launch,
// the wait for the dispatch before it, the hand-off to the device's workers). The benchmark
// sets a decode step's time against it (bench::decode::fixed_costs). Its parameter block is
// the one every dispatch of a tape binds.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;  // (1)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x == 0u) {
        y[0] += f32(p.n);
    }
}
