// The prefill conv for CPU devices with d_conv 4 (every Mamba release), channels and x's row
// stride multiples of 4: the second part of the conv1d module, after shaders/conv1d.wgsl
// (Params, silu). It computes what conv_prefill and conv_state_update compute together,
//   out_t[c] = silu(bias[c] + sum_{j<4} w[c, j] * x_{t-3+j}[c]),
// one invocation per 4 channels walking time: the window of the last 4 inputs and the weights
// stay in variables, so each time step is one vec4 load of x and one vec4 store of out, where
// conv_prefill loads 9 values per output lane by lane (a CPU device's storage accesses). The
// invocation writes its channels' state at the end, so conv_state_update is not needed.

// The same bindings as conv1d.wgsl's, four values per element: x's 4 channels from c0 (c0 and
// x_stride multiples of 4), a channel's 4 weights or state (d_conv 4), 4 channels of bias and
// out. Only conv_walk uses these, and it uses none of conv1d.wgsl's storage bindings.
@group(0) @binding(1) var<storage, read> x_quads: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weight_quads: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias_quads: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> state_quads: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out_quads: array<vec4<f32>>;

@compute @workgroup_size(64)
fn conv_walk(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let b = gid.y;
    if (c0 >= p.channels || b >= p.batch) {
        return;
    }
    // taps[j][i] = w[c0 + i, j]: tap j of the 4 channels, so one step is 4 vec4 multiply-adds.
    let taps = transpose(mat4x4<f32>(weight_quads[c0], weight_quads[c0 + 1u], weight_quads[c0 + 2u], weight_quads[c0 + 3u]));
    var bias4 = vec4<f32>(0.0);
    if (p.has_bias == 1u) {
        bias4 = bias_quads[c0 / 4u];
    }
    // The window, 4 channels per vec4: window[j] = input at position t - 4 + j, from the state
    // before the first token (state[c, j] is position j - 4).
    let s = (b * p.channels + c0);
    var window = transpose(mat4x4<f32>(state_quads[s], state_quads[s + 1u], state_quads[s + 2u], state_quads[s + 3u]));
    for (var t = 0u; t < p.t_len; t++) {
        let row = b * p.t_len + t;
        let x_t = x_quads[(row * p.x_stride + c0) / 4u];
        window = mat4x4<f32>(window[1], window[2], window[3], x_t);
        let sum = bias4 + taps[0] * window[0] + taps[1] * window[1] + taps[2] * window[2] + taps[3] * window[3];
        out_quads[(row * p.channels + c0) / 4u] = vec4<f32>(silu(sum.x), silu(sum.y), silu(sum.z), silu(sum.w));
    }
    // The new state: the last 4 inputs (positions t_len - 4 .. t_len - 1), channel by channel.
    let state = transpose(window);
    state_quads[s] = state[0];
    state_quads[s + 1u] = state[1];
    state_quads[s + 2u] = state[2];
    state_quads[s + 3u] = state[3];
}
