//! The HTTP routes: `GET /health`, `GET /v1/models`, `POST /v1/completions` and
//! `POST /v1/chat/completions`, streamed as server-sent events (`"stream": true`) or not.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::api::{ApiError, ChatRequest, Checked, CompletionRequest, Usage};
use super::engine::{Event, Shared};

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    body_limit: usize,
}

pub fn router(shared: Arc<Shared>, body_limit: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        // Bodies are read by `read_json`, which answers an oversized one in the API's format.
        .layer(DefaultBodyLimit::disable())
        .with_state(App { shared, body_limit })
}

/// Liveness (503 once the GPU device has failed), and the requests generating and waiting now.
async fn health(State(app): State<App>) -> Response {
    let s = &app.shared;
    let generating = s.generating.load(Ordering::SeqCst);
    let waiting = s.admitted.load(Ordering::SeqCst).saturating_sub(generating);
    match s.model.ctx.check_device() {
        Ok(()) => Json(json!({"status": "ok", "generating": generating, "waiting": waiting})).into_response(),
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn models(State(app): State<App>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": app.shared.model_id, "object": "model", "created": now(), "owned_by": "mamba-wgpu"}]}))
}

/// Which API a response speaks.
#[derive(Clone, Copy)]
enum Kind {
    Completion,
    Chat,
}

async fn completions(State(app): State<App>, body: Body) -> Response {
    let request = async {
        let request: CompletionRequest = read_json(body, app.body_limit).await?;
        let checked = request.options.checked(&app.shared.model_id)?;
        let tokens = app.shared.encode(&request.prompt()?)?;
        Ok::<_, ApiError>((tokens, checked, request.options.stream, include_usage(&request.options)))
    };
    match request.await {
        Ok((tokens, checked, stream, usage)) => respond(&app.shared, tokens, checked, stream, usage, Kind::Completion).await,
        Err(e) => e.into_response(),
    }
}

async fn chat_completions(State(app): State<App>, body: Body) -> Response {
    let request = async {
        let request: ChatRequest = read_json(body, app.body_limit).await?;
        let checked = request.options.checked(&app.shared.model_id)?;
        let prompt = app.shared.template.render(&request.messages()?, true).map_err(|e| ApiError::bad_request(Some("messages"), e.to_string()))?;
        let tokens = app.shared.encode(&prompt)?;
        Ok::<_, ApiError>((tokens, checked, request.options.stream, include_usage(&request.options)))
    };
    match request.await {
        Ok((tokens, checked, stream, usage)) => respond(&app.shared, tokens, checked, stream, usage, Kind::Chat).await,
        Err(e) => e.into_response(),
    }
}

fn include_usage(options: &super::api::Options) -> bool {
    options.stream_options.as_ref().is_some_and(|o| o.include_usage)
}

/// The body as JSON: an oversized body is a 413, a malformed one a 400, both in the API's format.
async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {limit} bytes or was cut off")))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(None, format!("the body is not a valid request: {e}")))
}

/// Queues the request and answers with its events: streamed, or collected into one body.
async fn respond(shared: &Arc<Shared>, tokens: Vec<u32>, checked: Checked, stream: bool, usage: bool, kind: Kind) -> Response {
    let ticket = match shared.admit() {
        Ok(ticket) => ticket,
        Err(e) => return e.into_response(),
    };
    let (events, received) = mpsc::unbounded_channel();
    shared.submit(ticket, tokens, checked, events);
    let id = next_id(kind);
    let model = shared.model_id.clone();
    if stream {
        stream_events(received, id, model, kind, usage).into_response()
    } else {
        collect(received, &id, &model, kind).await
    }
}

/// Waits for the whole answer (a client that goes away drops this future, and with it the
/// receiver: generation stops at its next token).
async fn collect(mut received: mpsc::UnboundedReceiver<Event>, id: &str, model: &str, kind: Kind) -> Response {
    let mut text = String::new();
    while let Some(event) = received.recv().await {
        match event {
            Event::Text(piece) => text.push_str(&piece),
            Event::Failed(message) => return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message).into_response(),
            Event::Done { finish, usage } => {
                let choice = match kind {
                    Kind::Completion => json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish}),
                    Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}),
                };
                let object = match kind {
                    Kind::Completion => "text_completion",
                    Kind::Chat => "chat.completion",
                };
                return Json(json!({"id": id, "object": object, "created": now(), "model": model, "choices": [choice], "usage": usage.json()}))
                    .into_response();
            }
        }
    }
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "generation ended without an answer").into_response()
}

/// Server-sent events, one per piece of text, then the finish reason, the usage (when asked
/// for with `stream_options.include_usage`) and `[DONE]`.
fn stream_events(
    mut received: mpsc::UnboundedReceiver<Event>,
    id: String,
    model: String,
    kind: Kind,
    include_usage: bool,
) -> Sse<ReceiverStream<Result<SseEvent, Infallible>>> {
    let (out, stream) = mpsc::channel(64);
    tokio::spawn(async move {
        let chunk = |choices: Value, usage: Option<Usage>| -> SseEvent {
            let object = match kind {
                Kind::Completion => "text_completion",
                Kind::Chat => "chat.completion.chunk",
            };
            let mut body = json!({"id": id, "object": object, "created": now(), "model": model, "choices": choices});
            if let Some(usage) = usage {
                body["usage"] = usage.json();
            }
            SseEvent::default().data(body.to_string())
        };
        let choice = |text: Option<&str>, finish: Option<&str>, first: bool| -> Value {
            match kind {
                Kind::Completion => json!([{"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish}]),
                Kind::Chat => {
                    let mut delta = json!({});
                    if first {
                        delta["role"] = "assistant".into();
                    }
                    if let Some(text) = text {
                        delta["content"] = text.into();
                    }
                    json!([{"index": 0, "delta": delta, "finish_reason": finish}])
                }
            }
        };
        let mut first = true;
        while let Some(event) = received.recv().await {
            let sent = match event {
                Event::Text(text) => out.send(Ok(chunk(choice(Some(&text), None, std::mem::take(&mut first)), None))).await,
                Event::Done { finish, usage } => {
                    let _ = out.send(Ok(chunk(choice(None, Some(finish), first), None))).await;
                    if include_usage {
                        let _ = out.send(Ok(chunk(json!([]), Some(usage)))).await;
                    }
                    out.send(Ok(SseEvent::default().data("[DONE]"))).await
                }
                Event::Failed(message) => {
                    out.send(Ok(SseEvent::default().data(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message).body().to_string()))).await
                }
            };
            // The client went away: dropping `received` stops the generation.
            if sent.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(stream))
}

fn next_id(kind: Kind) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = match kind {
        Kind::Completion => "cmpl",
        Kind::Chat => "chatcmpl",
    };
    format!("{prefix}-{}-{}", now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
