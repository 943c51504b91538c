//! Opening the GPU, the checkpoint and the tokenizer for a command, with a progress bar on
//! stderr (only when it is a terminal: logs and pipes stay clean).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use mamba_wgpu::chat_template::ChatTemplate;
use mamba_wgpu::tokenizer::Tokenizer;
use mamba_wgpu::{Checkpoint, Error, GpuContext, LoadOptions, Model, Result, WeightDtype};

use super::args::ModelArgs;
use super::model_path::{self, ModelSource};

pub struct Loaded {
    pub model: Arc<Model>,
    pub tokenizer: Option<Tokenizer>,
}

/// Whether the command can run without a tokenizer (token ids in and out).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NeedTokenizer {
    Yes,
    No,
}

pub fn load(args: &ModelArgs, need: NeedTokenizer) -> Result<Loaded> {
    let source = model_path::resolve(args.model.as_deref())?;
    // The tokenizer first: a missing one should fail before seconds of weight uploads.
    let tokenizer = match &args.tokenizer {
        Some(path) => Some(Tokenizer::from_file(path)?),
        None => load_tokenizer(&source, need)?,
    };
    let checkpoint = open_checkpoint(&source)?;
    // A tokenizer of another model fails before the weights upload; runs on token ids do not
    // use it, so they do not check it.
    if let (Some(tok), NeedTokenizer::Yes) = (&tokenizer, need) {
        tok.check_fits(checkpoint.config.vocab_size)?;
    }
    let ctx = pollster::block_on(GpuContext::new(args.adapter.as_deref()))?;
    if args.output_dtype.is_some() && args.dtype.is_none() {
        return Err(Error::invalid("--output-dtype", "applies with --dtype (the storage of the other matrices)"));
    }
    let options = LoadOptions { weight_dtype: args.dtype.map(WeightDtype::from), output_dtype: args.output_dtype.map(WeightDtype::from) };
    let bar = progress_bar(checkpoint.stored_bytes() as u64);
    let model = pollster::block_on(Model::load_checked(ctx, &checkpoint, options, &mut |done| bar.set_position(done)));
    bar.finish_and_clear();
    Ok(Loaded { model: Arc::new(model?), tokenizer })
}

/// The model's chat template: its folder's tokenizer_config.json's, or the plain transcript.
pub fn chat_template(args: &ModelArgs) -> Result<ChatTemplate> {
    let ModelSource::Folder(dir) = model_path::resolve(args.model.as_deref())? else { return Ok(ChatTemplate::plain()) };
    ChatTemplate::from_model_folder(&dir)
}

fn load_tokenizer(source: &ModelSource, need: NeedTokenizer) -> Result<Option<Tokenizer>> {
    match source {
        ModelSource::Embedded => embedded::tokenizer().map(Some),
        ModelSource::Folder(dir) => {
            let path = dir.join("tokenizer.json");
            if path.is_file() {
                return Tokenizer::from_file(&path).map(Some);
            }
            if need == NeedTokenizer::Yes {
                return Err(Error::Tokenizer {
                    path: path.display().to_string(),
                    reason: "not found: text prompts need a tokenizer (the model's tokenizer.json, or --tokenizer FILE); without one, give token ids with --prompt-ids".into(),
                });
            }
            Ok(None)
        }
    }
}

fn open_checkpoint(source: &ModelSource) -> Result<Checkpoint> {
    match source {
        ModelSource::Embedded => embedded::checkpoint(),
        ModelSource::Folder(dir) => {
            if !dir.join("config.json").is_file() {
                let path: PathBuf = dir.join("config.json");
                return Err(Error::io(path.display(), "not found: a model folder needs config.json and model.safetensors"));
            }
            Checkpoint::open(dir)
        }
    }
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template("loading weights [{bar:32}] {bytes}/{total_bytes}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// models/shakespeare-mamba compiled into the binary, so the default works from any folder
/// and offline.
#[cfg(feature = "embedded-model")]
mod embedded {
    use mamba_wgpu::model::checkpoint::ShardBytes;
    use mamba_wgpu::tokenizer::Tokenizer;
    use mamba_wgpu::{Checkpoint, Result};

    const NAME: &str = "shakespeare-mamba (built in)";
    const CONFIG: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/shakespeare-mamba/config.json"));
    const WEIGHTS: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/shakespeare-mamba/model.safetensors"));
    const TOKENIZER: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/shakespeare-mamba/tokenizer.json"));

    pub fn checkpoint() -> Result<Checkpoint> {
        // Owned: the library takes a Vec; a few MB copied once is cheaper than a new API.
        Checkpoint::from_parts(NAME, CONFIG, vec![("model.safetensors".into(), ShardBytes::Owned(WEIGHTS.to_vec()))])
    }

    pub fn tokenizer() -> Result<Tokenizer> {
        Tokenizer::from_bytes(TOKENIZER, &format!("{NAME}/tokenizer.json"))
    }
}

/// Without the feature `ModelSource::Embedded` is never produced; these keep the match total.
#[cfg(not(feature = "embedded-model"))]
mod embedded {
    use mamba_wgpu::tokenizer::Tokenizer;
    use mamba_wgpu::{Checkpoint, Error, Result};

    fn missing() -> Error {
        Error::invalid("--model", "this build has no built-in model (cargo feature `embedded-model`)")
    }
    pub fn checkpoint() -> Result<Checkpoint> {
        Err(missing())
    }
    pub fn tokenizer() -> Result<Tokenizer> {
        Err(missing())
    }
}
