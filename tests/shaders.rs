//! Every shader module (the shaders/*.wgsl files, alone or joined as gpu::kernels::MODULES
//! lists them) parses and validates with naga, fits WebGPU's default limits (16 KiB workgroup
//! memory, 256 invocations, 8 storage buffers per stage), and translates to SPIR-V, MSL and
//! HLSL for every entry point and every value of its `override` constants, so a shader that
//! Vulkan, Metal or DX12 would reject fails here, on any machine. Modules that use 64-bit
//! integers or subgroup operations are checked with that capability added (they run only where
//! the device has it).

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

fn validate(module: &naga::Module, int64: bool, subgroup: bool) -> Result<naga::valid::ModuleInfo, String> {
    // No optional capabilities beyond f16 packing in f32 (unpack2x16float), which WebGPU
    // guarantees on every device (naga lists it because some GL targets lack it), and 64-bit
    // integers or subgroup operations in the modules meant for devices that have them.
    let mut capabilities = Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    capabilities.set(Capabilities::SHADER_INT64, int64);
    capabilities.set(Capabilities::SUBGROUP, subgroup);
    Validator::new(ValidationFlags::all(), capabilities).validate(module).map_err(|e| format!("{e:?}"))
}

#[test]
fn every_shader_is_embedded_and_in_a_module() {
    use mamba_wgpu::gpu::kernels::{MODULES, SHADERS};
    for (name, source) in shader_files() {
        let embedded = SHADERS.iter().find(|(n, _)| *n == name);
        assert_eq!(embedded.map(|(_, s)| *s), Some(source.as_str()), "{name} is not embedded in gpu::kernels::SHADERS");
        assert!(MODULES.iter().any(|m| m.files.contains(&name.as_str())), "{name} is in no module of gpu::kernels::MODULES");
    }
}

#[test]
fn every_module_validates_fits_webgpu_limits_and_translates() {
    let mut failures = Vec::new();
    for module in mamba_wgpu::gpu::kernels::MODULES {
        if let Err(e) = check_module(&mamba_wgpu::gpu::kernels::module_source(module.name), module.int64, module.subgroup) {
            failures.push(format!("{}: {e}", module.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A module marked int64 runs only where the device has 64-bit integers: it should need them.
#[test]
fn int64_modules_need_the_capability() {
    for module in mamba_wgpu::gpu::kernels::MODULES.iter().filter(|m| m.int64) {
        let source = mamba_wgpu::gpu::kernels::module_source(module.name);
        let parsed = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source)).unwrap();
        assert!(
            validate(&parsed, false, module.subgroup).is_err(),
            "{} validates without 64-bit integers: it need not be an int64 module",
            module.name
        );
    }
}

/// Likewise a module marked subgroup should need subgroup operations.
#[test]
fn subgroup_modules_need_the_capability() {
    let modules: Vec<_> = mamba_wgpu::gpu::kernels::MODULES.iter().filter(|m| m.subgroup).collect();
    assert!(!modules.is_empty(), "expected the CPU-device matvec that shares X through subgroups");
    for module in modules {
        let source = mamba_wgpu::gpu::kernels::module_source(module.name);
        let parsed = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source)).unwrap();
        assert!(validate(&parsed, module.int64, false).is_err(), "{} validates without subgroups: it need not be a subgroup module", module.name);
    }
}

fn check_module(source: &str, int64: bool, subgroup: bool) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let info = validate(&module, int64, subgroup)?;

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
            translate(&resolved, &resolved_info, &ep.name, int64, subgroup).map_err(|e| format!("{} with {constants:?}: {e}", ep.name))?;
        }
    }
    Ok(())
}

/// The values gpu::kernels passes for each override constant.
fn override_values(name: &str) -> Result<&'static [f64], String> {
    match name {
        "WEIGHT_F16" | "WEIGHT_BLOCKS" | "SOFTPLUS" => Ok(&[0.0, 1.0]),
        "BATCH" => Ok(&[1.0, 3.0, 8.0]),
        "WG" => Ok(&[8.0, 256.0]),
        "CHANNELS" => Ok(&[1.0, 4.0]),
        other => Err(format!("override `{other}` has no test values in tests/shaders.rs")),
    }
}

/// `int64`, `subgroup`: translate for the language versions 64-bit integers or subgroup
/// operations need (SPIR-V 1.3, MSL 2.3, HLSL shader model 6.0), as wgpu does on devices that
/// have them.
fn translate(module: &naga::Module, info: &naga::valid::ModuleInfo, entry: &str, int64: bool, subgroup: bool) -> Result<(), String> {
    let spv_pipeline = naga::back::spv::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.to_string() };
    let mut spv_options = naga::back::spv::Options::default();
    if subgroup {
        spv_options.lang_version = (1, 3);
    }
    naga::back::spv::write_vec(module, info, &spv_options, Some(&spv_pipeline)).map_err(|e| format!("SPIR-V: {e:?}"))?;

    let msl_pipeline = naga::back::msl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.to_string())), ..Default::default() };
    let mut msl_options = naga::back::msl::Options::default();
    let mut hlsl_options = naga::back::hlsl::Options::default();
    if int64 || subgroup {
        msl_options.lang_version = (2, 3);
        hlsl_options.shader_model = naga::back::hlsl::ShaderModel::V6_0;
    }
    naga::back::msl::write_string(module, info, &msl_options, &msl_pipeline).map_err(|e| format!("MSL: {e:?}"))?;

    let hlsl_pipeline = naga::back::hlsl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.to_string())) };
    let mut hlsl = String::new();
    naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline).write(module, info, None).map_err(|e| format!("HLSL: {e:?}"))?;
    Ok(())
}
