//! `mw_model`: weights on the GPU, the tokenizer, the chat template and the end-of-sequence
//! ids; tokenizing and detokenizing.

use std::ffi::c_char;
use std::path::Path;
use std::sync::Arc;

use super::context::{context_of, mw_context};
use super::errors::{c_str, copy_out, guard, slice, write, CResult, Failure};
use super::{free, handle, into_raw, mw_status, Handle};
use crate::chat_template::ChatTemplate;
use crate::error::Error;
use crate::gguf::{self, GgufCheckpoint};
use crate::tokenizer::Tokenizer;
use crate::{hub_cache, Checkpoint, LoadOptions, Model, TensorSource, WeightDtype};

/// "No token": an end-of-sequence id a model does not have.
pub const MW_NO_TOKEN: u32 = u32::MAX;

/// Storage of the big matrices on the GPU (`mw_load_options.weight_dtype`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mw_weight_dtype {
    /// The checkpoint's precision: f32 stays f32, f16 stays f16, bf16 becomes f16.
    MW_DTYPE_AUTO = 0,
    MW_DTYPE_F32 = 1,
    MW_DTYPE_F16 = 2,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mw_load_options {
    /// A tokenizer.json to use instead of the model folder's; NULL for the folder's (if any).
    pub tokenizer_path: *const c_char,
    /// An `mw_weight_dtype` value.
    pub weight_dtype: i32,
    /// A tokenizer_config.json whose chat template to use instead of the model folder's; NULL
    /// for the folder's (if any).
    pub tokenizer_config_path: *const c_char,
}

impl Default for mw_load_options {
    fn default() -> Self {
        mw_load_options {
            tokenizer_path: std::ptr::null(),
            weight_dtype: mw_weight_dtype::MW_DTYPE_AUTO as i32,
            tokenizer_config_path: std::ptr::null(),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mw_model_info {
    /// Logits per position (rows of the embedding; may exceed the tokenizer's size).
    pub vocab_size: u64,
    pub n_layer: u64,
    pub d_model: u64,
    /// GPU memory the weights occupy.
    pub weight_bytes: u64,
    /// The first end-of-sequence id, or MW_NO_TOKEN.
    pub eos_id: u32,
    /// 1 when the model has a tokenizer (text in and out), else 0.
    pub has_tokenizer: i32,
    /// 1 when the model has its own chat template (tokenizer_config.json's), 0 when
    /// `mw_chat_render` gives the plain transcript.
    pub has_chat_template: i32,
}

/// What a model handle shares with its sessions.
pub(crate) struct LoadedModel {
    pub model: Arc<Model>,
    pub tokenizer: Option<Tokenizer>,
    /// Ids that end generation: config.json's, else the tokenizer's.
    pub eos: Vec<u32>,
    /// How `mw_chat_render` turns messages into a prompt.
    pub template: ChatTemplate,
}

impl LoadedModel {
    pub fn tokenizer(&self) -> CResult<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Failure::new(
                mw_status::MW_ERR_TOKENIZER,
                format!("{} has no tokenizer (give mw_load_options.tokenizer_path, or work with token ids)", self.model.source),
            )
        })
    }
}

/// Opaque to C.
pub struct mw_model {
    tag: u64,
    pub(crate) inner: Arc<LoadedModel>,
}

impl Handle for mw_model {
    const TAG: u64 = u64::from_le_bytes(*b"mw:model");
    const NAME: &'static str = "mw_model";
    fn tag(&self) -> u64 {
        self.tag
    }
    fn clear_tag(&mut self) {
        self.tag = 0;
    }
}

/// Fills `options` with the defaults: the folder's tokenizer and chat template, the
/// checkpoint's precision.
///
/// # Safety
/// `options` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_load_defaults(options: *mut mw_load_options) -> mw_status {
    guard(|| write(options, "options", mw_load_options::default()))
}

/// Loads a model folder (config.json + safetensors or pytorch_model.bin), a Hugging Face repo
/// id (`owner/name`) found in the local cache, or a GGUF file, onto the context's GPU, with the
/// chat template of its tokenizer_config.json (a GGUF file's own), if any.
///
/// # Safety
/// `ctx` is NULL or a context handle; `model` is NULL or a NUL-terminated string; `options`
/// is NULL or readable; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_model_load(
    ctx: *const mw_context,
    model: *const c_char,
    options: *const mw_load_options,
    out: *mut *mut mw_model,
) -> mw_status {
    guard(|| {
        write(out, "out", std::ptr::null_mut())?;
        let ctx = context_of(ctx)?;
        let name = c_str(model, "model")?;
        let options = if options.is_null() { mw_load_options::default() } else { options.read() };
        let tokenizer_path = if options.tokenizer_path.is_null() { None } else { Some(c_str(options.tokenizer_path, "options.tokenizer_path")?) };
        let config_path =
            if options.tokenizer_config_path.is_null() { None } else { Some(c_str(options.tokenizer_config_path, "options.tokenizer_config_path")?) };
        let weight_dtype = match options.weight_dtype {
            0 => None,
            1 => Some(WeightDtype::F32),
            2 => Some(WeightDtype::F16),
            other => return Err(Failure::invalid("options.weight_dtype", format!("{other} is not an mw_weight_dtype (0, 1 or 2)"))),
        };
        let load = LoadOptions { weight_dtype, ..Default::default() };
        let loaded = if is_gguf(name) {
            load_gguf(ctx, Path::new(name), tokenizer_path, config_path, load)?
        } else {
            load_folder(ctx, name, tokenizer_path, config_path, load)?
        };
        write(out, "out", into_raw(mw_model { tag: mw_model::TAG, inner: Arc::new(loaded) }))
    })
}

/// A name ending in .gguf, or an existing file that starts with GGUF's magic.
fn is_gguf(name: &str) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    name.to_ascii_lowercase().ends_with(".gguf")
        || (Path::new(name).is_file() && std::fs::File::open(name).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && gguf::has_magic(&magic))
}

/// The chat template of `config_path` (a tokenizer_config.json), else `default`'s; one that
/// does not compile fails the load, naming its file.
fn template_or(config_path: Option<&str>, default: impl FnOnce() -> crate::Result<ChatTemplate>) -> CResult<ChatTemplate> {
    match config_path {
        Some(path) => ChatTemplate::from_file(Path::new(path)),
        None => default(),
    }
    .map_err(|e| match e {
        Error::InvalidArgument { name, reason } => Failure::new(mw_status::MW_ERR_MODEL, format!("{name}: {reason}")),
        other => Failure::from(other),
    })
}

/// Uploads `ckpt` with its tokenizer (checked to fit) and chat template.
fn upload(
    ctx: Arc<crate::GpuContext>,
    ckpt: &impl TensorSource,
    tokenizer: Option<Tokenizer>,
    template: ChatTemplate,
    options: LoadOptions,
) -> CResult<LoadedModel> {
    if let Some(tok) = &tokenizer {
        tok.check_fits(ckpt.config().vocab_size)?;
    }
    let loaded = pollster::block_on(Model::load_checked(ctx, ckpt, options, &mut |_| {}))?;
    let eos = loaded.config.eos_ids_or(tokenizer.as_ref().and_then(Tokenizer::eos_id));
    Ok(LoadedModel { model: Arc::new(loaded), tokenizer, eos, template })
}

/// A model folder or a repo id in the Hugging Face cache.
fn load_folder(
    ctx: Arc<crate::GpuContext>,
    name: &str,
    tokenizer_path: Option<&str>,
    config_path: Option<&str>,
    options: LoadOptions,
) -> CResult<LoadedModel> {
    let dir = hub_cache::resolve_local(name)?;
    // The tokenizer first: a missing one fails before the weights upload.
    let tokenizer = match tokenizer_path {
        Some(path) => Some(Tokenizer::from_file(Path::new(path))?),
        None => {
            let path = dir.join("tokenizer.json");
            if path.is_file() {
                Some(Tokenizer::from_file(&path)?)
            } else {
                None
            }
        }
    };
    // The chat template before the weights upload.
    let template = template_or(config_path, || ChatTemplate::from_model_folder(&dir))?;
    if !dir.join("config.json").is_file() {
        return Err(Error::io(
            dir.join("config.json").display(),
            "not found: a model folder needs config.json and model.safetensors (or pytorch_model.bin)",
        )
        .into());
    }
    upload(ctx, &Checkpoint::open(&dir)?, tokenizer, template, options)
}

/// A GGUF file, with the tokenizer and chat template it embeds unless the options name others.
/// An embedded tokenizer that cannot be built (another tokenizer model) leaves the model to
/// token ids, with a warning in the log.
fn load_gguf(
    ctx: Arc<crate::GpuContext>,
    path: &Path,
    tokenizer_path: Option<&str>,
    config_path: Option<&str>,
    options: LoadOptions,
) -> CResult<LoadedModel> {
    let file = GgufCheckpoint::open(path)?;
    let tokenizer = match tokenizer_path {
        Some(path) => Some(Tokenizer::from_file(Path::new(path))?),
        None => match gguf::tokenizer_from_header(&file.header, file.source_name(), file.config.vocab_size) {
            Ok(tokenizer) => Some(tokenizer),
            Err(e) => {
                log::warn!("{e}; the model works with token ids only");
                None
            }
        },
    };
    let template = template_or(config_path, || gguf::chat_template_from_header(&file.header, file.source_name()))?;
    upload(ctx, &file, tokenizer, template, options)
}

/// Sizes and ids of a loaded model.
///
/// # Safety
/// `model` is NULL or a model handle; `info` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_model_get_info(model: *const mw_model, info: *mut mw_model_info) -> mw_status {
    guard(|| {
        let m = &handle(model, "model")?.inner;
        let c = &m.model.config;
        write(
            info,
            "info",
            mw_model_info {
                vocab_size: c.vocab_size as u64,
                n_layer: c.n_layer as u64,
                d_model: c.d_model as u64,
                weight_bytes: m.model.weight_bytes(),
                eos_id: m.eos.first().copied().unwrap_or(MW_NO_TOKEN),
                has_tokenizer: m.tokenizer.is_some() as i32,
                has_chat_template: !m.template.is_plain() as i32,
            },
        )
    })
}

/// Token ids of `text` (no special tokens added).
///
/// # Safety
/// `model` is NULL or a model handle; `text` is NULL or a NUL-terminated string; `ids` is NULL
/// or writable for `capacity` ids; `n_ids` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_tokenize(model: *const mw_model, text: *const c_char, ids: *mut u32, capacity: usize, n_ids: *mut usize) -> mw_status {
    guard(|| {
        let m = &handle(model, "model")?.inner;
        let text = c_str(text, "text")?;
        write(n_ids, "n_ids", 0)?;
        let encoded = m.tokenizer()?.encode(text)?;
        write(n_ids, "n_ids", encoded.len())?;
        if ids.is_null() {
            return Ok(());
        }
        if capacity < encoded.len() {
            return Err(Failure::new(mw_status::MW_ERR_BUFFER_TOO_SMALL, format!("`ids` holds {capacity} ids, the text has {}", encoded.len())));
        }
        std::ptr::copy_nonoverlapping(encoded.as_ptr(), ids, encoded.len());
        Ok(())
    })
}

/// The text of `ids`, NUL-terminated (special tokens are skipped).
///
/// # Safety
/// `model` is NULL or a model handle; `ids` is NULL or readable for `n_ids` ids; `text` is NULL
/// or writable for `capacity` bytes; `text_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_detokenize(
    model: *const mw_model,
    ids: *const u32,
    n_ids: usize,
    text: *mut c_char,
    capacity: usize,
    text_len: *mut usize,
) -> mw_status {
    guard(|| {
        let m = &handle(model, "model")?.inner;
        let ids = slice(ids, n_ids, "ids")?;
        write(text_len, "text_len", 0)?;
        let tok = m.tokenizer()?;
        let n = tok.vocab_size();
        if let Some((i, id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= n) {
            return Err(Failure::invalid("ids", format!("ids[{i}] = {id} is outside the tokenizer's {n} tokens")));
        }
        copy_out(tok.decode(ids)?.as_bytes(), true, text.cast(), capacity, text_len, "text")
    })
}

/// Releases the caller's reference; sessions of the model keep it alive.
///
/// # Safety
/// `model` is NULL or a model handle not in use by another call.
#[no_mangle]
pub unsafe extern "C" fn mw_model_free(model: *mut mw_model) {
    free(model)
}

/// The shared part of a model handle, for opening a session.
pub(crate) unsafe fn loaded_of(model: *const mw_model) -> CResult<Arc<LoadedModel>> {
    Ok(handle(model, "model")?.inner.clone())
}
