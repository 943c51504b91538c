//! pytorch_model.bin as the engine reads it (torch_bin::read_state_dict): a state dict or an
//! error, never a panic, and every tensor it returns lies inside the file and has the bytes its
//! shape and dtype need.
//!
//! The input is read as a file. Since a changed data.pkl fails the zip's CRC check, an input
//! that is not a zip (no `PK` signature) is also read as a pickle, put into a well-formed zip
//! as `archive/data.pkl` beside storages `archive/data/0` to `5` of the sizes that
//! tests/data/torch_bin/state_dict.bin has, so that the pickle machine and the checks of the
//! tensors it rebuilds see mutated pickles too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mamba_wgpu::model::checkpoint::StoredDtype;
use mamba_wgpu::model::torch_bin::read_state_dict;

const STORAGE_BYTES: [usize; 6] = [12, 8, 48, 20, 4, 16];

fuzz_target!(|data: &[u8]| {
    check(data);
    if !data.starts_with(b"PK") {
        check(&zip_around(data));
    }
});

fn check(file: &[u8]) {
    let Ok(dict) = read_state_dict(file, "fuzz/pytorch_model.bin") else { return };
    for (name, t) in &dict.tensors {
        let width = if t.dtype == StoredDtype::F32 { 4 } else { 2 };
        let numel: usize = t.shape.iter().product();
        assert!(t.bytes.end <= file.len(), "{name}: {:?} beyond {} bytes", t.bytes, file.len());
        assert_eq!(t.bytes.len(), numel * width, "{name}: shape {:?}", t.shape);
    }
}

/// A stored zip of `pickle` as archive/data.pkl, a little-endian byteorder and the storages.
fn zip_around(pickle: &[u8]) -> Vec<u8> {
    let storages: Vec<(String, Vec<u8>)> =
        STORAGE_BYTES.iter().enumerate().map(|(i, &n)| (format!("archive/data/{i}"), (0..n as u8).collect())).collect();
    let mut entries: Vec<(&str, &[u8])> = vec![("archive/data.pkl", pickle), ("archive/byteorder", b"little")];
    entries.extend(storages.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())));
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let offset = out.len() as u32;
        let header = |signature: u32, central: bool| {
            let mut h = signature.to_le_bytes().to_vec();
            if central {
                h.extend(20u16.to_le_bytes()); // version made by
            }
            h.extend([20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]); // version needed, flags, stored, time, date
            h.extend(crc32(data).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra field length
            if central {
                h.extend([0; 10]); // comment length, disk, internal and external attributes
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(header(0x0403_4b50, false));
        out.extend(data);
        central.extend(header(0x0201_4b50, true));
    }
    let count = (STORAGE_BYTES.len() as u16 + 2).to_le_bytes();
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0; 4]); // disk numbers
    out.extend(count);
    out.extend(count);
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend([0; 2]); // comment length
    out
}

/// The zip CRC-32 (IEEE), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |mut c, &b| {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        c
    })
}
