// Top-k candidates of one row of logits on the GPU, after the repetition penalty, so that
// top-k sampling reads back a few KiB instead of the whole vocabulary. One workgroup:
//
// 1. keys[i] = key(logits[i]), with the penalty applied to the recent tokens' entries:
//      x' = x * inv_penalty if x > 0 else x * penalty     (src/sampling/mod.rs does the same)
//    key() maps f32 to u32 in the same order (NaN above everything, so a broken row shows up
//    among the candidates and the sampler rejects it).
// 2. Radix select: four passes, one byte of the key at a time from the top, each a 256-bin
//    histogram (workgroup atomics) of the keys that match the bytes fixed so far, find the
//    exact key of the k-th largest entry: the threshold.
// 3. Every entry whose key is at least the threshold is a candidate: out[0] = their count,
//    then (id, penalized logit) pairs, at most `cap` of them. More than k only on ties; more
//    than cap only on massive ties, and then the caller reads the whole row instead.
// The sampler then applies top-k (with its tie rule) and the rest of its chain to these.

struct Params {
    n: u32,           // vocabulary size
    k: u32,           // 1..=n
    cap: u32,         // pairs out can hold
    n_penalized: u32, // distinct recent token ids to penalize
    penalty: f32,     // multiplies non-positive logits of recent tokens
    inv_penalty: f32, // multiplies positive ones (1 / penalty, rounded once on the CPU)
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;      // (n)
@group(0) @binding(2) var<storage, read> penalized: array<u32>;   // (n_penalized) distinct ids
@group(0) @binding(3) var<storage, read_write> keys: array<u32>;  // (n) scratch
@group(0) @binding(4) var<storage, read_write> out: array<u32>;   // (1 + 2 cap)

var<workgroup> histogram: array<atomic<u32>, 256>;
var<workgroup> found: atomic<u32>;
var<workgroup> prefix: u32;     // the threshold's bytes fixed so far
var<workgroup> remaining: u32;  // how many of the largest keys under `prefix` are still wanted

// Order-preserving map of f32 onto u32: positive floats above negative ones, larger above
// smaller; NaN above +inf.
fn key_of(x: f32) -> u32 {
    let bits = bitcast<u32>(x);
    // NaN, told by its bits: WGSL lets compilers assume that x == x.
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return 0xffffffffu;
    }
    return select(bits | 0x80000000u, ~bits, (bits >> 31u) == 1u);
}

fn value_of(key: u32) -> f32 {
    return bitcast<f32>(select(~key, key & 0x7fffffffu, (key >> 31u) == 1u));
}

fn with_penalty(x: f32) -> f32 {
    return select(x * p.penalty, x * p.inv_penalty, x > 0.0);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    for (var i = lid; i < p.n; i += WG) {
        keys[i] = key_of(logits[i]);
    }
    storageBarrier();
    for (var j = lid; j < p.n_penalized; j += WG) {
        let id = penalized[j];
        if (id < p.n) {
            keys[id] = key_of(with_penalty(logits[id]));
        }
    }
    storageBarrier();
    if (lid == 0u) {
        prefix = 0u;
        remaining = p.k;
        atomicStore(&found, 0u);
    }

    var fixed = 0u;  // mask of the key bits fixed so far
    for (var shift = 24i; shift >= 0i; shift -= 8i) {
        atomicStore(&histogram[lid], 0u);
        workgroupBarrier();
        let want = workgroupUniformLoad(&prefix);
        for (var i = lid; i < p.n; i += WG) {
            let key = keys[i];
            if ((key & fixed) == want) {
                atomicAdd(&histogram[(key >> u32(shift)) & 255u], 1u);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            // Walk the bins from the largest byte down to the one holding the k-th key.
            var above = 0u;
            for (var digit = 255i; digit >= 0i; digit--) {
                let count = atomicLoad(&histogram[digit]);
                if (above + count >= remaining) {
                    prefix |= u32(digit) << u32(shift);
                    remaining -= above;
                    break;
                }
                above += count;
            }
        }
        fixed |= 255u << u32(shift);
        workgroupBarrier();
    }

    let threshold = workgroupUniformLoad(&prefix);
    for (var i = lid; i < p.n; i += WG) {
        let key = keys[i];
        if (key >= threshold) {
            let slot = atomicAdd(&found, 1u);
            if (slot < p.cap) {
                out[1u + 2u * slot] = i;
                out[2u + 2u * slot] = bitcast<u32>(value_of(key));
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        out[0] = atomicLoad(&found);
    }
}
