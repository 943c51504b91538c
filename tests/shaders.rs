//! Every shaders/*.wgsl parses and validates with naga, fits WebGPU's default limits
//! (16 KiB workgroup memory, 256 invocations, 8 storage buffers per stage), and translates to
//! SPIR-V, MSL and HLSL for every entry point and every value of its `override` constants,
//! so a shader that Vulkan, Metal or DX12 would reject fails here, on any machine.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, ShaderStage};

const MAX_WORKGROUP_BYTES: u32 = 16 * 1024;
const MAX_INVOCATIONS: u32 = 256;
const MAX_STORAGE_BUFFERS: usize = 8;

fn shader_files() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "expected the engine's kernels in {}", dir.display());
    files
}

fn validate(module: &naga::Module) -> Result<naga::valid::ModuleInfo, String> {
    // No optional capabilities beyond f16 packing in f32 (unpack2x16float), which WebGPU
    // guarantees on every device; naga lists it because some GL targets lack it.
    Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16_IN_FLOAT32).validate(module).map_err(|e| format!("{e:?}"))
}

#[test]
fn every_shader_is_listed_in_the_kernel_table() {
    for (name, source) in shader_files() {
        let embedded = mamba_wgpu::gpu::kernels::SHADERS.iter().find(|(n, _)| *n == name);
        assert_eq!(embedded.map(|(_, s)| *s), Some(source.as_str()), "{name} is not embedded in gpu::kernels::SHADERS");
    }
}

#[test]
fn every_shader_validates_fits_webgpu_limits_and_translates() {
    let mut failures = Vec::new();
    for (name, source) in shader_files() {
        if let Err(e) = check_shader(&source) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check_shader(source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let info = validate(&module)?;

    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).map_err(|e| format!("{e:?}"))?;
    let workgroup_bytes: u32 =
        module.global_variables.iter().filter(|(_, v)| v.space == AddressSpace::WorkGroup).map(|(_, v)| layouter[v.ty].size).sum();
    if workgroup_bytes > MAX_WORKGROUP_BYTES {
        return Err(format!("{workgroup_bytes} bytes of workgroup memory (WebGPU guarantees {MAX_WORKGROUP_BYTES})"));
    }

    // Every combination of the values the engine gives each override constant.
    let overrides: Vec<String> = module.overrides.iter().filter_map(|(_, o)| o.name.clone()).collect();
    let mut combos: Vec<Vec<(String, f64)>> = vec![vec![]];
    for name in &overrides {
        let values = override_values(name)?;
        combos = combos.into_iter().flat_map(|c| values.iter().map(move |&v| [c.clone(), vec![(name.clone(), v)]].concat())).collect();
    }
    for combo in combos {
        let mut constants = naga::back::PipelineConstants::default();
        for (name, value) in combo {
            constants.insert(name, value);
        }
        for (ep_index, ep) in module.entry_points.iter().enumerate() {
            if ep.stage != ShaderStage::Compute {
                return Err(format!("entry point {} is not a compute shader", ep.name));
            }
            let ep_info = info.get_entry_point(ep_index);
            let storage_buffers =
                module.global_variables.iter().filter(|(h, v)| matches!(v.space, AddressSpace::Storage { .. }) && !ep_info[*h].is_empty()).count();
            if storage_buffers > MAX_STORAGE_BUFFERS {
                return Err(format!("{}: {storage_buffers} storage buffers", ep.name));
            }
            let (resolved, resolved_info) =
                naga::back::pipeline_constants::process_overrides(&module, &info, Some((ShaderStage::Compute, &ep.name)), &constants)
                    .map_err(|e| format!("{}: overrides {constants:?}: {e:?}", ep.name))?;
            // Workgroup sizes may be override expressions: check them once resolved.
            let resolved_ep = resolved.entry_points.iter().find(|e| e.name == ep.name).ok_or("entry point lost")?;
            let invocations: u32 = resolved_ep.workgroup_size.iter().product();
            if invocations == 0 || invocations > MAX_INVOCATIONS {
                return Err(format!("{} with {constants:?}: {invocations} invocations per workgroup", ep.name));
            }
            translate(&resolved, &resolved_info, &ep.name).map_err(|e| format!("{} with {constants:?}: {e}", ep.name))?;
        }
    }
    Ok(())
}

/// The values gpu::kernels passes for each override constant.
fn override_values(name: &str) -> Result<&'static [f64], String> {
    match name {
        "WEIGHT_F16" | "WEIGHT_BLOCKS" => Ok(&[0.0, 1.0]),
        "BATCH" => Ok(&[1.0, 3.0, 8.0]),
        "WG" => Ok(&[8.0, 256.0]),
        "CHANNELS" => Ok(&[1.0, 4.0]),
        other => Err(format!("override `{other}` has no test values in tests/shaders.rs")),
    }
}

fn translate(module: &naga::Module, info: &naga::valid::ModuleInfo, entry: &str) -> Result<(), String> {
    let spv_pipeline = naga::back::spv::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.to_string() };
    naga::back::spv::write_vec(module, info, &Default::default(), Some(&spv_pipeline)).map_err(|e| format!("SPIR-V: {e:?}"))?;

    let msl_pipeline = naga::back::msl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.to_string())), ..Default::default() };
    naga::back::msl::write_string(module, info, &Default::default(), &msl_pipeline).map_err(|e| format!("MSL: {e:?}"))?;

    let hlsl_options = naga::back::hlsl::Options::default();
    let hlsl_pipeline = naga::back::hlsl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.to_string())) };
    let mut hlsl = String::new();
    naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline).write(module, info, None).map_err(|e| format!("HLSL: {e:?}"))?;
    Ok(())
}
