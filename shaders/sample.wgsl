// Sampling on the GPU: one workgroup per sequence picks the next token from its row of logits
// and writes it where the next decode step's embedding reads its input, so several steps run
// in one submit with no round trip to the CPU. Every mode of src/sampling (the CPU reference,
// which follows the same rules) runs here, in this order:
//
// 1. scores = logits, with the repetition penalty on the ids of the last `window` tokens of the
//    sequence's history (each distinct id once: x * inv_penalty if x > 0, else x * penalty).
// 2. The largest score and the first id holding it (greedy: that id). A NaN or +inf score, or
//    a row of nothing but -inf, marks the row broken.
// 3. top-k: the key of the k-th largest score, found by a radix select (four passes of a
//    256-bin histogram over one byte of the order-preserving key each); scores at or above it
//    survive (ties with the k-th included).
// 4. Weights e_i = exp((s_i - max) / temperature), the softmax before its normalization.
// 5. top-p: the same radix select weighted by probability mass (in fixed point, so the
//    histogram takes integer atomics and any order of additions gives the same sum) finds the
//    key where the mass of the top-k survivors, summed from the largest down, first reaches
//    top_p; survivors at or above it stay (ties included).
// 6. min-p: survivors with e_i >= min_p (the probability relative to the most likely token's).
// 7. The draw: u = uniform(seed, position), a counter-based generator (a hash of the seed and
//    the sequence position, so a token does not depend on how steps were grouped into
//    submits); the first id, in id order, whose running sum of surviving weights exceeds
//    u * total. Each invocation owns a contiguous block of ids: block sums, a walk over the
//    blocks, and a walk inside the chosen block.
//
// Every pass divides the vocabulary among all 256 invocations; no invocation walks all of
// it. The sequence then records the token: the output row of this step, the next step's input
// id, its history, position and budget; an EOS id or an exhausted budget marks it done, and
// the steps after that write NONE.

struct Params {
    vocab: u32,
    batch: u32,
    hist_cap: u32,  // history entries per sequence (a ring)
    step: u32,      // this step's row of `out`
}

// One sequence's options and progress (src/ops/sample.rs, SequenceState).
struct Sequence {
    temperature: f32,  // 0: greedy
    top_k: u32,        // 0: off
    top_p: f32,        // 1: off
    min_p: f32,        // 0: off
    penalty: f32,      // 1: off
    inv_penalty: f32,  // 1 / penalty, rounded once on the CPU
    window: u32,       // how many recent tokens the penalty looks at (<= hist_cap)
    seed_lo: u32,
    seed_hi: u32,
    position: u32,     // tokens in the sequence so far: the counter of this draw
    hist_count: u32,   // tokens written to the history ring so far
    budget: u32,       // tokens it may still sample
    done: u32,         // 1: stopped (EOS or budget)
    n_eos: u32,
    _pad0: u32,
    _pad1: u32,
    eos: array<u32, 8>,
}

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;    // no token: the sequence had stopped
const BROKEN: u32 = 0xfffffffeu;  // the row had NaN or +inf, or only -inf
const MASS_ONE: f32 = 2147483648.0;  // fixed-point scale of probability mass (2^31)
const NEG_INF_KEY: u32 = 0x007fffffu;  // key_of(-inf), written out: WGSL has no -inf literal

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;          // (batch, vocab)
@group(0) @binding(2) var<storage, read_write> scores: array<f32>;    // (batch, vocab) scratch
@group(0) @binding(3) var<storage, read_write> seqs: array<Sequence>; // (batch)
@group(0) @binding(4) var<storage, read_write> history: array<u32>;   // (batch, hist_cap) ring
@group(0) @binding(5) var<storage, read_write> ids: array<u32>;       // (batch): the next step's input
@group(0) @binding(6) var<storage, read_write> out: array<u32>;       // (steps, batch)

var<workgroup> seq_wg: Sequence;
var<workgroup> red_key: array<u32, WG>;
var<workgroup> red_id: array<u32, WG>;
var<workgroup> red_bad: array<u32, WG>;
var<workgroup> sums: array<f32, WG>;
var<workgroup> histogram: array<atomic<u32>, 256>;
var<workgroup> shared_u32: vec2<u32>;  // results lid 0 hands to the workgroup
var<workgroup> shared_f32: f32;

// Order-preserving map of f32 onto u32 (NaN is told apart before it is used).
fn key_of(x: f32) -> u32 {
    let bits = bitcast<u32>(x);
    return select(bits | 0x80000000u, ~bits, (bits >> 31u) == 1u);
}

fn value_of(key: u32) -> f32 {
    return bitcast<f32>(select(~key, key & 0x7fffffffu, (key >> 31u) == 1u));
}

// NaN or +inf, told by the bits: WGSL lets compilers assume floats are finite.
fn is_broken(x: f32) -> bool {
    let bits = bitcast<u32>(x);
    return (bits & 0x7f800000u) == 0x7f800000u && bits != 0xff800000u;
}

// lowbias32 (C. Wellons): a well-mixing 32-bit hash, the round of the counter-based generator.
fn mix(x: u32) -> u32 {
    var v = x;
    v ^= v >> 16u;
    v *= 0x7feb352du;
    v ^= v >> 15u;
    v *= 0x846ca68bu;
    v ^= v >> 16u;
    return v;
}

// Uniform in [0, 1) with 24 bits, from (seed, position) alone (sampling::uniform_at).
fn uniform_at(s: Sequence) -> f32 {
    let h = mix(mix(mix(s.seed_hi + 0x9e3779b9u) ^ s.seed_lo) + s.position);
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

// Survives top-k (key >= t_k) and top-p (key >= t_p): one threshold, the larger.
fn weight(base: u32, i: u32, threshold: u32, top: f32, s: Sequence) -> f32 {
    let x = scores[base + i];
    if (key_of(x) < threshold) {
        return 0.0;
    }
    let e = exp((x - top) / s.temperature);
    return select(e, 0.0, s.min_p > 0.0 && e < s.min_p);
}

// Radix select of the threshold key over the scores at or above `floor`: each pass histograms
// one byte of the keys that match the bytes fixed so far, by count (mass_scale = 0) or by
// fixed-point probability mass (exp((x - top) / T) * mass_scale), and lid 0 walks the bins
// from the top until `wanted` is reached. Returns the exact key of the boundary entry.
fn radix_select(base: u32, lid: u32, wanted: u32, floor: u32, top: f32, temperature: f32, mass_scale: f32) -> u32 {
    var prefix = 0u;
    var mask = 0u;
    var remaining = wanted;
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        atomicStore(&histogram[lid], 0u);
        workgroupBarrier();
        for (var i = lid; i < p.vocab; i += WG) {
            let x = scores[base + i];
            let key = key_of(x);
            if (key >= floor && (key & mask) == prefix) {
                let amount = select(1u, u32(exp((x - top) / temperature) * mass_scale), mass_scale > 0.0);
                atomicAdd(&histogram[(key >> shift) & 255u], amount);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            var cumulative = 0u;
            var chosen = 0u;
            var before = 0u;
            // The bin where the running total reaches `remaining`; where rounding leaves the
            // total short of it (top-p near 1), the lowest bin with entries (all survive).
            for (var bin = 255i; bin >= 0i; bin--) {
                let h = atomicLoad(&histogram[bin]);
                if (h > 0u) {
                    chosen = u32(bin);
                    before = cumulative;
                    if (cumulative + h >= remaining) {
                        break;
                    }
                }
                cumulative += h;
            }
            shared_u32 = vec2<u32>(prefix | (chosen << shift), remaining - before);
        }
        let decided = workgroupUniformLoad(&shared_u32);
        prefix = decided.x;
        remaining = decided.y;
        mask |= 255u << shift;
    }
    return prefix;
}

// Sum of sums[0..WG] into sums[0] in a tree (every invocation calls it).
fn sum_tree(lid: u32) {
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            sums[lid] += sums[lid + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let b = wg.x;
    if (lid == 0u) {
        seq_wg = seqs[b];
    }
    let s = workgroupUniformLoad(&seq_wg);
    let slot = p.step * p.batch + b;
    if (s.done == 1u) {
        if (lid == 0u) {
            out[slot] = NONE;
        }
        return;
    }
    let base = b * p.vocab;

    // 1. scores, with the repetition penalty.
    for (var i = lid; i < p.vocab; i += WG) {
        scores[base + i] = logits[base + i];
    }
    storageBarrier();
    if (s.penalty != 1.0) {
        let recent = min(min(s.hist_count, s.window), p.hist_cap);
        for (var j = lid; j < recent; j += WG) {
            let id = history[b * p.hist_cap + (s.hist_count - 1u - j) % p.hist_cap];
            if (id < p.vocab) {
                let x = logits[base + id];
                scores[base + id] = select(x * s.penalty, x * s.inv_penalty, x > 0.0);
            }
        }
        storageBarrier();
    }

    // 2. The largest score, the first id holding it, and whether the row is broken.
    var best_key = 0u;
    var best_id = NONE;
    var bad = 0u;
    for (var i = lid; i < p.vocab; i += WG) {
        let x = scores[base + i];
        let key = key_of(x);
        if (is_broken(x)) {
            bad = 1u;
        } else if (key > best_key || best_id == NONE) {
            best_key = key;
            best_id = i;
        }
    }
    red_key[lid] = best_key;
    red_id[lid] = best_id;
    red_bad[lid] = bad;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            let k2 = red_key[lid + stride];
            let i2 = red_id[lid + stride];
            if (i2 != NONE && (red_id[lid] == NONE || k2 > red_key[lid] || (k2 == red_key[lid] && i2 < red_id[lid]))) {
                red_key[lid] = k2;
                red_id[lid] = i2;
            }
            red_bad[lid] = max(red_bad[lid], red_bad[lid + stride]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        // A row of -inf has no token to give.
        let broken = red_bad[0] == 1u || red_id[0] == NONE || red_key[0] == NEG_INF_KEY;
        shared_u32 = vec2<u32>(select(red_id[0], BROKEN, broken), red_key[0]);
    }
    let top_pick = workgroupUniformLoad(&shared_u32);
    var token = top_pick.x;
    let top = value_of(top_pick.y);

    if (token != BROKEN && s.temperature > 0.0) {
        // 3. top-k threshold.
        var threshold = 0u;
        if (s.top_k > 0u && s.top_k < p.vocab) {
            threshold = radix_select(base, lid, s.top_k, 0u, top, s.temperature, 0.0);
        }
        // 5. top-p threshold, over the top-k survivors' softmax (4: the weights).
        if (s.top_p < 1.0) {
            var part = 0.0;
            for (var i = lid; i < p.vocab; i += WG) {
                let x = scores[base + i];
                if (key_of(x) >= threshold) {
                    part += exp((x - top) / s.temperature);
                }
            }
            sums[lid] = part;
            workgroupBarrier();
            sum_tree(lid);
            let z = workgroupUniformLoad(&sums[0]);
            // At least one unit of mass: the most likely token always survives.
            let wanted = max(1u, u32(max(s.top_p - 1e-6, 0.0) * MASS_ONE));
            let scale = MASS_ONE / z;
            threshold = max(threshold, radix_select(base, lid, wanted, threshold, top, s.temperature, scale));
        }
        // 6-7. min-p inside `weight`; the draw over contiguous blocks of ids.
        let block = (p.vocab + WG - 1u) / WG;
        let first = min(lid * block, p.vocab);
        let end = min(first + block, p.vocab);
        var block_sum = 0.0;
        for (var i = first; i < end; i++) {
            block_sum += weight(base, i, threshold, top, s);
        }
        sums[lid] = block_sum;
        workgroupBarrier();
        if (lid == 0u) {
            var total = 0.0;
            for (var j = 0u; j < WG; j++) {
                total += sums[j];
            }
            let goal = uniform_at(s) * total;
            // The first block whose sum passes the goal; rounding can leave none, then the
            // last block with any weight (its last survivor is drawn).
            var chosen = 0u;
            var rest = -1.0;
            var prefix = 0.0;
            for (var j = 0u; j < WG; j++) {
                if (sums[j] > 0.0) {
                    chosen = j;
                    if (goal - prefix < sums[j]) {
                        rest = goal - prefix;
                        break;
                    }
                }
                prefix += sums[j];
            }
            shared_u32 = vec2<u32>(chosen, 0u);
            shared_f32 = rest;
        }
        workgroupBarrier();
        if (lid == shared_u32.x) {
            let rest = shared_f32;
            var cumulative = 0.0;
            for (var i = first; i < end; i++) {
                let e = weight(base, i, threshold, top, s);
                if (e > 0.0) {
                    cumulative += e;
                    token = i;
                    if (rest >= 0.0 && rest < cumulative) {
                        break;
                    }
                }
            }
            shared_u32.y = token;
        }
        workgroupBarrier();
        token = shared_u32.y;
    }

    // The sequence takes the token.
    if (lid == 0u) {
        out[slot] = token;
        var done = token == BROKEN || s.budget <= 1u;
        if (token != BROKEN) {
            ids[b] = token;
            history[b * p.hist_cap + s.hist_count % p.hist_cap] = token;
            for (var e = 0u; e < min(s.n_eos, 8u); e++) {
                done = done || s.eos[e] == token;
            }
        }
        seqs[b].hist_count = s.hist_count + 1u;
        seqs[b].position = s.position + 1u;
        seqs[b].budget = s.budget - min(s.budget, 1u);
        seqs[b].done = u32(done);
    }
}
