// The prefill matmul for CPU devices whose subgroups are exactly a workgroup of 8 (lavapipe),
// with u64 loads: the last part of the matmul_int64_subgroup module, after
// shaders/matrix_loads_int64.wgsl (x_quad), weight_units_int64.wgsl (w_unit) and matmul.wgsl
// (Params, units_per_row, store_row). Computes what main_direct does,
//   Y[m, n] = act(sum_k X[m, k] W[n, k] + bias[n]),
// for k a multiple of 8 and X's rows 16-byte aligned (src/ops/linear.rs picks it).
//
// A CPU device runs a subgroup's 8 invocations as the 8 lanes of one SIMD register, and loads
// storage buffers lane by lane, so what costs is loads per multiply-add. In main_direct each
// invocation loads the X and W of its own 4 x 4 block: 16 loads per 128 multiply-adds per 8
// values of k. Here the 8 lanes of a workgroup compute a tile of 16 rows x 32 columns of Y
// together, and split its loads:
// - lane l owns columns col0 + l, col0 + 8 + l, col0 + 16 + l and col0 + 24 + l, and loads
//   their W (in WeightLayout::RowBlocks the units the 8 lanes load together are contiguous);
// - lane l loads the X of rows row0 + l and row0 + 8 + l, and subgroupBroadcast hands each
//   row to every lane.
// Per 8 values of k a lane makes 4 loads of X and 4 of W (8 with f32 weights) for 512
// multiply-adds. At the 130m shapes, 512 rows, on lavapipe: 3.5-6x as fast as main_direct.

// Rows and columns of Y per workgroup (MATMUL_SUBGROUP_TILE in src/gpu/kernels.rs).
const SUB_ROWS: u32 = 16u;
const SUB_COLS: u32 = 32u;

@compute @workgroup_size(8)
fn main_subgroup(@builtin(workgroup_id) wg: vec3<u32>) {
    let lane = subgroupExclusiveAdd(1u);  // all 8 are active here
    let row0 = wg.y * SUB_ROWS;
    let col0 = wg.x * SUB_COLS;
    // X of rows row0 + lane and row0 + 8 + lane, in 16-byte units (rows past the edge repeat
    // the last one; their results are not stored).
    let x_lo = (min(row0 + lane, p.m - 1u) * p.x_stride + p.x_offset) / 4u;
    let x_hi = (min(row0 + 8u + lane, p.m - 1u) * p.x_stride + p.x_offset) / 4u;
    // The tile's 32 columns lie in one block of 64 rows of W (col0 is a multiple of 32);
    // unit u of column c is at block + u * size + c - first. Columns past the edge repeat the
    // last one.
    let first = col0 / 64u * 64u;
    let size = min(64u, p.n - first);
    let block = first * units_per_row();
    let c0 = min(col0 + lane, p.n - 1u) - first;
    let c1 = min(col0 + 8u + lane, p.n - 1u) - first;
    let c2 = min(col0 + 16u + lane, p.n - 1u) - first;
    let c3 = min(col0 + 24u + lane, p.n - 1u) - first;
    // acc[r][j]: row row0 + r, column col0 + 8 j + lane.
    var acc: array<vec4<f32>, 16>;
    for (var k = 0u; k < p.k; k += 8u) {
        // W[column, k .. k + 8] of the lane's four columns: w[2 j] values 0-3, w[2 j + 1] 4-7.
        var w: array<vec4<f32>, 8>;
        let units = block + k / select(4u, 8u, WEIGHT_F16) * size;
        column_chunk(&w, 0u, units, size, c0);
        column_chunk(&w, 2u, units, size, c1);
        column_chunk(&w, 4u, units, size, c2);
        column_chunk(&w, 6u, units, size, c3);
        add_rows(&acc, 0u, x_quad(x_lo + k / 4u), x_quad(x_lo + k / 4u + 1u), w);
        add_rows(&acc, 8u, x_quad(x_hi + k / 4u), x_quad(x_hi + k / 4u + 1u), w);
    }
    store_rows(&acc, 0u, row0, col0 + lane);
    store_rows(&acc, 8u, row0 + 8u, col0 + lane);
}

// w[i], w[i + 1] = W[column, k .. k + 8], the column at `offset` in its block, from the units
// of k's chunk (the chunk's first unit column starts at `units`).
fn column_chunk(w: ptr<function, array<vec4<f32>, 8>>, i: u32, units: u32, size: u32, offset: u32) {
    if (WEIGHT_F16) {
        let h = w_unit(units + offset);
        (*w)[i] = vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
        (*w)[i + 1u] = vec4<f32>(unpack2x16float(h.z), unpack2x16float(h.w));
    } else {
        (*w)[i] = bitcast<vec4<f32>>(w_unit(units + offset));
        (*w)[i + 1u] = bitcast<vec4<f32>>(w_unit(units + size + offset));
    }
}

// acc[first + l] += X[row of lane l, chunk] . W[lane's columns, chunk] for every lane l: the
// X values each lane loaded (lo: values 0-3 of the chunk, hi: 4-7), broadcast one lane after
// the other (subgroupBroadcast takes constant lanes).
fn add_rows(acc: ptr<function, array<vec4<f32>, 16>>, first: u32, lo: vec4<f32>, hi: vec4<f32>, w: array<vec4<f32>, 8>) {
    add_row(acc, first, subgroupBroadcast(lo, 0u), subgroupBroadcast(hi, 0u), w);
    add_row(acc, first + 1u, subgroupBroadcast(lo, 1u), subgroupBroadcast(hi, 1u), w);
    add_row(acc, first + 2u, subgroupBroadcast(lo, 2u), subgroupBroadcast(hi, 2u), w);
    add_row(acc, first + 3u, subgroupBroadcast(lo, 3u), subgroupBroadcast(hi, 3u), w);
    add_row(acc, first + 4u, subgroupBroadcast(lo, 4u), subgroupBroadcast(hi, 4u), w);
    add_row(acc, first + 5u, subgroupBroadcast(lo, 5u), subgroupBroadcast(hi, 5u), w);
    add_row(acc, first + 6u, subgroupBroadcast(lo, 6u), subgroupBroadcast(hi, 6u), w);
    add_row(acc, first + 7u, subgroupBroadcast(lo, 7u), subgroupBroadcast(hi, 7u), w);
}

fn add_row(acc: ptr<function, array<vec4<f32>, 16>>, r: u32, lo: vec4<f32>, hi: vec4<f32>, w: array<vec4<f32>, 8>) {
    (*acc)[r] += vec4<f32>(dot(lo, w[0]) + dot(hi, w[1]), dot(lo, w[2]) + dot(hi, w[3]), dot(lo, w[4]) + dot(hi, w[5]), dot(lo, w[6]) + dot(hi, w[7]));
}

// Rows row0 .. row0 + 8 of Y from acc[first ..], columns c, c + 8, c + 16, c + 24. One call
// per row with a constant index: in a loop, acc would be indexed at run time and a CPU
// device would keep it in memory through the whole kernel.
fn store_rows(acc: ptr<function, array<vec4<f32>, 16>>, first: u32, row0: u32, c: u32) {
    store_row(row0, c, 8u, (*acc)[first]);
    store_row(row0 + 1u, c, 8u, (*acc)[first + 1u]);
    store_row(row0 + 2u, c, 8u, (*acc)[first + 2u]);
    store_row(row0 + 3u, c, 8u, (*acc)[first + 3u]);
    store_row(row0 + 4u, c, 8u, (*acc)[first + 4u]);
    store_row(row0 + 5u, c, 8u, (*acc)[first + 5u]);
    store_row(row0 + 6u, c, 8u, (*acc)[first + 6u]);
    store_row(row0 + 7u, c, 8u, (*acc)[first + 7u]);
}
