//! Opening the GPU, the checkpoint (a folder or a GGUF file) and the tokenizer for a command,
//! with a progress bar on stderr (only when it is a terminal: logs and pipes stay clean).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mamba_wgpu::chat_template::ChatTemplate;
use mamba_wgpu::gguf::{chat_template_from_header, tokenizer_from_header, GgufCheckpoint};
use mamba_wgpu::tokenizer::Tokenizer;
use mamba_wgpu::{Checkpoint, Error, GpuContext, LoadOptions, Model, Result, TensorSource, WeightDtype};

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
    if let ModelSource::Gguf(path) = &source {
        let gguf = GgufCheckpoint::open(path)?;
        let tokenizer = match &args.tokenizer {
            Some(file) => Some(Tokenizer::from_file(file)?),
            None => gguf_tokenizer(&gguf, need)?,
        };
        return upload(args, &gguf, gguf.stored_bytes(), tokenizer, need);
    }
    // The tokenizer first: a missing one should fail before seconds of weight uploads.
    let tokenizer = match &args.tokenizer {
        Some(path) => Some(Tokenizer::from_file(path)?),
        None => load_tokenizer(&source, need)?,
    };
    let checkpoint = open_checkpoint(&source)?;
    upload(args, &checkpoint, checkpoint.stored_bytes() as u64, tokenizer, need)
}

/// Uploads `ckpt` (`total`: its bytes of tensor data, for the progress bar) with the options of
/// `args`.
fn upload(args: &ModelArgs, ckpt: &impl TensorSource, total: u64, tokenizer: Option<Tokenizer>, need: NeedTokenizer) -> Result<Loaded> {
    // A tokenizer of another model fails before the weights upload; runs on token ids do not
    // use it, so they do not check it.
    if let (Some(tok), NeedTokenizer::Yes) = (&tokenizer, need) {
        tok.check_fits(ckpt.config().vocab_size)?;
    }
    let ctx = pollster::block_on(GpuContext::new(args.adapter.as_deref()))?;
    if args.output_dtype.is_some() && args.dtype.is_none() {
        return Err(Error::invalid("--output-dtype", "applies with --dtype (the storage of the other matrices)"));
    }
    let options = LoadOptions { weight_dtype: args.dtype.map(WeightDtype::from), output_dtype: args.output_dtype.map(WeightDtype::from) };
    let bar = super::progress_bar(total, "loading weights [{bar:32}] {bytes}/{total_bytes}");
    let model = pollster::block_on(Model::load_checked(ctx, ckpt, options, &mut |done| bar.set_position(done)));
    bar.finish_and_clear();
    Ok(Loaded { model: Arc::new(model?), tokenizer })
}

/// The tokenizer a GGUF file embeds. One that cannot be built (another tokenizer model, a
/// broken vocabulary) fails a command that reads text and is a warning for one on token ids.
fn gguf_tokenizer(gguf: &GgufCheckpoint, need: NeedTokenizer) -> Result<Option<Tokenizer>> {
    match tokenizer_from_header(&gguf.header, gguf.source_name(), gguf.config.vocab_size) {
        Ok(tokenizer) => Ok(Some(tokenizer)),
        Err(Error::Tokenizer { path, reason }) if need == NeedTokenizer::Yes => Err(Error::Tokenizer {
            path,
            reason: format!("{reason}: text prompts need a tokenizer (--tokenizer FILE); without one, give token ids with --prompt-ids"),
        }),
        Err(e) if need == NeedTokenizer::Yes => Err(e),
        Err(e) => {
            super::print_err(&format!("warning: {e}; the model runs on token ids only"));
            Ok(None)
        }
    }
}

/// The model's chat template: its folder's tokenizer_config.json's or its GGUF file's, or the
/// plain transcript.
pub fn chat_template(args: &ModelArgs) -> Result<ChatTemplate> {
    match model_path::resolve(args.model.as_deref())? {
        ModelSource::Embedded => Ok(ChatTemplate::plain()),
        ModelSource::Folder(dir) => ChatTemplate::from_model_folder(&dir),
        ModelSource::Gguf(path) => {
            let gguf = GgufCheckpoint::open(&path)?;
            chat_template_from_header(&gguf.header, gguf.source_name())
        }
    }
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
        ModelSource::Gguf(path) => Err(gguf_not_taken(path)),
    }
}

/// A GGUF file where a model folder is needed.
fn gguf_not_taken(path: &Path) -> Error {
    Error::invalid("--model", format!("{} is a GGUF file; this takes a model folder", path.display()))
}

pub fn open_checkpoint(source: &ModelSource) -> Result<Checkpoint> {
    match source {
        ModelSource::Embedded => embedded::checkpoint(),
        ModelSource::Folder(dir) => {
            if !dir.join("config.json").is_file() {
                let path: PathBuf = dir.join("config.json");
                return Err(Error::io(path.display(), "not found: a model folder needs config.json and model.safetensors"));
            }
            Checkpoint::open(dir)
        }
        ModelSource::Gguf(path) => Err(gguf_not_taken(path)),
    }
}

/// models/shakespeare-mamba compiled into the binary, so the default works from any folder
/// and offline.
#[cfg(feature = "embedded-model")]
pub mod embedded {
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

    /// (tokenizer.json, config.json) as text.
    pub fn files() -> (&'static [u8], &'static str) {
        (TOKENIZER, CONFIG)
    }
}

/// Without the feature `ModelSource::Embedded` is never produced; these keep the match total.
#[cfg(not(feature = "embedded-model"))]
pub mod embedded {
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
    pub fn files() -> (&'static [u8], &'static str) {
        (b"", "")
    }
}
