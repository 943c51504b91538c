// How main_blocks (shaders/matvec.wgsl) gets the X values of a unit of W: every invocation
// loads them itself (x_unit). A part of the matvec modules, before matvec.wgsl;
// shaders/block_x_subgroup.wgsl shares them through the subgroup instead.

// The loop of block_sums over the units of invocation t's rows (column of unit j at
// w[base + j * size]).
fn block_units(acc: ptr<function, array<f32, 64>>, sum_sq: ptr<function, array<f32, 8>>, t: u32, base: u32, size: u32, units: u32, wide: bool, squares: bool) {
    for (var j = 0u; j < units; j++) {
        var xs = x_unit(j, wide);
        block_unit(acc, sum_sq, &xs, base + j * size, t, size, squares);
    }
}
