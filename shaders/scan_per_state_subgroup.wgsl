// main of shaders/scan_per_state.wgsl with the sum of each time step taken by subgroupAdd, as
// llama.cpp's ssm_scan.wgsl does where the device has subgroups: each subgroup sums its
// invocations' C_t[n] h_t[n], its first invocation puts that in workgroup memory, and
// invocation 0 adds the subgroups' sums (one where a subgroup holds the whole workgroup). The
// second part of the scan_per_state_subgroup module (needs SUBGROUP).

@compute @workgroup_size(WG)
fn main_subgroup(
    @builtin(local_invocation_index) n: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
) {
    let w = walker(n, wg);
    let a_n = a_of(w);
    var h_n = initial_state(w);
    for (var t = 0u; t < p.t_len; t++) {
        let stepped = step(w, t, a_n, h_n);
        h_n = stepped.x;
        let sum = subgroupAdd(stepped.y);
        if (lane == 0u) {
            partial[subgroup] = sum;
        }
        workgroupBarrier();
        if (n == 0u) {
            var c_dot_h = 0.0;
            for (var s = 0u; s < subgroups; s++) {
                c_dot_h += partial[s];
            }
            store_y(w, t, c_dot_h);
        }
        workgroupBarrier();  // partial is read before the next step writes it
    }
    store_state(w, h_n);
}
