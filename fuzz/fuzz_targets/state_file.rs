//! --load-state files as the engine reads them (state_file::decode, bounded reads), for a model
//! with fingerprint 42 whose snapshot takes 100 bytes: a state or an error, never a panic, and
//! never more allocation than the limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mamba_wgpu::state_file::decode(data, "fuzz.state", 42, 100);
});
