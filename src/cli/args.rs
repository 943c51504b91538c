//! The command line, declared with clap's derive API. Validation that clap cannot express
//! (value ranges, which prompt form was given) happens in the commands and reports
//! `mamba_wgpu::Error` values, so every bad input ends the same way: `error: ...`, exit 1.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mamba_wgpu::sampling::{SamplingParams, DEFAULT_MAX_TOKENS, GENERATION_DEFAULTS};
use mamba_wgpu::{Error, Result};

#[derive(Parser, Debug)]
#[command(name = "mamba-wgpu", version, about = "Run Mamba language models on any GPU through wgpu")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Continue a prompt: streams the new text (or prints the new token ids)
    Generate(GenerateArgs),
    /// Talk to the model on stdin; the recurrent state is kept between turns
    Chat(ChatArgs),
    /// Measure prefill and decode speed against the adapter's own read bandwidth
    Bench(BenchArgs),
    /// Write a model as a GGUF file (llama.cpp's format), its matrices quantized
    Quantize(QuantizeArgs),
    /// Perplexity of a text file: exp of the mean negative log-likelihood of its tokens
    Perplexity(PerplexityArgs),
    /// An OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions) that keeps
    /// each conversation's state
    Serve(ServeArgs),
    /// Show the GPU adapter wgpu picks and every adapter it can see
    Info {
        /// Pick the adapter: its number in the list, or text its line contains (case-insensitive)
        #[arg(long, value_name = "NAME")]
        adapter: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at start)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Memory for cached conversation states (least recently used ones are dropped first)
    #[arg(long, default_value_t = 512, value_name = "MB")]
    pub state_cache_mb: usize,
    /// Requests that generate at the same time: the batch of the decoding session
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// Requests that may wait for a turn; more are refused with 503
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub queue: usize,
    /// Longest prompt accepted, in tokens
    #[arg(long, default_value_t = 65536, value_name = "N")]
    pub max_prompt_tokens: usize,
    /// Largest request body accepted, in bytes
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub max_body_bytes: usize,
}

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The UTF-8 text to score
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Reset the state every N tokens (the first token of each window is then not scored).
    /// Default: the state carries across the whole file
    #[arg(long, value_name = "N")]
    pub context: Option<usize>,
    /// Print only `{"perplexity": ..., "tokens": ...}` on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The 130m shape only, a short prompt: under a minute on a software device
    #[arg(long)]
    pub quick: bool,
    /// Synthetic model shapes to run (mamba-130m, -370m, -790m, -1.4b, -2.8b; mamba2-130m,
    /// -370m, -780m, -1.3b, -2.7b; falcon-mamba-7b); repeatable. Default: all but the 7B
    /// shape (with --quick: mamba-130m)
    #[arg(long = "shape", value_name = "NAME")]
    pub shapes: Vec<String>,
    /// Weight storage to measure; repeatable. Default: f32 and f16 (--quick: f16)
    #[arg(long = "dtype", value_enum, value_name = "TYPE")]
    pub dtypes: Vec<DtypeArg>,
    /// Batch sizes; repeatable. Default: 1 and 8 (with --quick: 1)
    #[arg(long = "batch", value_name = "B")]
    pub batches: Vec<usize>,
    /// Prompt lengths for prefill; repeatable. Default: 128, 512, 2048, 8192 (--quick: 64)
    #[arg(long = "prompt-len", value_name = "L")]
    pub prompt_lens: Vec<usize>,
    /// Benchmark this checkpoint folder (or GGUF file) instead of synthetic shapes
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Pick the GPU adapter: its number in `mamba-wgpu info`'s list, or text its line contains
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// Also write the figures as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json), GGUF file (llama.cpp's
    /// format, tokenizer embedded) or Hugging Face repo id (owner/name, read from the local
    /// Hugging Face cache). Default: the built-in shakespeare-mamba model
    #[arg(long, short = 'm', value_name = "DIR|FILE.gguf|REPO_ID")]
    pub model: Option<String>,
    /// Tokenizer file (a `tokenizers` tokenizer.json) to use instead of the model's own (or the
    /// GGUF file's); the state-spaces checkpoints ship none (theirs is EleutherAI/gpt-neox-20b's)
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Pick the GPU adapter: its number in `mamba-wgpu info`'s list, or text its line contains
    /// (a name, or a backend such as vulkan or gl)
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// Storage of the weight matrices on the GPU. Default: the checkpoint's own (bf16 becomes
    /// f16). A block format quantizes as the model loads, the output matrix in q6_k (q8_0
    /// for q8_0) as llama.cpp does
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// With a block format --dtype: the output matrix's storage (the LM head, or the embedding
    /// tied to it)
    #[arg(long, value_enum, value_name = "DTYPE")]
    pub output_dtype: Option<DtypeArg>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DtypeArg {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_k")]
    Q4K,
    #[value(name = "q5_k")]
    Q5K,
    #[value(name = "q6_k")]
    Q6K,
}

impl From<DtypeArg> for mamba_wgpu::WeightDtype {
    fn from(d: DtypeArg) -> Self {
        use mamba_wgpu::quant::BlockFormat;
        use mamba_wgpu::WeightDtype;
        match d {
            DtypeArg::F32 => WeightDtype::F32,
            DtypeArg::F16 => WeightDtype::F16,
            DtypeArg::Q8_0 => WeightDtype::Block(BlockFormat::Q8_0),
            DtypeArg::Q4_0 => WeightDtype::Block(BlockFormat::Q4_0),
            DtypeArg::Q4K => WeightDtype::Block(BlockFormat::Q4K),
            DtypeArg::Q5K => WeightDtype::Block(BlockFormat::Q5K),
            DtypeArg::Q6K => WeightDtype::Block(BlockFormat::Q6K),
        }
    }
}

#[derive(Args, Debug)]
pub struct SamplingArgs {
    /// Most new tokens to generate (per reply in chat); 0 only reads the prompt
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS, value_name = "N")]
    pub max_tokens: usize,
    /// Softmax temperature; 0 picks the most likely token after the repetition penalty
    #[arg(long, default_value_t = GENERATION_DEFAULTS.temperature, allow_negative_numbers = true, value_name = "T")]
    pub temperature: f32,
    /// Plain argmax decoding: temperature 0 and every filter off (no repetition penalty)
    #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p", "min_p", "repetition_penalty"])]
    pub greedy: bool,
    /// Keep only the K most likely tokens; 0 disables
    #[arg(long, default_value_t = GENERATION_DEFAULTS.top_k, value_name = "K")]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probabilities reach P; 1 disables
    #[arg(long, default_value_t = GENERATION_DEFAULTS.top_p, allow_negative_numbers = true, value_name = "P")]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one; 0 disables
    #[arg(long, default_value_t = GENERATION_DEFAULTS.min_p, allow_negative_numbers = true, value_name = "P")]
    pub min_p: f32,
    /// Penalty for tokens seen in the last --repetition-window tokens; 1 disables
    #[arg(long, default_value_t = GENERATION_DEFAULTS.repetition_penalty, allow_negative_numbers = true, value_name = "R")]
    pub repetition_penalty: f32,
    /// How many recent tokens the repetition penalty looks at
    #[arg(long, default_value_t = GENERATION_DEFAULTS.repetition_window, value_name = "N")]
    pub repetition_window: usize,
    /// Seed of the sampler's random generator: the same seed, prompt and options give the same
    /// text. The default is the fixed seed 0, so runs are reproducible unless you change it
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Stop when the output contains this text (not printed); repeatable. `\n`, `\t` and `\\`
    /// are unescaped. Text prompts only
    #[arg(long = "stop", value_name = "STR")]
    pub stop: Vec<String>,
    /// Most tokens decoded per submit to the GPU (sampled there, no round trip between them):
    /// 16 on a GPU and 8 on a CPU device unless set. The text does not depend on it
    #[arg(long, value_name = "K")]
    pub tokens_per_submit: Option<usize>,
}

impl SamplingArgs {
    /// --tokens-per-submit, range-checked (1 to the most decode steps one submit runs).
    pub fn tokens_per_submit(&self) -> Result<Option<usize>> {
        use mamba_wgpu::ops::sample::MAX_STEPS;
        match self.tokens_per_submit {
            Some(k) if !(1..=MAX_STEPS).contains(&k) => Err(Error::invalid("--tokens-per-submit", format!("{k}: must be in 1..={MAX_STEPS}"))),
            k => Ok(k),
        }
    }

    /// The sampler settings, range-checked; errors name the flag (`--top-p`), not the field.
    pub fn params(&self) -> Result<SamplingParams> {
        let params = if self.greedy {
            SamplingParams { seed: self.seed, ..SamplingParams::greedy() }
        } else {
            SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repetition_penalty: self.repetition_penalty,
                repetition_window: self.repetition_window,
                seed: self.seed,
            }
        };
        params.validate().map_err(|e| match e {
            Error::InvalidArgument { name, reason } => Error::InvalidArgument { name: format!("--{}", name.replace('_', "-")), reason },
            other => other,
        })?;
        Ok(params)
    }

    pub fn stop_strings(&self) -> Result<Vec<String>> {
        let stops: Vec<String> = self.stop.iter().map(|s| unescape(s)).collect();
        if stops.iter().any(|s| s.is_empty()) {
            return Err(Error::invalid("--stop", "a stop string must not be empty"));
        }
        Ok(stops)
    }
}

/// `\n`, `\t`, `\r` and `\\` as typed in a shell become the characters; other backslashes stay.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("input").args(["prompt", "prompt_file", "prompt_ids"]).multiple(false))]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt text
    #[arg(long, short = 'p', value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Read the prompt text from a UTF-8 file
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// The prompt as token ids (`1,2,3` or `"1 2 3"`); prints token ids instead of text and
    /// does not stop at EOS
    #[arg(long, value_name = "IDS")]
    pub prompt_ids: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print the prompt (text, or ids in ids mode) before the new output
    #[arg(long)]
    pub echo_prompt: bool,
    /// Print one JSON object (ids, text, speeds, adapter) instead of plain output
    #[arg(long)]
    pub json: bool,
    /// After the run, save the recurrent state (prompt + generated tokens) to FILE
    #[arg(long, value_name = "FILE")]
    pub save_state: Option<PathBuf>,
    /// Start from a state saved with --save-state (same model); the prompt continues it
    #[arg(long, value_name = "FILE")]
    pub load_state: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_handles_common_escapes() {
        assert_eq!(unescape(r"\n\n"), "\n\n");
        assert_eq!(unescape(r"a\tb\\c\q"), "a\tb\\c\\q");
        assert_eq!(unescape("trailing\\"), "trailing\\");
    }
}

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Model folder (config.json + safetensors) or Hugging Face repo id; default: the built-in model
    #[arg(long)]
    pub model: Option<String>,
    /// Tokenizer file (tokenizer.json) to embed instead of the model's own
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Storage of the matrices: a block format (the output matrix in q6_k, q8_0 for q8_0, as
    /// llama.cpp does; q4_k_m and q5_k_m are llama.cpp's medium mixes, which for Mamba's tensors
    /// are the same), or f16 / f32
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: QuantizeType,
    /// The output matrix's storage (the LM head, or the embedding tied to it)
    #[arg(long, value_enum, value_name = "TYPE")]
    pub output_type: Option<QuantizeType>,
    /// The GGUF file to write
    #[arg(long, value_name = "FILE.gguf")]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum QuantizeType {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_k")]
    Q4K,
    #[value(name = "q4_k_m")]
    Q4KM,
    #[value(name = "q5_k")]
    Q5K,
    #[value(name = "q5_k_m")]
    Q5KM,
    #[value(name = "q6_k")]
    Q6K,
}
