//! The browser facade: a small wasm-bindgen API over the engine. `web/build.sh` wraps it into
//! the `mamba-wgpu` npm package (`web/npm/`: an entry module, TypeScript types, a README), which
//! `web/main.js` imports like any app. The package's types are written by hand in
//! `web/npm/index.d.ts` (wasm-bindgen's say `any` for options and results): a method or option
//! added here goes there too; `web/test/npm-package.mjs` fails on a method missing there.
//!
//! ```js
//! import init, { MambaEngine } from 'mamba-wgpu';
//! await init();
//! const engine = await MambaEngine.create();          // WebGPU adapter + device
//! console.log(engine.adapterInfo());                   // {name, backend, device_type, ...}
//! await engine.loadModel(configText, weightBytes, tokenizerText, (done, total) => {}, 'my-model');
//! const stats = await engine.generate('ROMEO.', { max_tokens: 100, temperature: 0.8 },
//!                                     (piece) => output.append(piece));
//! const { ids } = await engine.generateIds([1, 2, 3], 12);  // greedy ids, no tokenizer needed
//! ```
//!
//! Every method that touches the GPU returns a Promise and never blocks the page: readbacks
//! await `mapAsync`. One generation runs at a time; `stop()` ends it before the next token.
//! Methods take `&self` and keep their state behind `Rc<RefCell<..>>`, so `stop()` can be called
//! while a generation is awaiting the GPU (a `&mut self` async method would hold the object's
//! borrow across the await and make any other call throw).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use js_sys::{Function, Promise};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::bench::decode::{fixed_costs, start_decode, time_decode};
use crate::bench::synthetic::{self, SyntheticModel};
use crate::chat_template::{ChatTemplate, Message};
use crate::error::{Error, Result};
use crate::generate::{now_seconds, FinishReason, GenerationStats, Generator, StopConditions};
use crate::gguf::{tokenizer_from_header, GgufHeader, Parsed, StreamedGguf};
use crate::gpu::{GpuContext, WeightDtype};
use crate::model::checkpoint::ShardBytes;
use crate::model::{Checkpoint, LoadOptions, Model, TensorSource};
use crate::sampling::{Sampler, SamplingParams, DEFAULT_MAX_TOKENS, GENERATION_DEFAULTS};
use crate::session::Session;
use crate::tokenizer::Tokenizer;

/// A loaded model with its one session and what the session's state holds.
struct Loaded {
    model: Arc<Model>,
    tokenizer: Option<Tokenizer>,
    session: Session,
    /// Prompt and generated ids in the state (for the repetition penalty of a continuation).
    history: Vec<u32>,
    /// The last returned token, not yet fed to the session (see `Generator::pending_token`).
    pending: Option<u32>,
}

enum Slot {
    Empty,
    Ready(Box<Loaded>),
    /// A generation has taken the model out; it puts it back when it ends.
    Busy,
}

/// The engine: one WebGPU device, at most one model, one generation at a time.
#[wasm_bindgen]
pub struct MambaEngine {
    ctx: Arc<GpuContext>,
    slot: Rc<RefCell<Slot>>,
    /// Set by `stop()`, checked between tokens, cleared when a generation starts.
    stop: Rc<Cell<bool>>,
    /// The first GPU error WebGPU reported since the last check (validation, out of memory):
    /// WebGPU reports them asynchronously instead of failing the call.
    gpu_error: Arc<Mutex<Option<String>>>,
    /// A GGUF file being loaded tensor by tensor (ggufOpen .. ggufFinish).
    gguf: Rc<RefCell<Option<StreamedGguf>>>,
}

/// Options of `generate` and `generateIds`, as a plain JS object; absent fields take the CLI's
/// defaults, so `{temperature: 0}` decodes like `mamba-wgpu generate --temperature 0`.
#[derive(Deserialize, Debug)]
#[serde(default, deny_unknown_fields)]
struct GenerateOptions {
    max_tokens: usize,
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repetition_penalty: f32,
    repetition_window: usize,
    seed: u64,
    /// Texts that end generation (not shown).
    stop: Vec<String>,
    /// Continue from the state the last generation left, instead of starting afresh.
    #[serde(rename = "continue")]
    continue_: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        let d = GENERATION_DEFAULTS;
        GenerateOptions {
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: d.temperature,
            top_k: d.top_k,
            top_p: d.top_p,
            min_p: d.min_p,
            repetition_penalty: d.repetition_penalty,
            repetition_window: d.repetition_window,
            seed: d.seed,
            stop: Vec::new(),
            continue_: false,
        }
    }
}

impl GenerateOptions {
    fn from_js(value: &JsValue) -> Result<Self> {
        if value.is_undefined() || value.is_null() {
            return Ok(Self::default());
        }
        let json =
            js_sys::JSON::stringify(value).ok().and_then(|s| s.as_string()).ok_or_else(|| Error::invalid("options", "must be a plain object"))?;
        serde_json::from_str(&json).map_err(|e| Error::invalid("options", e.to_string()))
    }

    fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            repetition_window: self.repetition_window,
            seed: self.seed,
        }
    }
}

#[wasm_bindgen]
impl MambaEngine {
    /// Opens the browser's WebGPU adapter (high performance) and a device on it.
    pub async fn create() -> std::result::Result<MambaEngine, JsError> {
        console_error_panic_hook::set_once();
        let ctx = GpuContext::new(None).await.map_err(js_error)?;
        let gpu_error = Arc::new(Mutex::new(None));
        let sink = gpu_error.clone();
        ctx.device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        Ok(MambaEngine {
            ctx,
            slot: Rc::new(RefCell::new(Slot::Empty)),
            stop: Rc::new(Cell::new(false)),
            gpu_error,
            gguf: Rc::new(RefCell::new(None)),
        })
    }

    /// The adapter in use: `{name, backend, device_type, driver, shader_f16, max_storage_binding_bytes,
    /// max_buffer_bytes, max_workgroup_storage_bytes}`.
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> JsValue {
        let a = &self.ctx.adapter;
        to_js(&serde_json::json!({
            "name": a.name,
            "backend": a.backend,
            "device_type": a.device_type,
            "driver": a.driver,
            "shader_f16": a.shader_f16,
            "max_storage_binding_bytes": a.max_storage_binding_bytes,
            "max_buffer_bytes": a.max_buffer_bytes,
            "max_workgroup_storage_bytes": a.max_workgroup_storage_bytes,
        }))
    }

    /// Uploads a model: config.json text, the bytes of model.safetensors, and tokenizer.json
    /// text (optional: without it only `generateIds` works). `progress(done, total)` receives
    /// bytes of tensor data uploaded; `name` (e.g. the folder) labels error messages. Replaces
    /// any model loaded before. Resolves to `modelInfo()`.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(
        &self,
        config_json: String,
        weights: Vec<u8>,
        tokenizer_json: Option<String>,
        progress: Option<Function>,
        name: Option<String>,
    ) -> Promise {
        let (ctx, slot) = (self.ctx.clone(), self.slot.clone());
        let gpu_error = self.gpu_error.clone();
        future_to_promise(async move {
            if matches!(*slot.borrow(), Slot::Busy) {
                return Err(js_error(busy()).into());
            }
            // Free the old model's GPU memory before uploading the new one.
            *slot.borrow_mut() = Slot::Empty;
            take_gpu_error(&gpu_error);
            let name = name.unwrap_or_else(|| "model".into());
            // WebGPU reports a buffer it could not create later and asynchronously: catch it here.
            let out_of_memory = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let invalid = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let loaded = load(ctx.clone(), &name, &config_json, weights, tokenizer_json.as_deref(), progress.as_ref());
            let scoped = [invalid.pop().await, out_of_memory.pop().await];
            let loaded = loaded.map_err(js_error)?;
            if let Some(e) = scoped.into_iter().flatten().next() {
                return Err(js_error(Error::Gpu(format!("uploading {name} to the GPU failed: {e}"))).into());
            }
            let info = model_info(&loaded);
            *slot.borrow_mut() = Slot::Ready(Box::new(loaded));
            Ok(info)
        })
    }

    /// Starts loading a GGUF file from its first bytes (`prefix`; `name` labels errors), so
    /// that the file is never whole in memory. Returns `{need: n}` when the header goes on
    /// past the prefix (call again with at least n bytes), else `{tensors: [[name, offset,
    /// length], ...], bytes}`: pass each tensor's slice of the file to `ggufTensor`, in any
    /// order, then call `ggufFinish`. Frees the model loaded before.
    #[wasm_bindgen(js_name = ggufOpen)]
    pub fn gguf_open(&self, prefix: &[u8], name: String) -> std::result::Result<JsValue, JsError> {
        if matches!(*self.slot.borrow(), Slot::Busy) {
            return Err(js_error(busy()));
        }
        *self.slot.borrow_mut() = Slot::Empty;
        *self.gguf.borrow_mut() = None;
        let header = match GgufHeader::parse_prefix(prefix, &name).map_err(js_error)? {
            Parsed::NeedBytes(n) => return Ok(to_js(&serde_json::json!({ "need": n }))),
            Parsed::Header(header) => header,
        };
        let streamed = StreamedGguf::new(header, &name).map_err(js_error)?;
        let slices = streamed.slices();
        let tensors: Vec<_> = slices.iter().map(|s| serde_json::json!([s.name, s.offset, s.len])).collect();
        let bytes: u64 = slices.iter().map(|s| s.len).sum();
        *self.gguf.borrow_mut() = Some(streamed);
        Ok(to_js(&serde_json::json!({ "tensors": tensors, "bytes": bytes })))
    }

    /// One tensor's bytes of the GGUF file `ggufOpen` started: a matrix goes to the GPU now.
    #[wasm_bindgen(js_name = ggufTensor)]
    pub fn gguf_tensor(&self, name: String, bytes: Vec<u8>) -> std::result::Result<(), JsError> {
        let mut gguf = self.gguf.borrow_mut();
        let streamed = gguf.as_mut().ok_or_else(|| js_error(Error::invalid("ggufTensor", "no GGUF file is being loaded (call ggufOpen first)")))?;
        streamed.add(&self.ctx, &name, bytes).map_err(js_error)
    }

    /// Ends a GGUF load once every tensor was given: the model, with the file's tokenizer (or
    /// `tokenizer_json`, a tokenizer.json text that replaces it; a file whose tokenizer cannot
    /// be built loads for `generateIds` only, with a console warning). Resolves to `modelInfo()`.
    #[wasm_bindgen(js_name = ggufFinish)]
    pub fn gguf_finish(&self, tokenizer_json: Option<String>) -> Promise {
        let (ctx, slot, gguf, gpu_error) = (self.ctx.clone(), self.slot.clone(), self.gguf.clone(), self.gpu_error.clone());
        future_to_promise(async move {
            let streamed = gguf.borrow_mut().take().ok_or_else(|| js_error(Error::invalid("ggufFinish", "no GGUF file is being loaded")))?;
            check_gpu(&gpu_error).map_err(js_error)?;
            let name = streamed.source_name().to_string();
            let tokenizer = match tokenizer_json {
                Some(json) => Some(Tokenizer::from_bytes(json.as_bytes(), &format!("{name} (tokenizer given)")).map_err(js_error)?),
                None => match tokenizer_from_header(&streamed.header, &name, streamed.config.vocab_size) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        web_sys::console::warn_1(&format!("mamba-wgpu: {e}; token ids only").into());
                        None
                    }
                },
            };
            let out_of_memory = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let invalid = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let model = streamed.finish(ctx.clone(), &mut |_| {});
            let scoped = [invalid.pop().await, out_of_memory.pop().await];
            let model = model.map_err(js_error)?;
            if let Some(e) = scoped.into_iter().flatten().next() {
                return Err(js_error(Error::Gpu(format!("uploading {name} to the GPU failed: {e}"))).into());
            }
            check_gpu(&gpu_error).map_err(js_error)?;
            // wgpu's web types are not Send on wasm, so neither is Model; Session takes an Arc anyway.
            #[allow(clippy::arc_with_non_send_sync)]
            let model = Arc::new(model);
            if let Some(tok) = &tokenizer {
                tok.check_fits(model.config.vocab_size).map_err(js_error)?;
            }
            let session = Session::new(model.clone(), 1).map_err(js_error)?;
            let loaded = Loaded { model, tokenizer, session, history: Vec::new(), pending: None };
            let info = model_info(&loaded);
            *slot.borrow_mut() = Slot::Ready(Box::new(loaded));
            Ok(info)
        })
    }

    /// `{source, vocab_size, d_model, n_layer, d_state, weight_dtype, weight_bytes, has_tokenizer}`
    /// of the loaded model, or null.
    #[wasm_bindgen(js_name = modelInfo)]
    pub fn model_info(&self) -> JsValue {
        match &*self.slot.borrow() {
            Slot::Ready(loaded) => model_info(loaded),
            _ => JsValue::NULL,
        }
    }

    /// Continues `prompt` (text; needs a tokenizer). `onToken(piece)` receives each new piece
    /// of text as it is decoded (never half a character). Resolves to
    /// `{text, ids, prompt_tokens, generated_tokens, finish_reason, prefill_seconds,
    /// decode_seconds, prefill_tokens_per_s, decode_tokens_per_s}`.
    pub fn generate(&self, prompt: String, options: JsValue, on_token: Option<Function>) -> Promise {
        let run = self.runner();
        future_to_promise(async move {
            let options = GenerateOptions::from_js(&options).map_err(js_error)?;
            run.run(move |loaded, stop, gpu_error| Box::pin(generate_text(loaded, prompt, options, on_token, stop, gpu_error))).await
        })
    }

    /// Greedy continuation of token ids (no tokenizer needed, no EOS stop): exactly
    /// `maxTokens` argmax steps, like the reference fixtures and `mamba-wgpu generate
    /// --prompt-ids --greedy`. `onToken(id)` receives each id. Resolves like `generate`.
    #[wasm_bindgen(js_name = generateIds)]
    pub fn generate_ids(&self, ids: Vec<u32>, max_tokens: usize, on_token: Option<Function>) -> Promise {
        let run = self.runner();
        future_to_promise(async move {
            let options = GenerateOptions { max_tokens, ..GenerateOptions::default() };
            run.run(move |loaded, stop, gpu_error| Box::pin(generate_ids(loaded, ids, options, on_token, stop, gpu_error))).await
        })
    }

    /// Measures decode as generation runs it (sampled on the GPU with the default options) at
    /// one token per submit and at the adapter's tokens per submit, `decodeTokens` tokens each
    /// after a warm-up, and the prefill of a 64-token prompt: on the loaded model, or, with
    /// `shape` (a released shape such as "mamba-130m"), on a synthetic model of that shape with
    /// random f16 weights, made for the run and dropped after it. The loaded model's state is
    /// left as it was. Resolves to `{model, weight_dtype, prefill_tokens_per_s, decode:
    /// [{tokens_per_submit, tokens_per_s, dispatches_per_token}, ...], fixed_costs:
    /// {round_trip_ms, empty_dispatch_ms}}`: what a submit's round trip and one empty dispatch
    /// cost on this adapter, against which a step's time can be read.
    pub fn benchmark(&self, shape: Option<String>, decode_tokens: usize) -> Promise {
        let (ctx, loaded) = (self.ctx.clone(), self.loaded_model());
        future_to_promise(async move {
            let model = match shape {
                Some(name) => Arc::new(synthetic_model(ctx, &name).await.map_err(js_error)?),
                None => loaded.ok_or_else(|| {
                    js_error(Error::invalid("model", "no model to measure: call loadModel() first, and wait for a running generation to end"))
                })?,
            };
            Ok(to_js(&benchmark(model, decode_tokens.max(1)).await.map_err(js_error)?))
        })
    }

    /// Ends the running generation before its next token (its promise resolves normally, with
    /// `finish_reason: "cancelled"`).
    pub fn stop(&self) {
        self.stop.set(true);
    }

    /// True while a generation runs.
    #[wasm_bindgen(js_name = isBusy)]
    pub fn is_busy(&self) -> bool {
        matches!(*self.slot.borrow(), Slot::Busy)
    }

    /// Zeroes the recurrent state, so a `{continue: true}` generation starts afresh.
    pub fn reset(&self) -> std::result::Result<(), JsError> {
        match &mut *self.slot.borrow_mut() {
            Slot::Ready(loaded) => {
                reset(loaded);
                Ok(())
            }
            Slot::Empty => Ok(()),
            Slot::Busy => Err(js_error(busy())),
        }
    }
}

impl MambaEngine {
    /// The loaded model, if one is loaded and no generation has it.
    fn loaded_model(&self) -> Option<Arc<Model>> {
        match &*self.slot.borrow() {
            Slot::Ready(loaded) => Some(loaded.model.clone()),
            _ => None,
        }
    }

    fn runner(&self) -> Runner {
        Runner { slot: self.slot.clone(), stop: self.stop.clone(), gpu_error: self.gpu_error.clone() }
    }
}

type BoxFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<serde_json::Value>> + 'a>>;

/// Takes the model out of its slot for one generation and always puts it back.
struct Runner {
    slot: Rc<RefCell<Slot>>,
    stop: Rc<Cell<bool>>,
    gpu_error: Arc<Mutex<Option<String>>>,
}

impl Runner {
    async fn run<F>(self, job: F) -> std::result::Result<JsValue, JsValue>
    where
        F: for<'a> FnOnce(&'a mut Loaded, &'a Cell<bool>, &'a Mutex<Option<String>>) -> BoxFuture<'a>,
    {
        // A statement of its own, so the borrow ends before the arms borrow again.
        let taken = std::mem::replace(&mut *self.slot.borrow_mut(), Slot::Busy);
        let mut loaded = match taken {
            Slot::Ready(loaded) => loaded,
            Slot::Empty => {
                *self.slot.borrow_mut() = Slot::Empty;
                return Err(js_error(Error::invalid("model", "no model loaded: call loadModel() first")).into());
            }
            Slot::Busy => return Err(js_error(busy()).into()),
        };
        self.stop.set(false);
        take_gpu_error(&self.gpu_error);
        let result = job(&mut loaded, &self.stop, &self.gpu_error).await;
        if result.is_err() {
            // The state is unknown after a failed step: the next run starts from zero.
            reset(&mut loaded);
        }
        *self.slot.borrow_mut() = Slot::Ready(loaded);
        result.map(|v| to_js(&v)).map_err(|e| js_error(e).into())
    }
}

fn load(
    ctx: Arc<GpuContext>,
    name: &str,
    config_json: &str,
    weights: Vec<u8>,
    tokenizer_json: Option<&str>,
    progress: Option<&Function>,
) -> Result<Loaded> {
    let tokenizer = tokenizer_json.map(|t| Tokenizer::from_bytes(t.as_bytes(), &format!("{name}/tokenizer.json"))).transpose()?;
    // A zip (PyTorch's pytorch_model.bin, as the state-spaces checkpoints ship) or safetensors.
    let file = if weights.starts_with(b"PK\x03\x04") { "pytorch_model.bin" } else { "model.safetensors" };
    let shards = vec![(format!("{name}/{file}"), ShardBytes::Owned(weights))];
    let ckpt = Checkpoint::from_parts(name, config_json, shards)?;
    let total = ckpt.stored_bytes() as f64;
    let mut report = |done: u64| {
        if let Some(f) = progress {
            // A throwing callback must not abort the load.
            let _ = f.call2(&JsValue::NULL, &JsValue::from_f64(done as f64), &JsValue::from_f64(total));
        }
    };
    // wgpu's web types are not Send on wasm, so neither is Model; Session takes an Arc anyway.
    #[allow(clippy::arc_with_non_send_sync)]
    let model = Arc::new(Model::load(ctx, &ckpt, LoadOptions::default(), &mut report)?);
    drop(ckpt);
    if let Some(tok) = &tokenizer {
        tok.check_fits(model.config.vocab_size)?;
    }
    let session = Session::new(model.clone(), 1)?;
    Ok(Loaded { model, tokenizer, session, history: Vec::new(), pending: None })
}

fn reset(loaded: &mut Loaded) {
    loaded.session.reset();
    loaded.history.clear();
    loaded.pending = None;
}

async fn generate_text(
    loaded: &mut Loaded,
    prompt: String,
    options: GenerateOptions,
    on_token: Option<Function>,
    stop: &Cell<bool>,
    gpu_error: &Mutex<Option<String>>,
) -> Result<serde_json::Value> {
    if !options.continue_ {
        reset(loaded);
    }
    let Loaded { model, tokenizer, session, history, pending } = loaded;
    let tokenizer = tokenizer.as_ref().ok_or_else(|| Error::invalid("prompt", "this model has no tokenizer.json: use generateIds()"))?;
    let mut ids: Vec<u32> = pending.take().into_iter().collect();
    ids.extend(tokenizer.encode(&prompt)?);
    if ids.is_empty() {
        return Err(Error::invalid("prompt", "is empty: type some text to continue"));
    }
    let eos = model.config.eos_ids_or(tokenizer.eos_id());
    let stop_conditions = StopConditions { max_tokens: options.max_tokens, eos, stop_strings: options.stop.clone() };
    let mut gen = Generator::new(session, Sampler::new(options.sampling())?, stop_conditions).with_history(history).with_tokenizer(tokenizer);
    gen.start(&ids).await?;
    check_gpu(gpu_error)?;
    let mut text = String::new();
    loop {
        if stop.get() {
            gen.cancel();
        }
        let Some(piece) = gen.next_text().await? else { break };
        check_gpu(gpu_error)?;
        if !piece.is_empty() {
            emit(on_token.as_ref(), &JsValue::from_str(&piece));
            text.push_str(&piece);
        }
    }
    let (stats, reason) = (gen.stats(), gen.finish_reason());
    *pending = gen.pending_token();
    *history = gen.history().to_vec();
    let generated = history[history.len() - stats.generated_tokens..].to_vec();
    Ok(stats_json(&stats, reason, &generated, Some(text)))
}

async fn generate_ids(
    loaded: &mut Loaded,
    prompt: Vec<u32>,
    options: GenerateOptions,
    on_token: Option<Function>,
    stop: &Cell<bool>,
    gpu_error: &Mutex<Option<String>>,
) -> Result<serde_json::Value> {
    reset(loaded);
    let stop_conditions = StopConditions { max_tokens: options.max_tokens, eos: Vec::new(), stop_strings: Vec::new() };
    let mut gen = Generator::new(&mut loaded.session, Sampler::new(SamplingParams::greedy())?, stop_conditions);
    gen.start(&prompt).await?;
    check_gpu(gpu_error)?;
    let mut generated = Vec::new();
    loop {
        if stop.get() {
            gen.cancel();
        }
        let Some(id) = gen.next_token().await? else { break };
        check_gpu(gpu_error)?;
        emit(on_token.as_ref(), &JsValue::from_f64(id as f64));
        generated.push(id);
    }
    let (stats, reason) = (gen.stats(), gen.finish_reason());
    loaded.pending = gen.pending_token();
    loaded.history = gen.history().to_vec();
    Ok(stats_json(&stats, reason, &generated, None))
}

/// A model of a released shape with random f16 weights (bench::synthetic), on the GPU.
async fn synthetic_model(ctx: Arc<GpuContext>, name: &str) -> Result<Model> {
    let dtype = WeightDtype::F16;
    let source = SyntheticModel { config: synthetic::config_for(name)?, name: name.to_string(), dtype };
    Model::load_checked(ctx, &source, LoadOptions { weight_dtype: Some(dtype), ..Default::default() }, &mut |_| {}).await
}

/// The page's benchmark: what `mamba-wgpu bench` measures per row, in a fresh session.
async fn benchmark(model: Arc<Model>, decode_tokens: usize) -> Result<serde_json::Value> {
    const PROMPT: usize = 64;
    let mut session = Session::new(model.clone(), 1)?;
    let vocab = model.config.vocab_size as u32;
    let prompt: Vec<u32> = (0..PROMPT as u32).map(|i| (i * 31 + 1) % vocab).collect();
    // Prefill: a warm-up run (pipelines, tapes), then the timed one.
    session.prefill_greedy(std::slice::from_ref(&prompt)).await?;
    session.reset();
    let start = now_seconds();
    session.prefill_greedy(std::slice::from_ref(&prompt)).await?;
    let prefill_tokens_per_s = PROMPT as f64 / (now_seconds() - start).max(1e-9);
    let mut decode = Vec::new();
    let mut next = start_decode(&mut session, &[prompt[..16].to_vec()]).await?;
    // Warm-up: one step builds the decode pipelines (a run of k steps records its own tape on
    // the CPU, a small cost here).
    time_decode(&mut session, 1, 1, &mut next).await?;
    for steps in [1, model.ctx.tokens_per_submit()] {
        decode.push(time_decode(&mut session, steps, decode_tokens.div_ceil(steps), &mut next).await?);
    }
    Ok(serde_json::json!({
        "model": model.source,
        "weight_dtype": model.weight_dtype.name(),
        "prefill_tokens_per_s": prefill_tokens_per_s,
        "decode": decode,
        "fixed_costs": fixed_costs(&model.ctx).await?,
    }))
}

fn stats_json(stats: &GenerationStats, reason: Option<FinishReason>, ids: &[u32], text: Option<String>) -> serde_json::Value {
    let mut out = serde_json::json!({
        "ids": ids,
        "prompt_tokens": stats.prompt_tokens,
        "generated_tokens": stats.generated_tokens,
        "finish_reason": reason.map(FinishReason::as_str),
        "prefill_seconds": stats.prefill_seconds,
        "decode_seconds": stats.decode_seconds,
        "prefill_tokens_per_s": stats.prefill_tokens_per_second(),
        "decode_tokens_per_s": stats.decode_tokens_per_second(),
    });
    if let Some(text) = text {
        out["text"] = text.into();
    }
    out
}

/// The prompt for chat `messages` (`[{role, content}, ...]`) through the chat template of a
/// model's `tokenizer_config.json` text (null or no template: the plain transcript, each
/// message and a blank line), as `mamba-wgpu chat` and `serve` render it. With
/// `addGenerationPrompt`, followed by what opens the assistant's reply.
#[wasm_bindgen(js_name = renderChat)]
pub fn render_chat(tokenizer_config: Option<String>, messages: JsValue, add_generation_prompt: bool) -> std::result::Result<String, JsError> {
    let template = match tokenizer_config {
        Some(text) => ChatTemplate::from_tokenizer_config(&text, "tokenizer_config.json").map_err(js_error)?,
        None => ChatTemplate::plain(),
    };
    let json = js_sys::JSON::stringify(&messages).ok().and_then(|s| s.as_string()).unwrap_or_default();
    let messages: Vec<Message> =
        serde_json::from_str(&json).map_err(|e| js_error(Error::invalid("messages", format!("must be a list of {{role, content}} objects: {e}"))))?;
    template.render(&messages, add_generation_prompt).map_err(js_error)
}

fn model_info(loaded: &Loaded) -> JsValue {
    let (m, c) = (&loaded.model, &loaded.model.config);
    to_js(&serde_json::json!({
        "source": m.source,
        "model_type": c.family.model_type(),
        "vocab_size": c.vocab_size,
        "d_model": c.d_model,
        "d_inner": c.d_inner,
        "n_layer": c.n_layer,
        "d_state": c.d_state,
        "weight_dtype": m.weight_dtype.name(),
        "weight_bytes": m.weight_bytes(),
        "has_tokenizer": loaded.tokenizer.is_some(),
    }))
}

/// Calls the page's callback; an exception there is logged, not allowed to end generation.
fn emit(callback: Option<&Function>, value: &JsValue) {
    if let Some(f) = callback {
        if let Err(e) = f.call1(&JsValue::NULL, value) {
            web_sys::console::error_2(&"mamba-wgpu: onToken callback threw".into(), &e);
        }
    }
}

fn take_gpu_error(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

fn check_gpu(slot: &Mutex<Option<String>>) -> Result<()> {
    match take_gpu_error(slot) {
        Some(e) => Err(Error::Gpu(format!("WebGPU reported an error: {e}"))),
        None => Ok(()),
    }
}

fn busy() -> Error {
    Error::invalid("engine", "a generation is running: call stop() and wait for it to end")
}

fn js_error(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A JSON value as a plain JS object.
fn to_js(value: &serde_json::Value) -> JsValue {
    js_sys::JSON::parse(&value.to_string()).unwrap_or(JsValue::NULL)
}
