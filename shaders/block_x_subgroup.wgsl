// How main_blocks (shaders/matvec.wgsl) gets the X values of a unit of W on devices whose
// subgroups are exactly its workgroup of 8 (lavapipe): lane l loads value l of the unit's 4 or
// 8, and subgroupBroadcast hands each to every lane. Every lane needs the same X, and a CPU
// device loads lane by lane, so each lane loading all of them cost 8 times the loads; a copy
// of the kernel read 1.07x faster at batch 1 and 1.4x at batch 8 this way, whole decode steps
// 0.99-1.04x and 1.14x (BENCHMARKS.md). A
// part of the matvec_int64_subgroup module, before matvec.wgsl, in place of
// shaders/block_x_lanes.wgsl.

// The invocation's lane in its subgroup, once all 8 are active.
fn x_lane(t: u32) -> u32 {
    return subgroupExclusiveAdd(1u);
}

// The X values that unit j of a row of W multiplies, for every batch row: [2 * m + half].
// Works for any row alignment (`wide` is not needed: each lane loads one value).
fn block_x(j: u32, lane: u32, wide: bool) -> array<vec4<f32>, 16> {
    let per_unit = select(4u, 8u, WEIGHT_F16);
    let e = j * per_unit + lane;
    var xs: array<vec4<f32>, 16>;
    for (var m = 0u; m < BATCH; m++) {
        var v = 0.0;
        if (lane < per_unit && e < p.k) {
            v = x_at(m, e);
        }
        xs[2u * m] = vec4<f32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u));
        if (WEIGHT_F16) {
            xs[2u * m + 1u] = vec4<f32>(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
        }
    }
    return xs;
}
