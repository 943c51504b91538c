//! config.json as the engine reads it (MambaConfig::from_json): any bytes give a config or an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mamba_wgpu::MambaConfig::from_json(text, "fuzz/config.json");
    }
});
