// Causal depthwise conv1d + SiLU over the x half of in_proj's output, continuing a sequence
// whose last d_conv inputs are kept in the conv state (the Hugging Face cache layout:
// state[b, c, j] is the input at position T - K + j, the newest last).
//   out_t[c] = silu(bias[c] + sum_{j<K} w[c, j] * x_{t-K+1+j}[c])      (cross-correlation)
// Inputs before the current call's first token come from the state: position -i is state[K - i].
//
// Entry points:
//   conv_prefill       one invocation per (b, t, c); reads the state, does not write it
//   conv_state_update  one invocation per (b, c); runs after conv_prefill, keeps the last K inputs
//   conv_step          one token per sequence: the window is state[1..] + x_new, and it becomes
//                      the new state, in the same invocation (decode)

struct Params {
    batch: u32,
    t_len: u32,
    channels: u32,  // d_inner
    k: u32,         // d_conv
    x_stride: u32,  // row stride of the input (2 * d_inner: x is the first half of in_proj's output)
    has_bias: u32,
    x_offset: u32,  // column of x's first channel in a row of the input
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;              // (batch, t_len, x_stride): x at columns x_offset ..
@group(0) @binding(2) var<storage, read> weight: array<f32>;         // (channels, k)
@group(0) @binding(3) var<storage, read> bias: array<f32>;           // (channels)
@group(0) @binding(4) var<storage, read_write> state: array<f32>;    // (batch, channels, k)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;      // (batch, t_len, channels)

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

fn input_at(b: u32, c: u32, t: i32) -> f32 {
    if (t >= 0) {
        return x[(b * p.t_len + u32(t)) * p.x_stride + p.x_offset + c];
    }
    // t in [-(k-1), -1]: state index k + t
    return state[(b * p.channels + c) * p.k + u32(i32(p.k) + t)];
}

fn conv_bias(c: u32) -> f32 {
    return select(0.0, bias[c], p.has_bias == 1u);
}

@compute @workgroup_size(64)
fn conv_prefill(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    let b = gid.z;
    if (c >= p.channels || t >= p.t_len || b >= p.batch) {
        return;
    }
    var acc = conv_bias(c);
    for (var j = 0u; j < p.k; j++) {
        acc = fma(weight[c * p.k + j], input_at(b, c, i32(t) - i32(p.k) + 1 + i32(j)), acc);
    }
    out[(b * p.t_len + t) * p.channels + c] = silu(acc);
}

@compute @workgroup_size(64)
fn conv_state_update(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let b = gid.y;
    if (c >= p.channels || b >= p.batch) {
        return;
    }
    // New state[j] = input at position t_len - k + j. When t_len < k that reaches back into the
    // old state at index t_len + j > j, which ascending j has not overwritten yet.
    for (var j = 0u; j < p.k; j++) {
        let v = input_at(b, c, i32(p.t_len) - i32(p.k) + i32(j));
        state[(b * p.channels + c) * p.k + j] = v;
    }
}

@compute @workgroup_size(64)
fn conv_step(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let b = gid.y;
    if (c >= p.channels || b >= p.batch) {
        return;
    }
    let base = (b * p.channels + c) * p.k;
    var acc = conv_bias(c);
    for (var j = 0u; j + 1u < p.k; j++) {
        let v = state[base + j + 1u];
        state[base + j] = v;
        acc = fma(weight[c * p.k + j], v, acc);
    }
    let x_new = x[b * p.x_stride + p.x_offset + c];
    state[base + p.k - 1u] = x_new;
    acc = fma(weight[c * p.k + p.k - 1u], x_new, acc);
    out[b * p.channels + c] = silu(acc);
}
