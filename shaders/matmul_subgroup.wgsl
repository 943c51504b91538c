// The prefill matmul for CPU devices whose subgroups are exactly a workgroup of 8 (lavapipe),
// with u64 loads: the last part of the matmul_int64_subgroup module, after
// shaders/matrix_loads_int64.wgsl (unit_of), weight_pairs_int64.wgsl (w_unit_pair) and
// matmul.wgsl (Params, units_per_row, softplus). Computes what main_direct does,
//   Y[m, n] = act(sum_k X[m, k] W[n, k] + bias[n]),
// for k and X's row stride and offset multiples of 8, and n and Y's row stride and offset
// multiples of 4 (src/ops/linear.rs picks it).
//
// A CPU device runs a subgroup's 8 invocations as the 8 lanes of one SIMD register, and loads
// and stores storage buffers lane by lane, so what costs is accesses per multiply-add. In
// main_direct each invocation loads the X and W of its own 4 x 4 block: 16 loads per 128
// multiply-adds per 8 values of k. Here the 8 lanes of a workgroup compute a tile of 32 rows x
// 32 columns of Y together and split its loads:
// - lane l owns columns col0 + 4 l .. col0 + 4 l + 3 and loads their W, two rows' units per
//   load (in WeightLayout::RowBlocks the units of neighbouring rows are neighbours);
// - lane l loads the X of rows row0 + l, + 8 + l, + 16 + l and + 24 + l, 8 values per load,
//   and subgroupBroadcast hands each row to every lane;
// - each lane stores a row's 4 columns as one vec4.
// Per 8 values of k a lane makes 4 loads of X and 2 of W (4 with f32 weights) for 1024
// multiply-adds. Timed on lavapipe (BENCHMARKS.md): tiles of 16 x 32 with a lane's columns 8
// apart ran 3.6-5.3x as fast as main_direct at the 130m shapes, this form 1.14-1.21x as fast
// again. With p.activation a branch and the lane number from subgroupExclusiveAdd(1u), it ran
// 7-13% slower than a generated copy without them; with SOFTPLUS a pipeline constant and the
// lane from the builtin, 0.89-1.09x of it.

// p.activation as a pipeline constant: a CPU device runs both sides of a branch, and softplus
// on every result of a tile, though discarded, took 3-5% of in_proj's time.
override SOFTPLUS: bool = false;

// Rows and columns of Y per workgroup (MATMUL_SUBGROUP_TILE in src/gpu/kernels.rs).
const SUB_ROWS: u32 = 32u;
const SUB_COLS: u32 = 32u;

// X as 8 values per element and Y as 4 (bindings 1 and 4, as `x` in matrix_loads_int64.wgsl
// and `y` in matmul.wgsl, which main_subgroup does not use).
@group(0) @binding(1) var<storage, read> x_octets: array<vec4<u64>>;
@group(0) @binding(4) var<storage, read_write> y_quads: array<vec4<f32>>;

@compute @workgroup_size(8)
fn main_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wg.y * SUB_ROWS;
    let col0 = wg.x * SUB_COLS;
    // X of rows row0 + 8 g + lane in 32-byte units (rows past the edge repeat the last one;
    // their results are not stored).
    let x0 = x_row(row0 + lane);
    let x1 = x_row(row0 + 8u + lane);
    let x2 = x_row(row0 + 16u + lane);
    let x3 = x_row(row0 + 24u + lane);
    // The lane's columns c .. c + 3 (past the edge: the last four, not stored) lie in one block
    // of 64 rows of W, as the whole tile does (col0 is a multiple of 32); unit u of column c is
    // at first * units_per_row() + u * size + c - first, and size is a multiple of 4.
    let c = col0 + 4u * lane;
    let first = col0 / 64u * 64u;
    let size = min(64u, p.n - first);
    let column = first * units_per_row() + min(c, p.n - 4u) - first;
    // acc[r][j]: row row0 + r, column c + j.
    var acc: array<vec4<f32>, 32>;
    for (var k = 0u; k < p.k; k += 8u) {
        // W[c + j, k .. k + 8]: w[2 j] values 0-3, w[2 j + 1] values 4-7.
        let w = chunk_weights(column + k / select(4u, 8u, WEIGHT_F16) * size, size);
        add_rows(&acc, 0u, x_octet(x0 + k / 8u), w);
        add_rows(&acc, 8u, x_octet(x1 + k / 8u), w);
        add_rows(&acc, 16u, x_octet(x2 + k / 8u), w);
        add_rows(&acc, 24u, x_octet(x3 + k / 8u), w);
    }
    // The bias of the lane's columns, loaded once for all rows (a CPU device runs both sides
    // of a branch, so a load inside store_quad would run for every row even without a bias).
    var bias4 = vec4<f32>(0.0);
    if (p.has_bias == 1u && c < p.n) {
        let b = p.bias_offset + c;
        bias4 = vec4<f32>(bias[b], bias[b + 1u], bias[b + 2u], bias[b + 3u]);
    }
    store_rows(&acc, 0u, row0, c, bias4);
    store_rows(&acc, 8u, row0 + 8u, c, bias4);
    store_rows(&acc, 16u, row0 + 16u, c, bias4);
    store_rows(&acc, 24u, row0 + 24u, c, bias4);
}

// Row r of X (the last row past the edge) in 32-byte units.
fn x_row(r: u32) -> u32 {
    return (min(r, p.m - 1u) * p.x_stride + p.x_offset) / 8u;
}

// X values 8 i .. 8 i + 7: [0-3, 4-7].
fn x_octet(i: u32) -> array<vec4<f32>, 2> {
    let v = x_octets[i];
    return array<vec4<f32>, 2>(bitcast<vec4<f32>>(unit_of(v.x, v.y)), bitcast<vec4<f32>>(unit_of(v.z, v.w)));
}

// W[c .. c + 4, k .. k + 8] from unit `unit` of column c (even: two rows' units per load):
// [2 j] values 0-3 of column c + j, [2 j + 1] values 4-7.
fn chunk_weights(unit: u32, size: u32) -> array<vec4<f32>, 8> {
    let a = w_unit_pair(unit);       // columns c, c + 1
    let b = w_unit_pair(unit + 2u);  // columns c + 2, c + 3
    if (WEIGHT_F16) {
        return array<vec4<f32>, 8>(
            halves(a[0].xy), halves(a[0].zw), halves(a[1].xy), halves(a[1].zw),
            halves(b[0].xy), halves(b[0].zw), halves(b[1].xy), halves(b[1].zw),
        );
    }
    // f32: values 4-7 are the next unit column, `size` units on.
    let a_next = w_unit_pair(unit + size);
    let b_next = w_unit_pair(unit + size + 2u);
    return array<vec4<f32>, 8>(
        bitcast<vec4<f32>>(a[0]), bitcast<vec4<f32>>(a_next[0]), bitcast<vec4<f32>>(a[1]), bitcast<vec4<f32>>(a_next[1]),
        bitcast<vec4<f32>>(b[0]), bitcast<vec4<f32>>(b_next[0]), bitcast<vec4<f32>>(b[1]), bitcast<vec4<f32>>(b_next[1]),
    );
}

// The four halves packed in two words.
fn halves(words: vec2<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y));
}

// acc[first + l] += X[row of lane l, chunk] . W[lane's columns, chunk] for every lane l: the
// X values each lane loaded (x_l: values 0-3 of the chunk, then 4-7), broadcast one lane after
// the other (subgroupBroadcast takes constant lanes).
fn add_rows(acc: ptr<function, array<vec4<f32>, 32>>, first: u32, x_l: array<vec4<f32>, 2>, w: array<vec4<f32>, 8>) {
    let lo = x_l[0];
    let hi = x_l[1];
    add_row(acc, first, subgroupBroadcast(lo, 0u), subgroupBroadcast(hi, 0u), w);
    add_row(acc, first + 1u, subgroupBroadcast(lo, 1u), subgroupBroadcast(hi, 1u), w);
    add_row(acc, first + 2u, subgroupBroadcast(lo, 2u), subgroupBroadcast(hi, 2u), w);
    add_row(acc, first + 3u, subgroupBroadcast(lo, 3u), subgroupBroadcast(hi, 3u), w);
    add_row(acc, first + 4u, subgroupBroadcast(lo, 4u), subgroupBroadcast(hi, 4u), w);
    add_row(acc, first + 5u, subgroupBroadcast(lo, 5u), subgroupBroadcast(hi, 5u), w);
    add_row(acc, first + 6u, subgroupBroadcast(lo, 6u), subgroupBroadcast(hi, 6u), w);
    add_row(acc, first + 7u, subgroupBroadcast(lo, 7u), subgroupBroadcast(hi, 7u), w);
}

fn add_row(acc: ptr<function, array<vec4<f32>, 32>>, r: u32, lo: vec4<f32>, hi: vec4<f32>, w: array<vec4<f32>, 8>) {
    (*acc)[r] += vec4<f32>(dot(lo, w[0]) + dot(hi, w[1]), dot(lo, w[2]) + dot(hi, w[3]), dot(lo, w[4]) + dot(hi, w[5]), dot(lo, w[6]) + dot(hi, w[7]));
}

// Rows row0 .. row0 + 8 of Y from acc[first ..] + bias4, columns c .. c + 3. One call per row with a
// constant index: in a loop, acc would be indexed at run time and a CPU device would keep it
// in memory through the whole kernel.
fn store_rows(acc: ptr<function, array<vec4<f32>, 32>>, first: u32, row0: u32, c: u32, bias4: vec4<f32>) {
    store_quad(row0, c, (*acc)[first] + bias4);
    store_quad(row0 + 1u, c, (*acc)[first + 1u] + bias4);
    store_quad(row0 + 2u, c, (*acc)[first + 2u] + bias4);
    store_quad(row0 + 3u, c, (*acc)[first + 3u] + bias4);
    store_quad(row0 + 4u, c, (*acc)[first + 4u] + bias4);
    store_quad(row0 + 5u, c, (*acc)[first + 5u] + bias4);
    store_quad(row0 + 6u, c, (*acc)[first + 6u] + bias4);
    store_quad(row0 + 7u, c, (*acc)[first + 7u] + bias4);
}

// Y[r, c .. c + 4] = act(v), as matmul.wgsl's store does value by value.
fn store_quad(r: u32, c: u32, sums: vec4<f32>) {
    if (r >= p.m || c >= p.n) {
        return;
    }
    var v = sums;
    if (SOFTPLUS) {
        v = vec4<f32>(softplus(v.x), softplus(v.y), softplus(v.z), softplus(v.w));
    }
    y_quads[(r * p.y_stride + p.y_offset + c) / 4u] = v;
}
