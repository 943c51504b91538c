// The demo page: loads the engine (the `mamba-wgpu` npm package), a model (served next to the
// page or picked from disk), and streams generated text. Plain ES module, no framework.
//
// URL parameters (all optional):
//   model=PATH          model folder relative to this page (default models/shakespeare-mamba)
//   saved=NAME          a GGUF file kept in this browser's storage (OPFS) by an earlier visit
//   tokenizer=PATH      a tokenizer.json to use instead of the model folder's own (the
//                       state-spaces checkpoints ship none); picked files may include one too
//   prompt=TEXT         prompt text; prompt_ids=1,2,3 runs ids mode (output = the new ids)
//   max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed
//   autorun=1           start generating as soon as the model is loaded
//   chat=1              send the prompt as a chat message, through the model's chat template
//   bench=1             benchmark mode: once the model is loaded, measure decode (one token per
//                       submit and the adapter's tokens per submit) and prefill on it and on a
//                       synthetic model of the mamba-130m shape (bench_shape=NAME for another,
//                       bench_tokens=N tokens per measurement); the JSON goes into #bench and
//                       <body data-status="bench-done">
// When a run ends, <body data-status="done"> (or "error", with the message in #error); the
// generated text, without the prompt, is the text content of #output. <body data-run> counts
// the runs started.

// 'mamba-wgpu' is the npm package web/build.sh makes (web/dist/npm/); index.html's import map
// points the name at it, as an app's bundler or import map would at node_modules/mamba-wgpu.
import init, { MambaEngine, fetchModel, loadGguf, readModelFiles, renderChat } from 'mamba-wgpu';

const DEFAULT_MODEL = 'models/shakespeare-mamba';
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

const ui = {
  form: $('form'), prompt: $('prompt'), promptLabel: $('prompt-label'),
  maxTokens: $('max-tokens'), temperature: $('temperature'), topK: $('top-k'), topP: $('top-p'), seed: $('seed'), chat: $('chat'),
  generate: $('generate'), stop: $('stop'), stats: $('stats'),
  echo: $('echo'), output: $('output'), error: $('error'),
  progress: $('progress'), progressText: $('progress-text'),
  modelName: $('model-name'), modelDetails: $('model-details'), adapter: $('adapter'),
  folderInput: $('folder-input'), filesInput: $('files-input'), noWebgpu: $('no-webgpu'),
  keep: $('keep-model'), saved: $('saved-models'), loadSaved: $('load-saved'),
};

let engine = null;
let model = null; // modelInfo() of the loaded model
let idsMode = false; // prompt and output are token ids
let running = false;

function setStatus(status) {
  document.body.dataset.status = status;
}

function showError(error) {
  const message = error instanceof Error ? error.message : String(error);
  console.error('mamba-wgpu:', message);
  ui.error.textContent = message;
  ui.error.hidden = false;
  setStatus('error');
}

function clearError() {
  ui.error.textContent = '';
  ui.error.hidden = true;
}

function setProgress(fraction, text) {
  if (fraction === null) ui.progress.removeAttribute('value');
  else ui.progress.value = Math.max(0, Math.min(1, fraction));
  ui.progressText.textContent = text;
}

const mb = (bytes) => `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;

/** Lets the browser paint before a long synchronous step (the GPU upload). */
const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

/** Loads a model from the page's server: config.json, model.safetensors, tokenizer.json. */
async function loadFromUrl(base) {
  const dir = base.replace(/\/+$/, '');
  setProgress(0, `Fetching ${dir}…`);
  let files;
  try {
    files = await fetchModel(dir, {
      tokenizer: params.get('tokenizer') ?? undefined,
      onProgress: (done, total) =>
        setProgress(total ? done / total : null, `Downloading weights: ${mb(done)}${total ? ` of ${mb(total)}` : ''}`),
    });
  } catch (error) {
    throw new Error(`${error.message}. You can also open a model folder from disk.`);
  }
  await upload(files);
}

/** Loads a GGUF file (picked, or from the browser's storage) tensor by tensor: never whole in memory. */
async function loadFromGguf(file, tokenizer = null) {
  tokenizerConfig = null;
  model = null;
  updateButtons();
  ui.modelName.textContent = file.name;
  ui.modelDetails.textContent = 'loading…';
  setProgress(0, `Reading ${file.name}…`);
  const t0 = performance.now();
  try {
    model = await loadGguf(engine, file, {
      tokenizer,
      onProgress: (done, total) => setProgress(total ? done / total : null, `Uploading ${mb(done)} of ${mb(total)} to the GPU…`),
    });
  } catch (error) {
    ui.modelDetails.textContent = 'not loaded';
    throw error;
  }
  showModel((performance.now() - t0) / 1000);
}

/** The browser's own storage for models (the Origin Private File System), or null. */
async function storageRoot() {
  try {
    return await navigator.storage?.getDirectory?.() ?? null;
  } catch {
    return null;
  }
}

/** Copies a picked GGUF file into the browser's storage, for the next visit (?saved=NAME). */
async function keepInBrowser(file) {
  const root = await storageRoot();
  if (!root || !ui.keep.checked) return;
  setProgress(null, `Keeping ${file.name} in this browser's storage…`);
  const handle = await root.getFileHandle(file.name, { create: true });
  const writable = await handle.createWritable();
  await writable.write(file); // streamed from disk by the browser
  await writable.close();
  document.body.dataset.saved = file.name;
  await listSaved();
  setProgress(1, `Ready; ${file.name} is kept in this browser (Load saved)`);
}

/** Fills the saved-models list with the GGUF files in the browser's storage. */
async function listSaved() {
  const root = await storageRoot();
  const names = [];
  if (root) for await (const [name, handle] of root.entries()) if (handle.kind === 'file' && name.endsWith('.gguf')) names.push(name);
  ui.saved.replaceChildren(...names.sort().map((n) => new Option(n, n)));
  ui.saved.hidden = ui.loadSaved.hidden = names.length === 0;
}

async function loadSaved(name) {
  const root = await storageRoot();
  if (!root) throw new Error('this browser has no storage for models (OPFS)');
  const handle = await root.getFileHandle(name).catch(() => {
    throw new Error(`${name} is not in this browser's storage`);
  });
  await loadFromGguf(await handle.getFile());
}

/** Loads a model from files the visitor picked (a folder or single files; or one .gguf file). */
async function loadFromFiles(fileList) {
  const gguf = [...fileList].find((f) => f.name.endsWith('.gguf'));
  if (gguf) {
    const tokenizerFile = [...fileList].find((f) => f.name === 'tokenizer.json');
    await loadFromGguf(gguf, tokenizerFile ? await tokenizerFile.text() : null);
    await keepInBrowser(gguf);
    return;
  }
  setProgress(0, 'Reading the picked files…');
  const files = await readModelFiles(fileList, {
    onProgress: (done, total) => setProgress(total ? done / total : null, `Reading weights: ${mb(done)} of ${mb(total)}`),
  });
  await upload(files);
}

/** The loaded model's tokenizer_config.json text (its chat template), or null. */
let tokenizerConfig = null;

/** Uploads fetched or picked model files ({name, config, weights, tokenizer, tokenizerConfig}) to the GPU. */
async function upload({ name, config, weights, tokenizer, tokenizerConfig: chatConfig }) {
  tokenizerConfig = chatConfig ?? null;
  model = null;
  updateButtons();
  ui.modelName.textContent = name;
  ui.modelDetails.textContent = 'loading…';
  setProgress(null, `Uploading ${mb(weights.length)} to the GPU…`);
  await nextFrame();
  const t0 = performance.now();
  try {
    model = await engine.loadModel(config, weights, tokenizer, (done, total) => {
      ui.progress.value = total ? done / total : 0;
    }, name);
  } catch (error) {
    ui.modelDetails.textContent = 'not loaded';
    throw error;
  }
  showModel((performance.now() - t0) / 1000);
}

function showModel(seconds) {
  setProgress(1, `Ready (uploaded in ${seconds.toFixed(1)} s)`);
  ui.modelDetails.textContent = `${model.model_type} · ${model.n_layer} layers · d_model ${model.d_model} · vocab ${model.vocab_size} · ` +
    `${model.weight_dtype} · ${mb(model.weight_bytes)}${model.has_tokenizer ? '' : ' · no tokenizer: ids only'}`;
  setIdsMode(!model.has_tokenizer || params.has('prompt_ids'));
  updateButtons();
}

function setIdsMode(on) {
  idsMode = on;
  ui.promptLabel.textContent = on ? 'Prompt token ids (comma or space separated)' : 'Prompt';
}

function updateButtons() {
  ui.generate.disabled = !model || running;
  ui.stop.disabled = !running;
  ui.folderInput.disabled = ui.filesInput.disabled = ui.loadSaved.disabled = !engine || running;
}

function parseIds(text) {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  const ids = parts.map(Number);
  const bad = parts.find((p, i) => !Number.isInteger(ids[i]) || ids[i] < 0);
  if (bad !== undefined) throw new Error(`\`${bad}\` is not a token id (a non-negative integer)`);
  if (ids.length === 0) throw new Error('the prompt is empty: give at least one token id');
  return ids;
}

function number(input, fallback) {
  const value = Number(input.value);
  return input.value === '' || !Number.isFinite(value) ? fallback : value;
}

/** Sampling options: the form's fields, plus any other option given in the URL. */
function readOptions() {
  const options = {
    max_tokens: Math.max(0, Math.floor(number(ui.maxTokens, 200))),
    temperature: number(ui.temperature, 0.8),
    top_k: Math.max(0, Math.floor(number(ui.topK, 40))),
    top_p: number(ui.topP, 0.95),
    seed: Math.max(0, Math.floor(number(ui.seed, 0))),
  };
  for (const key of ['min_p', 'repetition_penalty']) {
    if (params.has(key)) options[key] = Number(params.get(key));
  }
  if (params.has('repetition_window')) options.repetition_window = Math.floor(Number(params.get('repetition_window')));
  return options;
}

function formatRate(rate) {
  return rate == null ? '–' : rate.toFixed(rate < 10 ? 2 : 1);
}

function showStats(stats) {
  ui.stats.textContent = `${stats.prompt_tokens} prompt + ${stats.generated_tokens} new tokens · ` +
    `prefill ${formatRate(stats.prefill_tokens_per_s)} tok/s · decode ${formatRate(stats.decode_tokens_per_s)} tok/s · ` +
    `stop: ${stats.finish_reason ?? '–'}`;
}

async function run() {
  if (!engine || !model || running) return;
  clearError();
  running = true;
  updateButtons();
  document.body.dataset.run = String(Number(document.body.dataset.run || 0) + 1);
  setStatus('running');
  ui.output.textContent = '';
  ui.stats.textContent = 'Generating…';
  document.body.classList.add('generating');
  try {
    const options = readOptions();
    let stats;
    if (idsMode) {
      const ids = parseIds(ui.prompt.value);
      ui.echo.textContent = '';
      let count = 0;
      stats = await engine.generateIds(Uint32Array.from(ids), options.max_tokens, (id) => {
        ui.output.append(count++ === 0 ? String(id) : ` ${id}`);
      });
    } else {
      // Chat: the prompt as a user message, through the model's chat template.
      const prompt = ui.chat.checked ? renderChat(tokenizerConfig, [{ role: 'user', content: ui.prompt.value }], true) : ui.prompt.value;
      ui.echo.textContent = prompt;
      stats = await engine.generate(prompt, options, (piece) => ui.output.append(piece));
    }
    ui.output.normalize();
    showStats(stats);
    setStatus('done');
  } catch (error) {
    ui.stats.textContent = '';
    showError(error);
  } finally {
    running = false;
    document.body.classList.remove('generating');
    updateButtons();
  }
}

async function pickFiles(event) {
  const files = event.target.files;
  if (!files || files.length === 0 || running) return;
  clearError();
  setStatus('loading');
  try {
    await loadFromFiles(files);
    setStatus('ready');
  } catch (error) {
    setProgress(0, 'Loading failed');
    showError(error);
  } finally {
    event.target.value = '';
  }
}

function fillFormFromUrl() {
  const fields = { max_tokens: ui.maxTokens, temperature: ui.temperature, top_k: ui.topK, top_p: ui.topP, seed: ui.seed };
  for (const [key, input] of Object.entries(fields)) {
    if (params.has(key)) input.value = params.get(key);
  }
  ui.chat.checked = params.get('chat') === '1';
  if (params.has('prompt_ids')) ui.prompt.value = params.get('prompt_ids');
  else if (params.has('prompt')) ui.prompt.value = params.get('prompt');
}

async function main() {
  fillFormFromUrl();
  ui.form.addEventListener('submit', (event) => { event.preventDefault(); run(); });
  ui.prompt.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); run(); }
  });
  ui.stop.addEventListener('click', () => engine?.stop());
  ui.folderInput.addEventListener('change', pickFiles);
  ui.filesInput.addEventListener('change', pickFiles);
  ui.loadSaved.addEventListener('click', async () => {
    if (running || !ui.saved.value) return;
    clearError();
    setStatus('loading');
    try {
      await loadSaved(ui.saved.value);
      setStatus('ready');
    } catch (error) {
      setProgress(0, 'Loading failed');
      showError(error);
    }
  });
  updateButtons();

  // The engine asks for the same adapter; asking here first tells "no WebGPU" apart from
  // "WebGPU without a usable adapter" and gives the adapter's name (wgpu leaves it empty on the web).
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null) : null;
  if (!adapter) {
    ui.noWebgpu.hidden = false;
    setProgress(0, 'WebGPU unavailable');
    showError(navigator.gpu
      ? 'This browser has WebGPU but offers no adapter (the GPU may be blocklisted, or WebGPU disabled in the browser settings).'
      : 'WebGPU is not available in this browser (navigator.gpu is missing); see the note above for browsers that have it.');
    return;
  }
  try {
    setProgress(null, 'Loading the engine…');
    await init();
    engine = await MambaEngine.create();
    window.mambaEngine = engine; // for the console
    const a = engine.adapterInfo();
    const info = adapter.info || {};
    const name = a.name || [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unnamed adapter';
    const fallback = adapter.isFallbackAdapter || info.isFallbackAdapter ? ', software fallback' : '';
    ui.adapter.textContent = `${name} (${a.backend}, ${a.device_type}${fallback}${a.shader_f16 ? ', shader-f16' : ''})`;
    updateButtons();
    await listSaved();
    if (params.has('saved')) await loadSaved(params.get('saved'));
    else await loadFromUrl(params.get('model') || DEFAULT_MODEL);
    setStatus('ready');
  } catch (error) {
    setProgress(0, 'Loading failed');
    showError(error);
    return;
  }
  if (params.get('bench') === '1') await benchmark();
  else if (params.get('autorun') === '1') await run();
}

/** The page's benchmark mode (?bench=1): engine.benchmark() on the loaded model and on a
 * synthetic shape; the JSON is shown in #bench. */
async function benchmark() {
  const tokens = Number(params.get('bench_tokens') || 32);
  const shape = params.get('bench_shape') || 'mamba-130m';
  const out = $('bench');
  out.hidden = false;
  try {
    setStatus('bench');
    setProgress(null, 'Benchmark: the loaded model…');
    const results = { adapter: ui.adapter.textContent, loaded: await engine.benchmark(null, tokens) };
    out.textContent = JSON.stringify(results, null, 2);
    setProgress(null, `Benchmark: a synthetic ${shape}…`);
    await nextFrame();
    results.synthetic = await engine.benchmark(shape, Math.max(1, Math.floor(tokens / 4)));
    out.textContent = JSON.stringify(results, null, 2);
    setProgress(1, 'Benchmark done');
    setStatus('bench-done');
  } catch (error) {
    showError(error);
  }
}

main();
