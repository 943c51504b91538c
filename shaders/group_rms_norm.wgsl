// RMSNorm over segments of a row, in place, one workgroup per (row, segment):
//   v = x * silu(z)                         (when gated; else v = x)
//   x = v / sqrt(mean(v^2) + eps) * weight  (mean over the segment; `* weight` where has_weight)
// Mamba-2's gated RMSNorm: y * silu(z), normalized per group of d_inner / G channels (segments
// of equal width). FalconMamba's weightless norms of dt_low, B and C inside x_proj's output row:
// a first segment of its own width (dt_rank), then segments of `width` (d_state).
// Segment s of row r spans columns [start, start + w) of x's row at r * x_stride + x_offset:
// s = 0: start 0, w = first_width;  s >= 1: start = first_width + (s - 1) * width, w = width.
// The weight is indexed by the column within the row's normalized span.

struct Params {
    rows: u32,
    x_stride: u32,
    x_offset: u32,
    first_width: u32,
    width: u32,
    gated: u32,
    z_stride: u32,     // z of row r, column j at z[r * z_stride + z_offset + j]
    z_offset: u32,
    has_weight: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

// Invocations per segment.
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;  // (rows, x_stride), normalized in place
@group(0) @binding(2) var<storage, read> z: array<f32>;        // (rows, z_stride) where gated
@group(0) @binding(3) var<storage, read> weight: array<f32>;   // (span) where has_weight

var<workgroup> partial: array<f32, 256>;  // (WG)

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// x's value at column j of row r, times silu(z) where gated.
fn gated_value(r: u32, j: u32) -> f32 {
    var v = x[r * p.x_stride + p.x_offset + j];
    if (p.gated == 1u) {
        v *= silu(z[r * p.z_stride + p.z_offset + j]);
    }
    return v;
}

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
    let s = wg.y;
    var start = 0u;
    var w = p.first_width;
    if (s > 0u) {
        start = p.first_width + (s - 1u) * p.width;
        w = p.width;
    }
    var sum_sq = 0.0;
    for (var j = lid; j < w; j += WG) {
        let v = gated_value(r, start + j);
        sum_sq += v * v;
    }
    let scale = inverseSqrt(workgroup_sum(lid, sum_sq) / f32(w) + p.eps);
    for (var j = lid; j < w; j += WG) {
        var v = gated_value(r, start + j) * scale;
        if (p.has_weight == 1u) {
            v *= weight[start + j];
        }
        x[r * p.x_stride + p.x_offset + start + j] = v;
    }
}
