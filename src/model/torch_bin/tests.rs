//! The reader against the files torch wrote in tests/data/torch_bin, hand-made zips and
//! pickles, every truncation and many corruptions of a real file, and the state-spaces fixture.

use std::collections::{HashMap, HashSet};

use super::zip::{crc32, le32, Zip, CENTRAL_HEADER, END_OF_CENTRAL_DIR, LOCAL_HEADER};
use super::*;

fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch_bin")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(data_dir().join("expected.json")).unwrap()).unwrap()
}

fn values(file: &[u8], t: &TorchTensor) -> Vec<f32> {
    let bytes = &file[t.bytes.clone()];
    match t.dtype {
        StoredDtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        StoredDtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect(),
        StoredDtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect(),
        StoredDtype::Block(f) => panic!("a pickle storage of {f} blocks"),
    }
}

/// A stored zip of `entries`, as torch.save lays it out (for hand-made pickles).
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let offset = out.len() as u32;
        let header = |sig: u32, central: bool| {
            let mut h = sig.to_le_bytes().to_vec();
            if central {
                h.extend(20u16.to_le_bytes());
            }
            h.extend([20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
            h.extend(crc32(data).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes());
            if central {
                h.extend([0; 6]);
                h.extend(0u32.to_le_bytes());
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(header(LOCAL_HEADER, false));
        out.extend(*data);
        central.extend(header(CENTRAL_HEADER, true));
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(END_OF_CENTRAL_DIR.to_le_bytes());
    out.extend([0; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend([0; 2]);
    out
}

/// `pickle` as archive/data.pkl, with one 16-byte storage archive/data/0.
fn with_pickle(pickle: &[u8]) -> Vec<u8> {
    zip(&[("archive/data.pkl", pickle), ("archive/byteorder", b"little"), ("archive/data/0", &[0u8; 16])])
}

fn err(file: &[u8]) -> String {
    err_named(file, "test.bin")
}

fn err_named(file: &[u8], name: &str) -> String {
    match read_state_dict(file, name) {
        Ok(_) => panic!("read a file it should refuse"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn torch_bin_tensors_match_what_torch_recorded() {
    let want = expected();
    for name in ["state_dict.bin", "state_dict_protocol4.bin", "state_dict_zip64.bin"] {
        let file = read(name);
        let dict = read_state_dict(&file, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tensors = want["files"][name]["tensors"].as_object().unwrap();
        let mut got_names: Vec<&str> = dict.tensors.iter().map(|(n, _)| n.as_str()).collect();
        got_names.sort_unstable();
        let want_names: Vec<&str> = tensors.keys().map(|k| k.as_str()).collect();
        assert_eq!(got_names, want_names, "{name}");
        let mut bases: HashMap<u64, usize> = HashMap::new();
        for (tensor_name, t) in &dict.tensors {
            let w = &tensors[tensor_name];
            let dtype = match w["dtype"].as_str().unwrap() {
                "F32" => StoredDtype::F32,
                "F16" => StoredDtype::F16,
                _ => StoredDtype::BF16,
            };
            assert_eq!(t.dtype, dtype, "{name} {tensor_name}");
            let shape: Vec<usize> = w["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            assert_eq!(t.shape, shape, "{name} {tensor_name}");
            let want_values: Vec<f32> = w["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            assert_eq!(values(&file, t), want_values, "{name} {tensor_name}");
            // Tensors of one storage start at the same base, offset by their storage offset.
            let width = if dtype == StoredDtype::F32 { 4 } else { 2 };
            let base = t.bytes.start - w["storage_offset"].as_u64().unwrap() as usize * width;
            let group = w["storage_group"].as_u64().unwrap();
            assert_eq!(*bases.entry(group).or_insert(base), base, "{name} {tensor_name}: storage group {group}");
        }
        let distinct: HashSet<usize> = bases.values().copied().collect();
        assert_eq!(distinct.len(), bases.len(), "{name}: different storages at one place");
    }
}

#[test]
fn torch_bin_refusals_name_the_reason() {
    let want = expected();
    let files = want["files"].as_object().unwrap();
    for (name, w) in files {
        let e = || err_named(&read(name), name);
        if let Some(tensor) = w.get("error_tensor").and_then(|t| t.as_str()) {
            let e = e();
            assert!(e.contains(&format!("`{tensor}`")) && e.contains("not contiguous") && e.contains(name), "{e}");
        } else if let Some(global) = w.get("refused_global").and_then(|t| t.as_str()) {
            let e = e();
            assert!(e.contains(&format!("refusing to run {global}")) && e.contains(name), "{e}");
        } else if w.get("error").and_then(|t| t.as_str()) == Some("legacy") {
            let e = e();
            assert!(e.contains("legacy") && e.contains("safetensors") && e.contains(name), "{e}");
        } else if w.get("error").and_then(|t| t.as_str()) == Some("compressed") {
            let e = e();
            assert!(e.contains("is compressed") && e.contains("zip entry") && e.contains(name), "{e}");
        }
    }
    for refused in ["non_contiguous.bin", "legacy.bin", "compressed.bin", "forbidden_global.bin", "forbidden_stack_global.bin"] {
        assert!(files.contains_key(refused), "expected.json lacks {refused}");
    }
}

#[test]
fn torch_bin_truncated_or_corrupted_is_an_error_never_a_panic() {
    let file = read("state_dict.bin");
    read_state_dict(&file, "ok").unwrap();
    // Cut anywhere: the end record is gone, or what it points at lies outside.
    for len in 0..file.len() {
        assert!(read_state_dict(&file[..len], "cut").is_err(), "truncated to {len} bytes");
    }
    // The pickle cut anywhere, inside a well-formed zip: no STOP, or a dangling operand.
    let dict = Zip::parse(&file).unwrap();
    let pkl = dict.find("state_dict/data.pkl").unwrap().unwrap();
    let pickle = &file[pkl];
    for len in 0..pickle.len() {
        assert!(read_state_dict(&with_pickle(&pickle[..len]), "cut pickle").is_err(), "pickle cut to {len} bytes");
    }
    // Any byte changed: an error or a state dict, never a panic; a changed pickle (CRC) or
    // central directory signature is always an error.
    let sigs: Vec<usize> = (0..file.len() - 3).filter(|&i| matches!(le32(&file, i), Some(CENTRAL_HEADER | END_OF_CENTRAL_DIR))).collect();
    let pickle_start = file.windows(pickle.len()).position(|w| w == pickle).unwrap();
    for i in 0..file.len() {
        for v in [0x00, 0xFF, file[i] ^ 0x01, file[i] ^ 0x80] {
            if v == file[i] {
                continue;
            }
            let mut bad = file.clone();
            bad[i] = v;
            let result = read_state_dict(&bad, "corrupt");
            let must_fail = (pickle_start..pickle_start + pickle.len()).contains(&i) || sigs.iter().any(|&s| (s..s + 4).contains(&i));
            if must_fail {
                assert!(result.is_err(), "byte {i} set to {v:#x} was not noticed");
            }
        }
    }
}

#[test]
fn torch_bin_hostile_pickles_are_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // deep nesting: TUPLE1 applied 100000 times
        ([b"\x80\x02)".as_slice(), &[0x85; 100_000], b"."].concat(), "nest deeper"),
        // quadratic copying: a memoized list appended to over and over
        ([b"\x80\x02]q\x00".as_slice(), &b"h\x00Naq\x000".repeat(50_000), b"."].concat(), "work"),
        // an integer too wide for any size
        (b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.".to_vec(), "9-byte integer"),
        // a string longer than the pickle
        (b"\x80\x02X\xff\xff\xff\x7fabc.".to_vec(), "cut short"),
        // popping below a MARK
        (b"\x80\x02N(0.".to_vec(), "MARK"),
        // an unknown opcode (INST, protocol 0)
        (b"\x80\x02ios\nsystem\n.".to_vec(), "opcode 0x69"),
        // a storage type of another dtype
        (b"\x80\x02ctorch\nLongStorage\n.".to_vec(), "torch.LongStorage"),
        // a state dict whose value is not a tensor
        (b"\x80\x02}X\x01\x00\x00\x00aK\x01s.".to_vec(), "not a tensor"),
        // a memo entry never stored
        (b"\x80\x02h\x05.".to_vec(), "memo entry 5"),
        // a persistent id of another shape
        (b"\x80\x02NQ.".to_vec(), "persistent id"),
    ];
    for (pickle, needle) in cases {
        let e = err(&with_pickle(&pickle));
        assert!(e.contains(needle), "expected `{needle}` in: {e}");
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn torch_bin_state_spaces_folder_opens_with_the_same_weights() {
    use crate::model::checkpoint::{Checkpoint, TensorSource};
    use crate::model::weights::{load_weights, HostSink};
    let hf = Checkpoint::open(&fixture("mamba1-tiny")).unwrap();
    let ss = Checkpoint::open(&fixture("mamba1-tiny-state-spaces")).unwrap();
    let bytes = std::fs::read(fixture("mamba1-tiny").join("model.safetensors")).unwrap();
    let shapes = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(shapes.len(), hf.names().unwrap().len());
    for (name, view) in shapes.tensors() {
        let ss_name = if name == "backbone.embeddings.weight" { "backbone.embedding.weight" } else { name.as_str() };
        let (a, b) = (hf.tensor(&name, view.shape()).unwrap(), ss.tensor(ss_name, view.shape()).unwrap());
        assert_eq!((a.dtype, &a.bytes), (b.dtype, &b.bytes), "{name}");
    }
    assert_eq!(ss.names().unwrap().len(), shapes.len() + 1, "the state-spaces file adds lm_head.weight");
    // The tied LM head is stored under its own name and shares the embedding's bytes.
    let shape = [ss.config.vocab_size, ss.config.d_model];
    let (emb, head) = (ss.tensor("backbone.embedding.weight", &shape).unwrap(), ss.tensor("lm_head.weight", &shape).unwrap());
    assert_eq!(emb.bytes.as_ptr(), head.bytes.as_ptr());
    assert_eq!(ss.stored_bytes(), hf.stored_bytes());
    let (w_hf, w_ss) = (load_weights(&hf, &mut HostSink).unwrap(), load_weights(&ss, &mut HostSink).unwrap());
    assert_eq!((w_hf.embedding, w_hf.norm_f), (w_ss.embedding, w_ss.norm_f));
    // Errors name the file and the tensor.
    let e = ss.tensor("backbone.norm_f.weight", &[3]).err().unwrap().to_string();
    assert!(e.contains("backbone.norm_f.weight") && e.contains("pytorch_model.bin"), "{e}");
}

#[test]
fn torch_bin_is_read_only_where_there_is_no_safetensors() {
    use crate::model::checkpoint::Checkpoint;
    let dir = std::env::temp_dir().join(format!("mamba-wgpu-torch-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("mamba1-tiny");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"not a checkpoint").unwrap();
    let e = Checkpoint::open(&dir).err().unwrap().to_string();
    assert!(e.contains("pytorch_model.bin") && e.contains("not a PyTorch checkpoint"), "{e}");
    // With both, safetensors wins: the broken .bin is not even opened.
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let opened = Checkpoint::open(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    opened.unwrap();
}

/// A tensor on storage "0" (4 f32 elements) with the given offset, size and stride.
fn one_tensor(offset: u8, size: &[u8], stride: &[u8]) -> Vec<u8> {
    let tuple = |v: &[u8]| -> Vec<u8> { [b"(".as_slice(), &v.iter().flat_map(|&x| [b'K', x]).collect::<Vec<_>>(), b"t"].concat() };
    [
        b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(".as_slice(),
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ",
        &[b'K', offset],
        &tuple(size),
        &tuple(stride),
        b"\x89ccollections\nOrderedDict\n)Rt",
        b"Rs.",
    ]
    .concat()
}

#[test]
fn torch_bin_checks_offsets_shapes_and_storage_sizes() {
    let file = with_pickle(&one_tensor(1, &[3], &[1]));
    let ok = read_state_dict(&file, "t").unwrap();
    let entry_start = Zip::parse(&file).unwrap().find("archive/data/0").unwrap().unwrap().start;
    assert_eq!(ok.tensors[0].1.bytes, entry_start + 4..entry_start + 16);
    assert_eq!(ok.data_bytes, 16);
    for (pickle, needle) in [
        (one_tensor(2, &[3], &[1]), "outside its storage"),
        (one_tensor(0, &[2, 2], &[1, 2]), "not contiguous"),
        (one_tensor(0, &[2, 1], &[2, 1]), "not contiguous"),
        (one_tensor(0, &[2], &[1, 1]), "differ in length"),
    ] {
        let e = err(&with_pickle(&pickle));
        assert!(e.contains(needle) && e.contains("`w`") && e.contains("test.bin"), "expected `{needle}`: {e}");
    }
    // Strides of size-1 dimensions are free, as in torch.
    read_state_dict(&with_pickle(&one_tensor(0, &[1, 4], &[9, 1])), "t").unwrap();
    // The storage entry must hold exactly numel x 4 bytes.
    let short = zip(&[("archive/data.pkl", &one_tensor(0, &[3], &[1])), ("archive/data/0", &[0u8; 12])]);
    assert!(err(&short).contains("holds 12 bytes"));
    let missing = zip(&[("archive/data.pkl", &one_tensor(0, &[3], &[1]))]);
    assert!(err(&missing).contains("archive/data/0"));
    let big_endian = zip(&[("archive/data.pkl", &one_tensor(0, &[3], &[1])), ("archive/byteorder", b"big")]);
    assert!(err(&big_endian).contains("little-endian"));
}
