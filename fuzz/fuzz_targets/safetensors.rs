//! A model.safetensors as the engine reads it: the header parsed (Checkpoint::from_parts), then
//! every tensor the config names looked up and converted (load_weights into the host sink), for
//! the tiny fixture's config so that a valid file stays small.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mamba_wgpu::model::checkpoint::ShardBytes;
use mamba_wgpu::model::weights::{load_weights, HostSink};
use mamba_wgpu::Checkpoint;

const CONFIG: &str = include_str!("../../tests/fixtures/mamba1-tiny/config.json");

fuzz_target!(|data: &[u8]| {
    let shards = vec![("fuzz/model.safetensors".to_string(), ShardBytes::Owned(data.to_vec()))];
    if let Ok(ckpt) = Checkpoint::from_parts("fuzz", CONFIG, shards) {
        let _ = load_weights(&ckpt, &mut HostSink);
    }
});
