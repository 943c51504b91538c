// The last part of the scan_per_state module (after shaders/scan_params.wgsl and
// scan_per_state.wgsl): each step's sum over the workgroup's states in workgroup memory, a tree.

// sum_n C_t[n] h_t[n] from each invocation's term, valid in invocation 0.
fn state_sum(n: u32, term: f32) -> f32 {
    partial[n] = term;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (n < stride) {
            partial[n] += partial[n + stride];
        }
        workgroupBarrier();
    }
    return partial[0];
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) n: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    walk(n, wg);
}
