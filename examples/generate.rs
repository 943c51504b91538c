//! Embedding the engine in an app, in about 30 lines: load a model folder, stream text.
//! `cargo run --release --example generate -- [MODEL_DIR] [PROMPT]`

use std::io::Write;
use std::sync::Arc;

use mamba_wgpu::generate::{Generator, StopConditions};
use mamba_wgpu::sampling::{Sampler, SamplingParams};
use mamba_wgpu::tokenizer::Tokenizer;
use mamba_wgpu::{GpuContext, LoadOptions, Model, Session};

fn main() -> mamba_wgpu::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "models/shakespeare-mamba".into());
    let prompt = args.next().unwrap_or_else(|| "ROMEO:\n".into());
    pollster::block_on(async {
        let ctx = GpuContext::new(None).await?;
        let model = Arc::new(Model::open(ctx, dir.as_ref(), LoadOptions::default())?);
        let tokenizer = Tokenizer::from_file(&std::path::Path::new(&dir).join("tokenizer.json"))?;
        let mut session = Session::new(model.clone(), 1)?;
        let sampler = Sampler::new(SamplingParams { temperature: 0.8, top_k: 40, seed: 7, ..Default::default() })?;
        let stop = StopConditions { max_tokens: 100, eos: model.config.eos_ids_or(tokenizer.eos_id()), stop_strings: vec![] };
        let mut generator = Generator::new(&mut session, sampler, stop).with_tokenizer(&tokenizer);
        generator.start(&tokenizer.encode(&prompt)?).await?;
        print!("{prompt}");
        while let Some(text) = generator.next_text().await? {
            print!("{text}");
            std::io::stdout().flush().ok();
        }
        println!("\n[{:.1} tokens/s]", generator.stats().decode_tokens_per_second().unwrap_or(0.0));
        Ok(())
    })
}
