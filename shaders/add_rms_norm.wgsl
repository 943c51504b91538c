// Residual add fused with RMSNorm, one workgroup per row:
//   residual += delta                    (when ADD; the residual stream stays f32)
//   out = residual / sqrt(mean(residual^2) + eps) * weight
// (without `* weight` where has_weight is 0: the layers' norms, whose weight the loader folds
// into in_proj, src/model/weights.rs)
// Fusing saves a full pass over the residual stream per layer.
// Rows are read at in_row = r * in_step + in_offset, so the final norm can pick only the last
// position of each sequence (in_step = T, in_offset = T - 1) when only the next token matters.

struct Params {
    rows: u32,
    d: u32,
    in_step: u32,
    in_offset: u32,
    add: u32,        // 1: add delta into the residual first
    eps: f32,
    has_weight: u32,
    _pad0: u32,
}

// Invocations per row.
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> residual: array<f32>; // (batch * T, d)
@group(0) @binding(2) var<storage, read> delta: array<f32>;          // (batch * T, d)
@group(0) @binding(3) var<storage, read> weight: array<f32>;         // (d) where has_weight is 1
@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // (rows, d)

var<workgroup> partial: array<f32, 256>;  // (WG)

// The sum of `value` over the workgroup's WG invocations (a tree in workgroup memory); every
// invocation gets it. Call from uniform control flow.
fn workgroup_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    return partial[0];
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = wg.x;
    let base = (r * p.in_step + p.in_offset) * p.d;
    var sum_sq = 0.0;
    for (var i = lid; i < p.d; i += WG) {
        var v = residual[base + i];
        if (p.add == 1u) {
            v += delta[base + i];
            residual[base + i] = v;
        }
        sum_sq += v * v;
    }
    let scale = inverseSqrt(workgroup_sum(lid, sum_sq) / f32(p.d) + p.eps);
    for (var i = lid; i < p.d; i += WG) {
        var v = residual[base + i] * scale;
        if (p.has_weight == 1u) {
            v *= weight[i];
        }
        out[r * p.d + i] = v;
    }
}
