// Mamba-2's state-space layer (SSD, Dao & Gu 2024), per head h of P channels, group g of B/C:
//   dt_t = clamp(softplus(dt_raw_t + dt_bias), dt_min, dt_max),   a_t = dt_t A  (A < 0, a scalar)
//   S_t = exp(a_t) S_{t-1} + dt_t x_t B_t^T         (S: P x N, the head's state)
//   y_t = S_t C_t + D x_t                           (the gate comes after, in the gated norm;
//                                                    `sequential` may apply it: p.gated)
//
// Prefill runs the SSD algorithm over chunks of L steps, in three passes (mamba_ssm's
// ssd_combined). With cum_t = a_1 + ... + a_t from the chunk's start and S_in the state before
// the chunk, the recurrence unrolls inside a chunk to matrix products:
//   y_t   = sum_{s <= t} (C_t . B_s) exp(cum_t - cum_s) dt_s x_s   intra-chunk: (C B^T masked by the decay) x
//         + exp(cum_t) C_t . S_in                                  inter-chunk: C S
//         + D x_t
//   S_out = exp(cum_L) S_in + sum_s exp(cum_L - cum_s) dt_s x_s B_s^T
// 1. `chunk_states`, every chunk at once: the chunk's own state (S_out with S_in = 0), a
//    P x N product of (decay-weighted x)^T B, and its total decay exp(cum_L).
// 2. `pass_states`: S_in of each chunk, walking the chunks (not the steps) of each state
//    entry: S_in(c + 1) = exp(cum_L(c)) S_in(c) + S_own(c). The one sequential part; the
//    last one is the new state. S_in replaces S_own in place.
// 3. `chunk_outputs`, every chunk at once: y from C B^T, C S_in and D x.
// Inside a chunk only the cumulative sum walks time: C B^T, C S_in and the chunk states are
// tiled products over tiles of NT states in workgroup memory (under WebGPU's default 16 KB).
// A workgroup owns one (chunk of a sequence, head, block of PB channels). Steps past the
// sequence's end have dt = 0 and x = 0: the identity.
//
// `sequential` walks time, one step after another: a decode step (t_len = 1), and the scan the
// chunked one is checked and measured against. Each invocation keeps up to 8 states of one
// channel in registers; 16 lanes cover N <= 128 states. Where p.gated is 1 it stores
// y_t * silu(z_t), the gate of the norm that follows: a decode step's out_proj then normalizes
// per group as it loads y (shaders/matvec.wgsl), and computes no silu per weight.

struct Params {
    batch: u32,
    t_len: u32,
    n_heads: u32,
    head_dim: u32,       // P
    d_state: u32,        // N
    heads_per_group: u32,
    xbc_stride: u32,     // a conv output row: x (H P) | B (G N) | C (G N), from column xbc_offset
    c_offset: u32,       // column of C: H P + G N (B starts at H P)
    dt_stride: u32,      // dt_raw of row r, head h at dt_raw[r * dt_stride + dt_offset + h]
    dt_offset: u32,
    dt_min: f32,
    dt_max: f32,
    xbc_offset: u32,     // a decode step reads xBC where in_proj's kernel left it, in its output rows
    gated: u32,          // sequential: 1: y * silu(z)
    z_stride: u32,       // z of row r, channel j at z[r * z_stride + z_offset + j]
    z_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xbc: array<f32>;       // (batch * t_len, xbc_stride) conv output
@group(0) @binding(2) var<storage, read> dt_raw: array<f32>;    // in_proj's output, dt columns
@group(0) @binding(3) var<storage, read> dt_bias: array<f32>;   // (n_heads)
@group(0) @binding(4) var<storage, read> a: array<f32>;         // (n_heads): A = -exp(A_log)
@group(0) @binding(5) var<storage, read> d_skip: array<f32>;    // (n_heads)
@group(0) @binding(6) var<storage, read_write> h: array<f32>;   // (batch, n_heads, P, N), read then updated
@group(0) @binding(7) var<storage, read_write> y: array<f32>;   // (batch * t_len, n_heads * P)
// (batch, chunks, n_heads, P, N): each chunk's own state, then (pass_states) its S_in
@group(0) @binding(8) var<storage, read_write> chunk_state: array<f32>;
@group(0) @binding(9) var<storage, read_write> chunk_decay: array<f32>;  // (batch, chunks, n_heads): exp(cum_L)
@group(0) @binding(10) var<storage, read> z: array<f32>;        // sequential, where gated: in_proj's output, z columns

fn softplus(v: f32) -> f32 {
    // log(1 + exp(v)), and v itself above 20 as PyTorch does (exp would lose nothing there).
    return select(log(1.0 + exp(v)), v, v > 20.0);
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// dt of (sequence row `row`, head `head`), clamped to the model's time step limit.
fn step_size(row: u32, head: u32) -> f32 {
    let raw = dt_raw[row * p.dt_stride + p.dt_offset + head] + dt_bias[head];
    return clamp(softplus(raw), p.dt_min, p.dt_max);
}

// ---- chunked (prefill) ----

const L: u32 = 32u;    // chunk length
const PB: u32 = 32u;   // head channels per workgroup
const NT: u32 = 16u;   // states per tile
const WG: u32 = 256u;  // L * 8: eight invocations per row of the (L, L) and (L, PB) tiles

var<workgroup> xs: array<f32, 1024>;   // (L, PB) x of the chunk
var<workgroup> bt: array<f32, 512>;    // (L, NT) B, one tile of states
var<workgroup> ct: array<f32, 512>;    // (L, NT) C, the same tile
var<workgroup> st: array<f32, 512>;    // (PB, NT) S_in, the same tile
var<workgroup> m: array<f32, 1024>;    // (L, L) C B^T, then masked and decayed
var<workgroup> cum: array<f32, 32>;    // (L) cumulative sum of dt A
var<workgroup> dts: array<f32, 32>;    // (L) dt
var<workgroup> to_end: array<f32, 32>; // (L) exp(cum_L - cum_s) dt_s: weight of step s in S_out

// Where a chunked workgroup works: its sequence, chunk, head and first channel.
struct ChunkTile {
    b: u32,
    chunk: u32,
    chunks: u32,
    head: u32,
    p0: u32,
    t0: u32,
    g: u32,
}

fn chunk_tile(wg: vec3<u32>) -> ChunkTile {
    let chunks = (p.t_len + L - 1u) / L;
    let g = wg.y / p.heads_per_group;
    return ChunkTile(wg.z / chunks, wg.z % chunks, chunks, wg.y, wg.x * PB, (wg.z % chunks) * L, g);
}

// Loads x, dt and the cumulative sum of dt A of the chunk into workgroup memory. Every
// invocation calls it (it has barriers).
fn load_chunk(lid: u32, w: ChunkTile) {
    for (var k = 0u; k < 4u; k++) {
        let i = lid + k * WG;
        let t = w.t0 + i / PB;
        let c = w.p0 + i % PB;
        var v = 0.0;
        if (t < p.t_len && c < p.head_dim) {
            v = xbc[(w.b * p.t_len + t) * p.xbc_stride + p.xbc_offset + w.head * p.head_dim + c];
        }
        xs[i] = v;
    }
    if (lid < L) {
        let t = w.t0 + lid;
        var dt = 0.0;
        if (t < p.t_len) {
            dt = step_size(w.b * p.t_len + t, w.head);
        }
        dts[lid] = dt;
        cum[lid] = dt * a[w.head];
    }
    workgroupBarrier();
    // The one walk along time inside a chunk.
    if (lid == 0u) {
        for (var s = 1u; s < L; s++) {
            cum[s] += cum[s - 1u];
        }
    }
    workgroupBarrier();
    if (lid < L) {
        to_end[lid] = exp(cum[L - 1u] - cum[lid]) * dts[lid];
    }
    workgroupBarrier();
}

// Loads the (L, NT) tile of B (and C, when `with_c`) from state n0 on.
fn load_bc_tile(lid: u32, w: ChunkTile, n0: u32, with_c: bool) {
    let d_inner = p.n_heads * p.head_dim;
    for (var k = 0u; k < 2u; k++) {
        let i = lid + k * WG;
        let t = w.t0 + i / NT;
        let n = n0 + i % NT;
        var bv = 0.0;
        var cv = 0.0;
        if (t < p.t_len && n < p.d_state) {
            let row = (w.b * p.t_len + t) * p.xbc_stride + p.xbc_offset;
            bv = xbc[row + d_inner + w.g * p.d_state + n];
            if (with_c) {
                cv = xbc[row + p.c_offset + w.g * p.d_state + n];
            }
        }
        bt[i] = bv;
        ct[i] = cv;
    }
}

// Index of state entry (channel c, state n) of this workgroup's chunk and head in chunk_state.
fn chunk_state_index(w: ChunkTile, c: u32, n: u32) -> u32 {
    return (((w.b * w.chunks + w.chunk) * p.n_heads + w.head) * p.head_dim + c) * p.d_state + n;
}

// 1. Each chunk's own state sum_s exp(cum_L - cum_s) dt_s x_s B_s^T and its decay exp(cum_L).
//    Workgroups (P / PB, n_heads, batch * chunks).
@compute @workgroup_size(256)
fn chunk_states(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let w = chunk_tile(wg);
    load_chunk(lid, w);
    if (lid == 0u && w.p0 == 0u) {
        chunk_decay[(w.b * w.chunks + w.chunk) * p.n_heads + w.head] = exp(cum[L - 1u]);
    }
    // This invocation's two entries (channel sp, states sn and sn + 1) of each tile.
    let sp = lid / 8u;
    let sn = (lid % 8u) * 2u;
    for (var n0 = 0u; n0 < p.d_state; n0 += NT) {
        load_bc_tile(lid, w, n0, false);
        workgroupBarrier();
        for (var e = 0u; e < 2u; e++) {
            let nn = sn + e;
            var acc = 0.0;
            for (var s = 0u; s < L; s++) {
                acc = fma(to_end[s] * xs[s * PB + sp], bt[s * NT + nn], acc);
            }
            if (w.p0 + sp < p.head_dim && n0 + nn < p.d_state) {
                chunk_state[chunk_state_index(w, w.p0 + sp, n0 + nn)] = acc;
            }
        }
        workgroupBarrier();
    }
}

// 2. Walks the chunks of each state entry: S_in(c) replaces S_own(c), and h becomes the state
//    after the last chunk. Workgroups (n_heads * P * N / WG, batch).
@compute @workgroup_size(256)
fn pass_states(@builtin(global_invocation_id) gid: vec3<u32>) {
    let per_sequence = p.n_heads * p.head_dim * p.d_state;
    let i = gid.x;
    let b = gid.y;
    if (i >= per_sequence) {
        return;
    }
    let chunks = (p.t_len + L - 1u) / L;
    let head = i / (p.head_dim * p.d_state);
    var s = h[b * per_sequence + i];
    for (var c = 0u; c < chunks; c++) {
        let at = (b * chunks + c) * per_sequence + i;
        let own = chunk_state[at];
        chunk_state[at] = s;
        s = fma(chunk_decay[(b * chunks + c) * p.n_heads + head], s, own);
    }
    h[b * per_sequence + i] = s;
}

// 3. y = (C B^T masked by the decay) x + exp(cum_t) C S_in + D x, every chunk at once.
//    Workgroups (P / PB, n_heads, batch * chunks).
@compute @workgroup_size(256)
fn chunk_outputs(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let w = chunk_tile(wg);
    load_chunk(lid, w);
    // This invocation's row t of the (L, L) and (L, PB) tiles, and its four columns.
    let row_t = lid / 8u;
    let col4 = (lid % 8u) * 4u;
    // C B^T and C S_in, accumulated in registers over tiles of NT states.
    var cb = vec4<f32>(0.0);
    var c_s = vec4<f32>(0.0);
    for (var n0 = 0u; n0 < p.d_state; n0 += NT) {
        load_bc_tile(lid, w, n0, true);
        for (var k = 0u; k < 2u; k++) {
            let i = lid + k * WG;
            let c = w.p0 + i / NT;
            let n = n0 + i % NT;
            var sv = 0.0;
            if (c < p.head_dim && n < p.d_state) {
                sv = chunk_state[chunk_state_index(w, c, n)];
            }
            st[i] = sv;
        }
        workgroupBarrier();
        for (var nn = 0u; nn < NT; nn++) {
            let c_tn = ct[row_t * NT + nn];
            for (var j = 0u; j < 4u; j++) {
                cb[j] = fma(c_tn, bt[(col4 + j) * NT + nn], cb[j]);
                c_s[j] = fma(c_tn, st[(col4 + j) * NT + nn], c_s[j]);
            }
        }
        workgroupBarrier();
    }
    // Mask and decay C B^T.
    for (var j = 0u; j < 4u; j++) {
        let s = col4 + j;
        m[row_t * L + s] = select(0.0, cb[j] * exp(cum[row_t] - cum[s]) * dts[s], s <= row_t);
    }
    workgroupBarrier();
    let t = w.t0 + row_t;
    let d = d_skip[w.head];
    let decay_in = exp(cum[row_t]);
    let d_inner = p.n_heads * p.head_dim;
    for (var j = 0u; j < 4u; j++) {
        let c = col4 + j;
        var acc = 0.0;
        for (var s = 0u; s <= row_t; s++) {
            acc = fma(m[row_t * L + s], xs[s * PB + c], acc);
        }
        let out = acc + decay_in * c_s[j] + d * xs[row_t * PB + c];
        if (t < p.t_len && w.p0 + c < p.head_dim) {
            y[(w.b * p.t_len + t) * d_inner + w.head * p.head_dim + w.p0 + c] = out;
        }
    }
}

// ---- sequential (decode, and the chunked scan's baseline) ----

const LANES: u32 = 16u;      // invocations per channel, each over states lane, lane + 16, ...
const ROWS: u32 = 4u;        // channels per workgroup
const MAX_PER_LANE: u32 = 8u; // N <= LANES * MAX_PER_LANE = 128

var<workgroup> partial: array<f32, 64>;  // (ROWS, LANES) partial C . S

@compute @workgroup_size(64)
fn sequential(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let lane = lid % LANES;
    let c = wg.x * ROWS + lid / LANES;
    let head = wg.y;
    let b = wg.z;
    let live = c < p.head_dim;
    let g = head / p.heads_per_group;
    let d_inner = p.n_heads * p.head_dim;
    let b_col = d_inner + g * p.d_state;
    let c_col = p.c_offset + g * p.d_state;
    let base = ((b * p.n_heads + head) * p.head_dim + c) * p.d_state;
    let a_h = a[head];
    var s: array<f32, 8>;
    for (var j = 0u; j < MAX_PER_LANE; j++) {
        let n = lane + j * LANES;
        s[j] = 0.0;
        if (live && n < p.d_state) {
            s[j] = h[base + n];
        }
    }
    for (var t = 0u; t < p.t_len; t++) {
        let row = b * p.t_len + t;
        let dt = step_size(row, head);
        let decay = exp(dt * a_h);
        var x = 0.0;
        if (live) {
            x = xbc[row * p.xbc_stride + p.xbc_offset + head * p.head_dim + c];
        }
        var acc = 0.0;
        for (var j = 0u; j < MAX_PER_LANE; j++) {
            let n = lane + j * LANES;
            if (live && n < p.d_state) {
                let r = row * p.xbc_stride + p.xbc_offset;
                s[j] = fma(decay, s[j], dt * x * xbc[r + b_col + n]);
                acc = fma(s[j], xbc[r + c_col + n], acc);
            }
        }
        partial[lid] = acc;
        workgroupBarrier();
        if (lane == 0u && live) {
            var sum = 0.0;
            for (var k = 0u; k < LANES; k++) {
                sum += partial[lid + k];
            }
            var out = fma(d_skip[head], x, sum);
            if (p.gated == 1u) {
                out *= silu(z[row * p.z_stride + p.z_offset + head * p.head_dim + c]);
            }
            y[row * d_inner + head * p.head_dim + c] = out;
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < MAX_PER_LANE; j++) {
        let n = lane + j * LANES;
        if (live && n < p.d_state) {
            h[base + n] = s[j];
        }
    }
}
