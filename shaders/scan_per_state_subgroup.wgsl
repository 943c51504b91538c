// The last part of the scan_per_state_subgroup module (after shaders/scan_params.wgsl and
// scan_per_state.wgsl; needs SUBGROUP): each step's sum by subgroupAdd, as llama.cpp's
// ssm_scan.wgsl does where the device has subgroups. Each subgroup sums its invocations'
// terms, its first invocation puts that in workgroup memory, and invocation 0 adds the
// subgroups' sums (one where a subgroup holds the whole workgroup).

var<private> lane: u32;
var<private> subgroup: u32;
var<private> subgroups: u32;

// sum_n C_t[n] h_t[n] from each invocation's term, valid in invocation 0.
fn state_sum(n: u32, term: f32) -> f32 {
    let sum = subgroupAdd(term);
    if (lane == 0u) {
        partial[subgroup] = sum;
    }
    workgroupBarrier();
    var total = 0.0;
    if (n == 0u) {
        for (var s = 0u; s < subgroups; s++) {
            total += partial[s];
        }
    }
    return total;
}

@compute @workgroup_size(WG)
fn main_subgroup(
    @builtin(local_invocation_index) n: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane_id: u32,
    @builtin(subgroup_id) subgroup_id: u32,
    @builtin(num_subgroups) subgroup_count: u32,
) {
    lane = lane_id;
    subgroup = subgroup_id;
    subgroups = subgroup_count;
    walk(n, wg);
}
