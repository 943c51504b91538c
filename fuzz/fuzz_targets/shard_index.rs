//! model.safetensors.index.json as the engine reads it (parse_shard_index): a list of shard
//! files inside the model folder, or an error; never a panic, never a path outside the folder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(files) = mamba_wgpu::model::checkpoint::parse_shard_index(text, "fuzz/model.safetensors.index.json") {
            for file in files {
                let path = std::path::Path::new(&file);
                assert!(path.is_relative() && path.components().all(|c| matches!(c, std::path::Component::Normal(_))), "{file}");
            }
        }
    }
});
