//! `mamba-wgpu info`: which adapter a run would use, its limits, and every adapter wgpu sees
//! (the names `--adapter` matches against).

use mamba_wgpu::{GpuContext, Result};

pub fn run(adapter: Option<&str>) -> Result<()> {
    let ctx = pollster::block_on(GpuContext::new(adapter))?;
    let a = &ctx.adapter;
    println!("adapter: {a}");
    println!("driver: {}", if a.driver.is_empty() { "-" } else { &a.driver });
    println!(
        "limits: storage binding {} MiB, buffer {} MiB, workgroup storage {} KiB, {} invocations per workgroup, {} storage buffers per stage, shader-f16 {}, subgroups {}",
        a.max_storage_binding_bytes >> 20,
        a.max_buffer_bytes >> 20,
        a.max_workgroup_storage_bytes >> 10,
        a.max_invocations_per_workgroup,
        a.max_storage_buffers_per_stage,
        if a.shader_f16 { "yes" } else { "no" },
        if a.subgroups { format!("{}-{}", a.subgroup_sizes[0], a.subgroup_sizes[1]) } else { "no".to_string() },
    );
    println!("adapters:");
    for name in GpuContext::list_adapters() {
        println!("  {name}");
    }
    Ok(())
}
