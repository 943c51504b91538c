// How main_blocks (shaders/matvec.wgsl) gets the X values of a unit of W on devices whose
// subgroups are exactly its workgroup of 8 (lavapipe): each lane loads a part of them and
// subgroupBroadcast hands each to every lane. Every lane needs the same X, and a CPU device
// loads lane by lane, so each lane loading all of them cost 8 times the loads; a copy of the
// kernel read 1.07x faster at batch 1 and 1.4x at batch 8 this way, whole decode steps
// 0.99-1.04x and 1.14x (BENCHMARKS.md). A part of the matvec_int64_subgroup module, after
// shaders/matrix_loads_int64.wgsl (x_pair) and before matvec.wgsl, in place of
// shaders/block_x_lanes.wgsl.
//
// Where X's rows are 16-byte aligned (`wide`) and the units come in whole groups, lane l
// loads X values 2l and 2l + 1 of 16 in one 8-byte load, so one load per lane brings the X of
// 2 units (f16) or 4 (f32), where one value per lane took a load per unit: 24 in_proj
// dispatches ran 1.01-1.07x as fast at batch 1 and 1.12x at batch 8 (BENCHMARKS.md).

// The loop of block_sums over the units of invocation t's rows (column of unit j at
// w[base + j * size]).
fn block_units(acc: ptr<function, array<f32, 64>>, sum_sq: ptr<function, array<f32, 8>>, t: u32, base: u32, size: u32, units: u32, wide: bool, squares: bool) {
    let lane = subgroupExclusiveAdd(1u);  // once all 8 are active
    let group = select(4u, 2u, WEIGHT_F16);
    if (wide && units % group == 0u) {
        for (var j = 0u; j < units; j += group) {
            let loaded = x_group(j, lane);
            // The group's units one by one, with constant u: the lanes to broadcast from must
            // be constants.
            group_unit(acc, sum_sq, loaded, 0u, base + j * size, t, size, squares);
            group_unit(acc, sum_sq, loaded, 1u, base + (j + 1u) * size, t, size, squares);
            if (!WEIGHT_F16) {
                group_unit(acc, sum_sq, loaded, 2u, base + (j + 2u) * size, t, size, squares);
                group_unit(acc, sum_sq, loaded, 3u, base + (j + 3u) * size, t, size, squares);
            }
        }
        return;
    }
    for (var j = 0u; j < units; j++) {
        var xs = unit_x(j, lane);
        block_unit(acc, sum_sq, &xs, base + j * size, t, size, squares);
    }
}

// The 16 X values of every batch row from unit j's first on (j a multiple of the group's
// units): lane l holds values 2l and 2l + 1, [m].
fn x_group(j: u32, lane: u32) -> array<vec2<f32>, 8> {
    let per_unit = select(4u, 8u, WEIGHT_F16);
    var loaded: array<vec2<f32>, 8>;
    for (var m = 0u; m < BATCH; m++) {
        loaded[m] = x_pair((m * p.x_stride + p.x_offset + j * per_unit) / 2u + lane);
    }
    return loaded;
}

// block_unit for unit u of a group (x_group), with its X values from the lanes that hold them.
fn group_unit(acc: ptr<function, array<f32, 64>>, sum_sq: ptr<function, array<f32, 8>>, loaded: array<vec2<f32>, 8>, u: u32, column: u32, t: u32, size: u32, squares: bool) {
    let lanes = select(2u, 4u, WEIGHT_F16);  // lanes per unit
    let l0 = u * lanes;
    var xs: array<vec4<f32>, 16>;
    for (var m = 0u; m < BATCH; m++) {
        let v = loaded[m];
        xs[2u * m] = vec4<f32>(pair_of_lane(v, l0), pair_of_lane(v, l0 + 1u));
        if (WEIGHT_F16) {
            xs[2u * m + 1u] = vec4<f32>(pair_of_lane(v, l0 + 2u), pair_of_lane(v, l0 + 3u));
        }
    }
    block_unit(acc, sum_sq, &xs, column, t, size, squares);
}

// v of lane `lane`, a constant once group_unit is inlined (subgroupBroadcast takes constant
// lanes; the compiler folds the switch).
fn pair_of_lane(v: vec2<f32>, lane: u32) -> vec2<f32> {
    switch (lane) {
        case 0u: { return subgroupBroadcast(v, 0u); }
        case 1u: { return subgroupBroadcast(v, 1u); }
        case 2u: { return subgroupBroadcast(v, 2u); }
        case 3u: { return subgroupBroadcast(v, 3u); }
        case 4u: { return subgroupBroadcast(v, 4u); }
        case 5u: { return subgroupBroadcast(v, 5u); }
        case 6u: { return subgroupBroadcast(v, 6u); }
        default: { return subgroupBroadcast(v, 7u); }
    }
}

// The X values of unit j for every batch row, [2 * m + half], for any row alignment: lane l
// loads value l of the unit's 4 or 8.
fn unit_x(j: u32, lane: u32) -> array<vec4<f32>, 16> {
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
