// How main_blocks (shaders/matvec.wgsl) gets the X values of a unit of W: every invocation
// loads them itself (x_unit). A part of the matvec modules, before matvec.wgsl;
// shaders/block_x_subgroup.wgsl shares them through the subgroup instead.

// The invocation's lane for block_x (unused here).
fn x_lane(t: u32) -> u32 {
    return t;
}

// The X values that unit j of a row of W multiplies, for every batch row: [2 * m + half].
fn block_x(j: u32, lane: u32, wide: bool) -> array<vec4<f32>, 16> {
    return x_unit(j, wide);
}
