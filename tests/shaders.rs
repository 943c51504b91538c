//! Every shader file (shaders/*.wgsl, and the benchmark's shaders/bench/*.wgsl) is a complete
//! module: it parses and validates alone with naga, fits WebGPU's default limits (16 KiB
//! workgroup memory, 256 invocations, 8 storage buffers per stage), and translates to SPIR-V,
//! MSL and HLSL for every entry point and every value of its `override` constants, so a shader
//! that Vulkan, Metal or DX12 would reject fails here, on any machine. The files whose names
//! say `subgroup` are checked with subgroup operations (they run only where the device has
//! them). Every Rust parameter block matches the WGSL struct it mirrors, field by field, and
//! the constants Rust sizes dispatches with equal the shaders' own.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, ShaderStage};

const MAX_WORKGROUP_BYTES: u32 = 16 * 1024;
const MAX_INVOCATIONS: u32 = 256;
const MAX_STORAGE_BUFFERS: usize = 8;

/// (name under shaders/, text) of every .wgsl file there and in shaders/bench/.
fn shader_files() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = Vec::new();
    for (dir, prefix) in [(root.clone(), ""), (root.join("bench"), "bench/")] {
        for path in std::fs::read_dir(&dir).expect("shaders/ exists").filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_some_and(|x| x == "wgsl") {
                files.push((format!("{prefix}{}", path.file_name().unwrap().to_string_lossy()), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    assert!(files.len() >= 12, "expected the engine's and the benchmark's kernels under {}", root.display());
    files
}

fn needs_subgroups(name: &str) -> bool {
    name.contains("subgroup")
}

fn validate(module: &naga::Module, subgroup: bool) -> Result<naga::valid::ModuleInfo, String> {
    // No optional capabilities beyond f16 packing in f32 (unpack2x16float), which WebGPU
    // guarantees on every device (naga lists it because some GL targets lack it), and subgroup
    // operations in the files meant for devices that have them.
    let mut capabilities = Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    capabilities.set(Capabilities::SUBGROUP, subgroup);
    Validator::new(ValidationFlags::all(), capabilities).validate(module).map_err(|e| format!("{e:?}"))
}

fn parse(name: &str) -> naga::Module {
    let (_, source) = shader_files().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no shader {name}"));
    naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)))
}

#[test]
fn every_shader_is_embedded() {
    let engine = mamba_wgpu::gpu::kernels::SHADERS;
    let bench = mamba_wgpu::bench::kernels::SHADERS;
    for (name, source) in shader_files() {
        let embedded = engine.iter().chain(bench).find(|(n, _)| *n == name);
        assert_eq!(embedded.map(|(_, s)| *s), Some(source.as_str()), "{name} is not embedded in gpu::kernels or bench::kernels SHADERS");
    }
}

/// Each kernel the engine runs names a file and an entry point that exist.
#[test]
fn every_kernel_names_an_entry_point_of_its_file() {
    use mamba_wgpu::gpu::kernels::MatvecNorm;
    use mamba_wgpu::gpu::Kernel;
    let kernels = [
        Kernel::Embedding { format: 4 },
        Kernel::AddRmsNorm,
        Kernel::Matmul { format: 0 },
        Kernel::Matvec { format: 1, batch: 3, norm: MatvecNorm::Groups, norm_weight: true },
        Kernel::MatvecConv { format: 6, batch: 1, norm: MatvecNorm::Row, norm_weight: false },
        Kernel::ConvPrefill,
        Kernel::ConvStateUpdate,
        Kernel::ConvStep,
        Kernel::ScanChunked,
        Kernel::ScanSequential,
        Kernel::ScanStepStates { f16: true },
        Kernel::ScanStepFused { f16: true, batch: 5 },
        Kernel::SsdSequential,
        Kernel::Argmax,
        Kernel::Sample,
    ];
    for kernel in kernels {
        let spec = kernel.spec();
        let module = parse(spec.file);
        assert!(module.entry_points.iter().any(|e| e.name == spec.entry), "{kernel:?}: no entry point {} in {}", spec.entry, spec.file);
        for (name, _) in &spec.constants {
            assert!(module.overrides.iter().any(|(_, o)| o.name.as_deref() == Some(name)), "{kernel:?}: no override {name} in {}", spec.file);
        }
    }
}

/// The weight formats' dequantize helpers are the same text in every shader that reads weights
/// (each shader is a complete module, so they repeat).
#[test]
fn weight_format_helpers_are_identical_in_every_reader() {
    let start = "// ---- weight formats";
    let end = "// ---- end of weight formats ----";
    let section = |name: &str| {
        let (_, source) = shader_files().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no shader {name}"));
        let from = source.find(start).unwrap_or_else(|| panic!("{name}: no `{start}` section"));
        let to = source[from..].find(end).unwrap_or_else(|| panic!("{name}: no `{end}`")) + from;
        source[from..to].to_string()
    };
    let matvec = section("matvec.wgsl");
    for name in ["matmul.wgsl", "embedding.wgsl"] {
        assert_eq!(section(name), matvec, "{name}'s weight formats section differs from matvec.wgsl's");
    }
}

#[test]
fn every_shader_validates_alone_fits_webgpu_limits_and_translates() {
    let mut failures = Vec::new();
    for (name, source) in shader_files() {
        if let Err(e) = check_module(&source, needs_subgroups(&name)) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A file checked with subgroups should need them: the others validate without.
#[test]
fn subgroup_shaders_need_the_capability() {
    let files: Vec<_> = shader_files().into_iter().filter(|(n, _)| needs_subgroups(n)).collect();
    assert!(!files.is_empty(), "expected the benchmark's subgroup baseline");
    for (name, _) in files {
        assert!(validate(&parse(&name), false).is_err(), "{name} validates without subgroups: it need not say subgroup");
    }
}

/// (WGSL member name without a leading underscore, byte offset) of struct `Params` in `file`,
/// and the struct's size, from naga's layouter.
fn wgsl_params(file: &str) -> (Vec<(String, u32)>, u32) {
    let module = parse(file);
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).unwrap();
    let (handle, ty) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("Params")).unwrap_or_else(|| panic!("{file}: no struct Params"));
    let naga::TypeInner::Struct { members, .. } = &ty.inner else { panic!("{file}: Params is not a struct") };
    let fields = members.iter().map(|m| (m.name.clone().unwrap_or_default().trim_start_matches('_').to_string(), m.offset)).collect();
    (fields, layouter[handle].size)
}

/// Fails unless the Rust block (its size, and (field, offset) of its named fields) matches
/// `file`'s Params: same size, every Rust field at the offset of the WGSL member of its name,
/// and every WGSL member that is not padding present in Rust.
fn check_params(rust_name: &str, size: usize, rust_fields: &[(&str, usize)], file: &str) {
    let (wgsl, wgsl_size) = wgsl_params(file);
    assert_eq!(size as u32, wgsl_size, "{rust_name} is {size} bytes, {file}'s Params {wgsl_size}");
    for &(field, offset) in rust_fields {
        let member = wgsl.iter().find(|(n, _)| n == field).unwrap_or_else(|| panic!("{file}'s Params has no member {field} ({rust_name})"));
        assert_eq!(member.1 as usize, offset, "{rust_name}.{field} at byte {offset}, in {file} at {}", member.1);
    }
    for (member, _) in &wgsl {
        let padding = member.starts_with("pad");
        assert!(padding || rust_fields.iter().any(|(f, _)| f == member), "{file}'s Params.{member} is not in {rust_name}");
    }
}

macro_rules! params {
    ($ty:ty, [$($field:ident),* $(,)?], $($file:literal),+) => {
        for file in [$($file),+] {
            check_params(stringify!($ty), std::mem::size_of::<$ty>(), &[$((stringify!($field), std::mem::offset_of!($ty, $field))),*], file);
        }
    };
}

#[test]
fn parameter_blocks_match_their_wgsl_structs() {
    use mamba_wgpu::bench::probes::BandwidthParams;
    use mamba_wgpu::gpu::params::*;
    params!(EmbeddingParams, [rows, d_model, first_row, part_rows], "embedding.wgsl");
    params!(NormParams, [rows, d, in_step, in_offset, add, eps, has_weight], "add_rms_norm.wgsl");
    params!(
        LinearParams,
        [
            m,
            n,
            k,
            x_stride,
            x_offset,
            y_stride,
            y_offset,
            bias_offset,
            has_bias,
            activation,
            wide,
            conv_channels,
            conv_has_bias,
            norm_eps,
            accumulate,
            conv_first,
            conv_k,
            norm_groups
        ],
        "matmul.wgsl",
        "matvec.wgsl"
    );
    params!(ConvParams, [batch, t_len, channels, k, x_stride, has_bias, x_offset], "conv1d.wgsl");
    params!(
        ScanParams,
        [batch, t_len, d_inner, d_state, dt_rank, xdbl_stride, z_stride, z_offset],
        "scan_chunked.wgsl",
        "scan_step.wgsl",
        "bench/scan_per_state.wgsl",
        "bench/scan_per_state_subgroup.wgsl"
    );
    params!(
        ScanStepFusedParams,
        [batch, d_inner, d_state, dt_rank, proj_stride, x_offset, z_offset, wide, mixer_norm, norm_eps],
        "scan_step_fused.wgsl"
    );
    params!(GroupNormParams, [rows, x_stride, x_offset, first_width, width, gated, z_stride, z_offset, has_weight, eps], "group_rms_norm.wgsl");
    params!(
        SsdParams,
        [
            batch,
            t_len,
            n_heads,
            head_dim,
            d_state,
            heads_per_group,
            xbc_stride,
            c_offset,
            dt_stride,
            dt_offset,
            dt_min,
            dt_max,
            xbc_offset,
            gated,
            z_stride,
            z_offset
        ],
        "ssd.wgsl"
    );
    params!(ArgmaxParams, [rows, n], "argmax.wgsl");
    params!(SampleParams, [vocab, batch, hist_cap, step], "sample.wgsl");
    params!(BandwidthParams, [n_vec4, threads], "bench/read_bandwidth.wgsl");
    params!(mamba_wgpu::bench::decode::EmptyParams, [n], "bench/empty.wgsl");
}

/// The value of `const NAME: u32 = ...u;` in `file`.
fn wgsl_const(file: &str, name: &str) -> u32 {
    let module = parse(file);
    let (_, constant) = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("{file}: no const {name}"));
    match module.global_expressions[constant.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => v,
        ref other => panic!("{file}: const {name} is {other:?}, not a u32 literal"),
    }
}

/// The constants the host sizes dispatches and checks shapes with are the shaders' own.
#[test]
fn host_constants_equal_the_shaders() {
    use mamba_wgpu::gpu::kernels::*;
    assert_eq!(SCAN_CHUNK, wgsl_const("scan_chunked.wgsl", "CHUNK"));
    assert_eq!(SCAN_CHUNK, wgsl_const("scan_chunked.wgsl", "SEG") * wgsl_const("scan_chunked.wgsl", "STEPS"));
    assert_eq!(SCAN_CHANNELS_PER_WG, wgsl_const("scan_chunked.wgsl", "CH"));
    assert_eq!(SCAN_MAX_STATE, wgsl_const("scan_chunked.wgsl", "MAX_STATE"));
    assert_eq!(SCAN_STEP_STATE_CHANNELS, wgsl_const("scan_step.wgsl", "STATE_CHANNELS"));
    assert_eq!(SCAN_FUSED_CHANNELS, wgsl_const("scan_step_fused.wgsl", "WG"));
    assert_eq!(SCAN_FUSED_MAX_XDBL, wgsl_const("scan_step_fused.wgsl", "XDBL_CAP"));
    assert_eq!(MATMUL_TILE, wgsl_const("matmul.wgsl", "TILE"));
    assert_eq!(MATVEC_MAX_M, wgsl_const("matvec.wgsl", "MAX_BATCH"));
    assert_eq!(MATVEC_MAX_GROUPS, wgsl_const("matvec.wgsl", "MAX_GROUPS"));
    assert_eq!(MATVEC_ROWS_PER_WG, wgsl_const("matvec.wgsl", "WG") / wgsl_const("matvec.wgsl", "LANES"));
    assert_eq!(WG_256, wgsl_const("argmax.wgsl", "WG"));
    assert_eq!(WG_256, wgsl_const("add_rms_norm.wgsl", "WG"));
    assert_eq!(WG_256, wgsl_const("group_rms_norm.wgsl", "WG"));
    assert_eq!(SSD_CHUNK, wgsl_const("ssd.wgsl", "L"));
    assert_eq!(SSD_CHANNELS_PER_WG, wgsl_const("ssd.wgsl", "PB"));
    assert_eq!(SSD_SEQUENTIAL_CHANNELS, wgsl_const("ssd.wgsl", "ROWS"));
    assert_eq!(SSD_MAX_STATE, wgsl_const("ssd.wgsl", "LANES") * wgsl_const("ssd.wgsl", "MAX_PER_LANE"));
}

/// Helpers that several files repeat are the same text in each: silu, softplus, the norms'
/// workgroup sum, and the per-state baseline's walk over time (its two files differ only in how
/// a step's sum is taken).
#[test]
fn repeated_helpers_are_identical() {
    let files = shader_files();
    for helper in ["fn silu(", "fn softplus(", "fn walk(", "fn workgroup_sum("] {
        let bodies: Vec<(String, String)> = files
            .iter()
            .filter_map(|(name, source)| {
                let start = source.find(helper)?;
                let end = start + source[start..].find("\n}\n")? + 3;
                Some((name.clone(), source[start..end].to_string()))
            })
            .collect();
        assert!(bodies.len() >= 2, "{helper} is in fewer than two files");
        for (name, body) in &bodies[1..] {
            assert_eq!(body, &bodies[0].1, "{helper} in {name} differs from {}", bodies[0].0);
        }
    }
}

fn check_module(source: &str, subgroup: bool) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let info = validate(&module, subgroup)?;

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
            translate(&resolved, &resolved_info, &ep.name, subgroup).map_err(|e| format!("{} with {constants:?}: {e}", ep.name))?;
        }
    }
    Ok(())
}

/// The values gpu::kernels passes for each override constant.
fn override_values(name: &str) -> Result<&'static [f64], String> {
    match name {
        "WEIGHT_F16" => Ok(&[0.0, 1.0]),
        "FORMAT" => Ok(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]),
        "BATCH" => Ok(&[1.0, 3.0, 8.0]),
        "NORM" => Ok(&[0.0, 1.0, 2.0]),
        "NORM_WEIGHT" => Ok(&[0.0, 1.0]),
        // The per-state baseline: d_state rounded up to a power of two.
        "WG" => Ok(&[1.0, 16.0, 64.0]),
        other => Err(format!("override `{other}` has no test values in tests/shaders.rs")),
    }
}

/// `subgroup`: translate for the language versions subgroup operations need (SPIR-V 1.3, MSL
/// 2.3, HLSL shader model 6.0), as wgpu does on devices that have them.
fn translate(module: &naga::Module, info: &naga::valid::ModuleInfo, entry: &str, subgroup: bool) -> Result<(), String> {
    let spv_pipeline = naga::back::spv::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.to_string() };
    let mut spv_options = naga::back::spv::Options::default();
    if subgroup {
        spv_options.lang_version = (1, 3);
    }
    naga::back::spv::write_vec(module, info, &spv_options, Some(&spv_pipeline)).map_err(|e| format!("SPIR-V: {e:?}"))?;

    let msl_pipeline = naga::back::msl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.to_string())), ..Default::default() };
    let mut msl_options = naga::back::msl::Options::default();
    let mut hlsl_options = naga::back::hlsl::Options::default();
    if subgroup {
        msl_options.lang_version = (2, 3);
        hlsl_options.shader_model = naga::back::hlsl::ShaderModel::V6_0;
    }
    naga::back::msl::write_string(module, info, &msl_options, &msl_pipeline).map_err(|e| format!("MSL: {e:?}"))?;

    let hlsl_pipeline = naga::back::hlsl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.to_string())) };
    let mut hlsl = String::new();
    naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline).write(module, info, None).map_err(|e| format!("HLSL: {e:?}"))?;
    Ok(())
}
