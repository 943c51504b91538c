//! The OpenAI API's request and response bodies, as far as the server uses them, and its error
//! format: `{"error": {"message", "type", "param", "code"}}` with a 4xx or 5xx status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mamba_wgpu::chat_template::Message;
use mamba_wgpu::generate::FinishReason;
use mamba_wgpu::sampling::{SamplingParams, DEFAULT_MAX_TOKENS, GENERATION_DEFAULTS};
use serde::Deserialize;
use serde_json::{json, Value};

/// An error as the OpenAI API reports it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn bad_request(param: Option<&str>, message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into(), param: param.map(String::from) }
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), param: None }
    }

    pub fn body(&self) -> Value {
        let kind = match self.status.as_u16() {
            404 => "not_found_error",
            413 => "request_too_large",
            429 | 503 => "server_busy",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        };
        json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": null}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// One string, or a list of strings (the API allows both for `prompt` and `stop`).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The fields `/v1/completions` and `/v1/chat/completions` share. Unknown fields are ignored,
/// as OpenAI-compatible servers do.
#[derive(Deserialize)]
pub struct Options {
    pub model: Option<String>,
    pub max_tokens: Option<usize>,
    /// The chat API's newer name for max_tokens.
    pub max_completion_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<OneOrMany>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<usize>,
}

#[derive(Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    pub prompt: OneOrMany,
    #[serde(flatten)]
    pub options: Options,
}

#[derive(Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(flatten)]
    pub options: Options,
}

/// A chat message; `content` may be a string or a list of text parts.
#[derive(Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<Value>,
}

impl ChatRequest {
    pub fn messages(&self) -> Result<Vec<Message>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_request(Some("messages"), "`messages` must hold at least one message"));
        }
        self.messages
            .iter()
            .map(|m| {
                let content = match &m.content {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    // [{"type": "text", "text": ...}, ...]: the text parts, joined.
                    Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
                    Some(other) => return Err(ApiError::bad_request(Some("messages"), format!("message content must be text, got {other}"))),
                };
                Ok(Message { role: m.role.clone(), content })
            })
            .collect()
    }
}

impl CompletionRequest {
    pub fn prompt(&self) -> Result<String, ApiError> {
        match &self.prompt {
            OneOrMany::One(s) => Ok(s.clone()),
            OneOrMany::Many(v) if v.len() == 1 => Ok(v[0].clone()),
            OneOrMany::Many(_) => Err(ApiError::bad_request(Some("prompt"), "one prompt per request (a list must hold exactly one string)")),
        }
    }
}

/// What a request asks of generation, checked.
pub struct Checked {
    pub params: SamplingParams,
    pub max_tokens: usize,
    pub stop: Vec<String>,
}

/// Most tokens a request may ask for.
pub const MAX_TOKENS_LIMIT: usize = 1 << 20;

impl Options {
    /// The sampling options over the engine's defaults (those of `mamba-wgpu generate`), each
    /// range-checked; an error names the field.
    pub fn checked(&self, model_id: &str) -> Result<Checked, ApiError> {
        if let Some(model) = &self.model {
            if model != model_id {
                return Err(ApiError {
                    status: StatusCode::NOT_FOUND,
                    message: format!("model `{model}` does not exist; this server runs `{model_id}`"),
                    param: Some("model".into()),
                });
            }
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_request(Some("n"), "only n = 1 is supported"));
        }
        let defaults = GENERATION_DEFAULTS;
        let params = SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            min_p: self.min_p.unwrap_or(defaults.min_p),
            repetition_penalty: self.repetition_penalty.unwrap_or(defaults.repetition_penalty),
            repetition_window: defaults.repetition_window,
            // Without a seed, each request draws differently (as OpenAI's API does).
            seed: self.seed.unwrap_or_else(fresh_seed),
        };
        params.validate().map_err(|e| match e {
            mamba_wgpu::Error::InvalidArgument { name, reason } => ApiError::bad_request(Some(&name), format!("`{name}`: {reason}")),
            other => ApiError::bad_request(None, other.to_string()),
        })?;
        let max_tokens = self.max_completion_tokens.or(self.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS);
        if max_tokens > MAX_TOKENS_LIMIT {
            return Err(ApiError::bad_request(Some("max_tokens"), format!("`max_tokens` {max_tokens} is above the limit of {MAX_TOKENS_LIMIT}")));
        }
        let stop = self.stop.as_ref().map(|s| match s {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        });
        let stop: Vec<String> = stop.unwrap_or_default().into_iter().filter(|s| !s.is_empty()).collect();
        if stop.len() > 16 {
            return Err(ApiError::bad_request(Some("stop"), "at most 16 stop strings"));
        }
        Ok(Checked { params, max_tokens, stop })
    }
}

/// A different seed for every request that names none: the clock mixed with a counter.
fn fresh_seed() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// The API's finish reason: `stop` (EOS or a stop string, or the client went away) or `length`.
pub fn finish_reason(reason: Option<FinishReason>) -> &'static str {
    match reason {
        Some(FinishReason::MaxTokens) => "length",
        _ => "stop",
    }
}

/// Token counts of a finished request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose state came from the cache instead of a prefill.
    pub cached_tokens: usize,
}

impl Usage {
    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        })
    }
}
