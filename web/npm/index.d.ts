// Types of the `mamba-wgpu` package: Mamba language models on the browser's WebGPU.

/** What `init()` accepts: where the wasm is, its response or bytes, or a compiled module. */
export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

/**
 * Loads and instantiates the wasm module. Without an argument it is fetched from next to this
 * module (`new URL('./mamba_wgpu_bg.wasm', import.meta.url)`, which bundlers understand). Safe to
 * call more than once. `MambaEngine.create()` calls it when the app has not.
 */
export default function init(input?: InitInput | Promise<InitInput> | { module_or_path: InitInput | Promise<InitInput> }): Promise<void>;

/** Receives `(done, total)`: bytes uploaded (`loadModel`) or read (`fetchModel`, `readModelFiles`); `total` is 0 when unknown. */
export type ProgressCallback = (done: number, total: number) => void;

/** Receives each new piece of text, never half a character. */
export type TextCallback = (piece: string) => void;

/** Receives each new token id. */
export type IdCallback = (id: number) => void;

/** The WebGPU adapter the engine runs on (`engine.adapterInfo()`). */
export interface AdapterInfo {
  /** Often empty in browsers, which hide the adapter's name. */
  name: string;
  /** wgpu's backend, `"BrowserWebGpu"` in a browser. */
  backend: string;
  /** wgpu's device type, e.g. `"DiscreteGpu"`, `"IntegratedGpu"`, `"Cpu"`, `"Other"`. */
  device_type: string;
  driver: string;
  /** Whether the device has WebGPU's `shader-f16` feature. */
  shader_f16: boolean;
  max_storage_binding_bytes: number;
  max_buffer_bytes: number;
  max_workgroup_storage_bytes: number;
}

/** The loaded model (`loadModel()`'s result, `engine.modelInfo()`). */
export interface ModelInfo {
  /** The `name` given to `loadModel`. */
  source: string;
  /** `"mamba"` (Mamba-1), `"falcon_mamba"` or `"mamba2"`. */
  model_type: 'mamba' | 'falcon_mamba' | 'mamba2' | (string & {});
  vocab_size: number;
  d_model: number;
  d_inner: number;
  n_layer: number;
  d_state: number;
  /** How the mixer's matrices are stored on the GPU: `"f32"`, `"f16"`, or a GGUF block format. */
  weight_dtype: 'f32' | 'f16' | 'q8_0' | 'q4_0' | 'q4_k' | 'q5_k' | 'q6_k' | (string & {});
  /** Bytes of weights on the GPU. */
  weight_bytes: number;
  /** False without a tokenizer.json: then only `generateIds` works. */
  has_tokenizer: boolean;
}

/**
 * Options of `generate()`. Every field is optional; the defaults are the CLI's, so
 * `{ temperature: 0 }` gives what `mamba-wgpu generate --temperature 0` prints. An unknown field
 * is an error.
 */
export interface GenerateOptions {
  /** New tokens at most (default 200). */
  max_tokens?: number;
  /** 0 is greedy (default 0.8). */
  temperature?: number;
  /** Keep the k most likely tokens; 0 keeps all (default 40). */
  top_k?: number;
  /** Nucleus sampling: keep the most likely tokens up to this probability mass; 1 keeps all (default 0.95). */
  top_p?: number;
  /** Drop tokens less likely than this fraction of the most likely one; 0 keeps all (default 0.05). */
  min_p?: number;
  /** Penalty of tokens seen in the last `repetition_window` tokens (positive logits divided by it, negative ones multiplied); 1 is none (default 1.1). */
  repetition_penalty?: number;
  /** Tokens the repetition penalty looks back over (default 64). */
  repetition_window?: number;
  /** Seed of the sampler: the same seed, prompt and options give the same text (default 0). */
  seed?: number;
  /** Texts that end generation when generated (they are not returned). */
  stop?: string[];
  /** Continue from the state the last generation left instead of starting afresh (default false). */
  continue?: boolean;
}

/** Why a generation ended. */
export type FinishReason = 'eos' | 'max-tokens' | 'stop-string' | 'cancelled';

/** What `generateIds()` resolves to. */
export interface GenerationResult {
  /** The new token ids. */
  ids: number[];
  prompt_tokens: number;
  generated_tokens: number;
  /** `"cancelled"` after `stop()`, `"max-tokens"` when `max_tokens` were generated. */
  finish_reason: FinishReason | null;
  prefill_seconds: number;
  decode_seconds: number;
  /** Null when there was nothing to time. */
  prefill_tokens_per_s: number | null;
  decode_tokens_per_s: number | null;
}

/** What `generate()` resolves to. */
export interface TextGenerationResult extends GenerationResult {
  /** The new text, without the prompt (all the pieces `onToken` received). */
  text: string;
}

/** Decode at one number of tokens per submit, as `benchmark()` measured it. */
export interface DecodeRate {
  tokens_per_submit: number;
  tokens_per_s: number;
  /** Compute dispatches per decode step, the sampling step included. */
  dispatches_per_token: number;
}

/** What `benchmark()` resolves to. */
export interface BenchmarkResult {
  /** The model's source (a folder name, or the synthetic shape's name). */
  model: string;
  weight_dtype: string;
  /** A 64-token prompt. */
  prefill_tokens_per_s: number;
  /** One token per submit, then the adapter's tokens per submit. */
  decode: DecodeRate[];
  /** A submit's round trip (no work, 4 bytes read back) and one empty dispatch, in ms. */
  fixed_costs: { round_trip_ms: number; empty_dispatch_ms: number };
}

/** A model's files read into memory, ready for `engine.loadModel()`. */
export interface ModelFiles {
  /** The folder's URL or name, for messages. */
  name: string;
  /** config.json's text. */
  config: string;
  /** The bytes of model.safetensors (or pytorch_model.bin). */
  weights: Uint8Array;
  /** tokenizer.json's text, or null when the model has none. */
  tokenizer: string | null;
  /** tokenizer_config.json's text (its chat template, for `renderChat`), or null. */
  tokenizerConfig: string | null;
}

/** A chat message. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

/**
 * The prompt for chat `messages`, through the chat template of a model's tokenizer_config.json
 * text (null, or a config without a template: the plain transcript, each message followed by a
 * blank line), rendered as `mamba-wgpu chat` and `mamba-wgpu serve` render it. With
 * `addGenerationPrompt`, followed by what opens the assistant's reply. Throws on a template
 * that fails (e.g. its `raise_exception`).
 */
export function renderChat(tokenizerConfig: string | null, messages: ChatMessage[], addGenerationPrompt: boolean): string;

export interface LoadGgufOptions {
  /** Follows the bytes read from the file and uploaded. */
  onProgress?: ProgressCallback;
  /** A tokenizer.json text to use instead of the one the file embeds. */
  tokenizer?: string | null;
}

/**
 * Loads a GGUF file (a File or Blob, e.g. from `<input type="file">` or the Origin Private File
 * System) tensor by tensor: its header from the first bytes, then each tensor's slice, uploaded
 * before the next is read, so the file is never whole in memory. Resolves to `ModelInfo`.
 */
export function loadGguf(engine: MambaEngine, file: Blob & { name?: string }, options?: LoadGgufOptions): Promise<ModelInfo>;

export interface FetchModelOptions {
  /** Follows the download of the weights. */
  onProgress?: ProgressCallback;
  /** A tokenizer.json URL to use instead of the folder's own; `false`: none. */
  tokenizer?: string | URL | false;
  /** The weights' file name in the folder (default `"model.safetensors"`). */
  weights?: string;
  /** Aborts the downloads. */
  signal?: AbortSignal;
}

export interface ReadModelFilesOptions {
  /** Follows the reading of the weights. */
  onProgress?: ProgressCallback;
}

/**
 * Fetches a model folder served over HTTP (relative URLs resolve against the page):
 * `config.json`, `model.safetensors` and `tokenizer.json` (a 404 there means an ids-only model).
 * Rejects with an `Error` naming the URL that failed.
 */
export function fetchModel(url: string | URL, options?: FetchModelOptions): Promise<ModelFiles>;

/**
 * Reads a model from files the visitor picked (`<input type="file" webkitdirectory>` or
 * `multiple`): `config.json`, `model.safetensors` or `pytorch_model.bin`, and `tokenizer.json`
 * when present. In a folder, the shallowest file of each name wins. Rejects with an `Error`
 * saying what is missing.
 */
export function readModelFiles(files: FileList | Iterable<File>, options?: ReadModelFilesOptions): Promise<ModelFiles>;

/**
 * The engine: one WebGPU device, at most one model, one generation at a time. Methods that
 * touch the GPU return promises and never block the page; failures reject with an `Error`
 * whose message says what went wrong (e.g. ``invalid argument `options`: unknown field ...``).
 */
export class MambaEngine {
  private constructor();
  /**
   * Opens the browser's WebGPU adapter (high performance) and a device on it. Rejects when the
   * browser has no WebGPU or no adapter. Calls `init()` first when the app has not.
   */
  static create(): Promise<MambaEngine>;
  /** The adapter in use. */
  adapterInfo(): AdapterInfo;
  /**
   * Uploads a model: config.json's text, the weights' bytes (safetensors, F32/F16/BF16, one
   * file; or a PyTorch pytorch_model.bin), and tokenizer.json's text (or null: then only
   * `generateIds` works). `onProgress(done, total)` follows the bytes uploaded; `name` labels
   * error messages. Replaces the model loaded before. Rejects while a generation runs.
   */
  loadModel(config: string, weights: Uint8Array | number[], tokenizer?: string | null, onProgress?: ProgressCallback | null, name?: string | null): Promise<ModelInfo>;
  /**
   * Starts loading a GGUF file from its first bytes (`name` labels errors; the model loaded
   * before is freed). `{need}`: the header goes on past the prefix, call again with at least
   * `need` bytes. Else the tensors' slices of the file, `[name, offset, length]` in file order:
   * pass each to `ggufTensor`, then call `ggufFinish`. `loadGguf` does all of it for a File.
   */
  ggufOpen(prefix: Uint8Array, name: string): { need: number } | { tensors: [string, number, number][]; bytes: number };
  /** One tensor's bytes of the file `ggufOpen` started; a matrix goes to the GPU at once. */
  ggufTensor(name: string, bytes: Uint8Array): void;
  /** The model, once every tensor was given, with the file's tokenizer or `tokenizer` (tokenizer.json text) instead. */
  ggufFinish(tokenizer?: string | null): Promise<ModelInfo>;
  /** The loaded model, or null. */
  modelInfo(): ModelInfo | null;
  /**
   * Continues `prompt` (needs a tokenizer), streaming the new text to `onToken` piece by piece.
   * Starts from a zero state unless `options.continue`. Rejects while another generation runs.
   */
  generate(prompt: string, options?: GenerateOptions | null, onToken?: TextCallback | null): Promise<TextGenerationResult>;
  /**
   * Greedy continuation of token ids (no tokenizer needed, no end-of-sequence stop): exactly
   * `maxTokens` argmax steps, like `mamba-wgpu generate --prompt-ids --greedy`. Streams each new
   * id to `onToken`.
   */
  generateIds(ids: Uint32Array | number[], maxTokens: number, onToken?: IdCallback | null): Promise<GenerationResult>;
  /**
   * Measures decode as generation runs it (sampled on the GPU) at one token per submit and at
   * the adapter's tokens per submit, `decodeTokens` tokens each, and a 64-token prefill: on the
   * loaded model, or with `shape` (a released shape such as `"mamba-130m"`) on a synthetic model
   * of that shape with random f16 weights. The loaded model's state is left as it was.
   */
  benchmark(shape: string | null, decodeTokens: number): Promise<BenchmarkResult>;
  /** Ends the running generation before its next token; its promise resolves with `finish_reason: "cancelled"`. */
  stop(): void;
  /** True while a generation runs. */
  isBusy(): boolean;
  /** Zeroes the recurrent state, so the next `{continue: true}` generation starts afresh. Throws while a generation runs. */
  reset(): void;
  /** Frees the engine's wasm memory and GPU resources now (otherwise the garbage collector does). */
  free(): void;
  [Symbol.dispose](): void;
}
