// Greedy decoding on the GPU: the index of the largest logit of each row (the first on ties),
// so a step reads back 4 bytes per sequence instead of the whole vocabulary. A NaN or +inf
// logit means a broken model output: the first one wins and its index comes back with the top
// bit set (BROKEN), so the host reports it as the sampler does. A row of -inf only comes back
// as 0xffffffff.

struct Params {
    rows: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;       // (rows, n)
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;    // (rows)

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;

const BROKEN: u32 = 0x80000000u;

// NaN or +inf, told by the bits: WGSL lets a compiler assume floats are finite, so comparisons
// cannot be trusted to find them.
fn broken(v: f32) -> bool {
    let bits = bitcast<u32>(v);
    return (bits & 0x7f800000u) == 0x7f800000u && bits != 0xff800000u;
}

// Does (v1, i1) beat (v2, i2)? A broken value wins, then the larger value, then the smaller
// index.
fn beats(v1: f32, i1: u32, v2: f32, i2: u32) -> bool {
    let b1 = broken(v1);
    let b2 = broken(v2);
    if (b1 || b2) {
        return b1 && (!b2 || i1 < i2);
    }
    return v1 > v2 || (v1 == v2 && i1 < i2);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let base = wg.x * p.n;
    // -FLT_MAX, written exactly: Chrome's WGSL compiler (Tint) rejects the decimal -3.4028235e38,
    // which lies just beyond the f32 range before rounding.
    var v = -0x1.fffffep+127f;
    var idx = 0xffffffffu;
    for (var i = lid; i < p.n; i += WG) {
        let x = logits[base + i];
        if (beats(x, i, v, idx)) {
            v = x;
            idx = i;
        }
    }
    best_value[lid] = v;
    best_index[lid] = idx;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride && beats(best_value[lid + stride], best_index[lid + stride], best_value[lid], best_index[lid])) {
            best_value[lid] = best_value[lid + stride];
            best_index[lid] = best_index[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        ids[wg.x] = best_index[0] | select(0u, BROKEN, broken(best_value[0]));
    }
}
