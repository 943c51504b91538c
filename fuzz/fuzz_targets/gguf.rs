//! A GGUF file as the engine reads it: the header parsed (also as a prefix of the file), the
//! config its metadata implies, every tensor the config names (load_weights into the host sink,
//! which dequantizes block tensors) and the embedded tokenizer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mamba_wgpu::gguf::{chat_template_from_header, tokenizer_from_header, GgufCheckpoint, GgufHeader};
use mamba_wgpu::model::checkpoint::ShardBytes;
use mamba_wgpu::model::weights::{load_weights, HostSink};

const NAME: &str = "fuzz.gguf";

fuzz_target!(|data: &[u8]| {
    let _ = GgufHeader::parse_prefix(&data[..data.len() / 2], NAME);
    if let Ok(gguf) = GgufCheckpoint::from_bytes(NAME, ShardBytes::Owned(data.to_vec())) {
        let _ = load_weights(&gguf, &mut HostSink);
        let _ = tokenizer_from_header(&gguf.header, NAME, gguf.config.vocab_size);
        let _ = chat_template_from_header(&gguf.header, NAME);
    }
});
