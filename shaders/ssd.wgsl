// Mamba-2's state-space layer (SSD, Dao & Gu 2024), per head h of P channels, group g of B/C:
//   dt_t = clamp(softplus(dt_raw_t + dt_bias), dt_min, dt_max),   a_t = dt_t A  (A < 0, a scalar)
//   S_t = exp(a_t) S_{t-1} + dt_t x_t B_t^T         (S: P x N, the head's state)
//   y_t = S_t C_t + D x_t                           (the gate comes after, in the gated norm)
//
// `chunked` (prefill) is the SSD algorithm: inside a chunk of L steps the recurrence unrolls to
// matrix products. With cum_t = a_1 + ... + a_t (from the chunk's start) and S_in the state
// before the chunk:
//   y_t   = sum_{s <= t} (C_t . B_s) exp(cum_t - cum_s) dt_s x_s   intra-chunk: (C B^T masked by the decay) x
//         + exp(cum_t) C_t . S_in                                  inter-chunk: C S
//         + D x_t
//   S_out = exp(cum_L) S_in + sum_s exp(cum_L - cum_s) dt_s x_s B_s^T   the chunk's final state
// The state passes from chunk to chunk through `h`. A workgroup owns one (sequence, head, block
// of PB channels) and walks the chunks in order; inside a chunk only the cumulative sum walks
// time: C B^T, C S_in and the chunk's state are tiled products over tiles of NT states in
// workgroup memory (14.6 KB, under WebGPU's default 16 KB). Steps past the sequence's end have
// dt = 0 and x = 0: the identity.
//
// `sequential` walks time, one step after another: a decode step (t_len = 1), and the scan the
// chunked one is checked and measured against. Each invocation keeps up to 8 states of one
// channel in registers; 16 lanes cover N <= 128 states.

struct Params {
    batch: u32,
    t_len: u32,
    n_heads: u32,
    head_dim: u32,       // P
    d_state: u32,        // N
    heads_per_group: u32,
    xbc_stride: u32,     // a conv output row: x (H P) | B (G N) | C (G N)
    c_offset: u32,       // column of C: H P + G N (B starts at H P)
    dt_stride: u32,      // dt_raw of row r, head h at dt_raw[r * dt_stride + dt_offset + h]
    dt_offset: u32,
    dt_min: f32,
    dt_max: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xbc: array<f32>;       // (batch * t_len, xbc_stride) conv output
@group(0) @binding(2) var<storage, read> dt_raw: array<f32>;    // in_proj's output, dt columns
@group(0) @binding(3) var<storage, read> dt_bias: array<f32>;   // (n_heads)
@group(0) @binding(4) var<storage, read> a: array<f32>;         // (n_heads): A = -exp(A_log)
@group(0) @binding(5) var<storage, read> d_skip: array<f32>;    // (n_heads)
@group(0) @binding(6) var<storage, read_write> h: array<f32>;   // (batch, n_heads, P, N), read then updated
@group(0) @binding(7) var<storage, read_write> y: array<f32>;   // (batch * t_len, n_heads * P)

fn softplus(v: f32) -> f32 {
    // log(1 + exp(v)), and v itself above 20 as PyTorch does (exp would lose nothing there).
    return select(log(1.0 + exp(v)), v, v > 20.0);
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

@compute @workgroup_size(256)
fn chunked(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let p0 = wg.x * PB;
    let head = wg.y;
    let b = wg.z;
    let g = head / p.heads_per_group;
    let d_inner = p.n_heads * p.head_dim;
    let b_col = d_inner + g * p.d_state;
    let c_col = p.c_offset + g * p.d_state;
    let a_h = a[head];
    // This invocation's row t of the (L, L) and (L, PB) tiles, and its four columns.
    let row_t = lid / 8u;
    let col4 = (lid % 8u) * 4u;
    // Its two entries (channel sp, states sn, sn + 1) of the (PB, NT) state tile.
    let sp = lid / 8u;
    let sn = (lid % 8u) * 2u;

    let chunks = (p.t_len + L - 1u) / L;
    for (var chunk = 0u; chunk < chunks; chunk++) {
        let t0 = chunk * L;
        // 1. x of the chunk, dt and dt A.
        for (var k = 0u; k < 4u; k++) {
            let i = lid + k * WG;
            let t = t0 + i / PB;
            let c = p0 + i % PB;
            var v = 0.0;
            if (t < p.t_len && c < p.head_dim) {
                v = xbc[(b * p.t_len + t) * p.xbc_stride + head * p.head_dim + c];
            }
            xs[i] = v;
        }
        if (lid < L) {
            let t = t0 + lid;
            var dt = 0.0;
            if (t < p.t_len) {
                dt = step_size(b * p.t_len + t, head);
            }
            dts[lid] = dt;
            cum[lid] = dt * a_h;
        }
        workgroupBarrier();
        // 2. The cumulative sum: the one walk along time.
        if (lid == 0u) {
            for (var s = 1u; s < L; s++) {
                cum[s] += cum[s - 1u];
            }
        }
        workgroupBarrier();
        if (lid < L) {
            to_end[lid] = exp(cum[L - 1u] - cum[lid]) * dts[lid];
        }
        // 3. Over tiles of NT states: C B^T and C S_in accumulate in registers; S_out of the
        //    tile is written to h.
        var cb = vec4<f32>(0.0);
        var c_s = vec4<f32>(0.0);
        for (var n0 = 0u; n0 < p.d_state; n0 += NT) {
            for (var k = 0u; k < 2u; k++) {
                let i = lid + k * WG;
                let t = t0 + i / NT;
                let n = n0 + i % NT;
                var bv = 0.0;
                var cv = 0.0;
                if (t < p.t_len && n < p.d_state) {
                    let row = (b * p.t_len + t) * p.xbc_stride;
                    bv = xbc[row + b_col + n];
                    cv = xbc[row + c_col + n];
                }
                bt[i] = bv;
                ct[i] = cv;
                let c = p0 + i / NT;
                var sv = 0.0;
                if (c < p.head_dim && n < p.d_state) {
                    sv = h[((b * p.n_heads + head) * p.head_dim + c) * p.d_state + n];
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
            let chunk_decay = exp(cum[L - 1u]);
            for (var e = 0u; e < 2u; e++) {
                let nn = sn + e;
                var acc = st[sp * NT + nn] * chunk_decay;
                for (var s = 0u; s < L; s++) {
                    acc = fma(to_end[s] * xs[s * PB + sp], bt[s * NT + nn], acc);
                }
                if (p0 + sp < p.head_dim && n0 + nn < p.d_state) {
                    h[((b * p.n_heads + head) * p.head_dim + p0 + sp) * p.d_state + n0 + nn] = acc;
                }
            }
            storageBarrier();
            workgroupBarrier();
        }
        // 4. Mask and decay C B^T.
        for (var j = 0u; j < 4u; j++) {
            let s = col4 + j;
            m[row_t * L + s] = select(0.0, cb[j] * exp(cum[row_t] - cum[s]) * dts[s], s <= row_t);
        }
        workgroupBarrier();
        // 5. y = M x + exp(cum_t) C S_in + D x.
        let t = t0 + row_t;
        let d = d_skip[head];
        let decay_in = exp(cum[row_t]);
        for (var j = 0u; j < 4u; j++) {
            let c = col4 + j;
            var acc = 0.0;
            for (var s = 0u; s <= row_t; s++) {
                acc = fma(m[row_t * L + s], xs[s * PB + c], acc);
            }
            let out = acc + decay_in * c_s[j] + d * xs[row_t * PB + c];
            if (t < p.t_len && p0 + c < p.head_dim) {
                y[(b * p.t_len + t) * d_inner + head * p.head_dim + p0 + c] = out;
            }
        }
        workgroupBarrier();
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
            x = xbc[row * p.xbc_stride + head * p.head_dim + c];
        }
        var acc = 0.0;
        for (var j = 0u; j < MAX_PER_LANE; j++) {
            let n = lane + j * LANES;
            if (live && n < p.d_state) {
                let r = row * p.xbc_stride;
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
            y[row * d_inner + head * p.head_dim + c] = fma(d_skip[head], x, sum);
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
