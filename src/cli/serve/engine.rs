//! Running one request on the GPU, on a blocking thread of its own: several run at once (up to
//! `--parallel`), each in its own session on the shared model, so their tokens interleave; the
//! rest wait in a bounded queue. A request restores the longest cached state of its tokens,
//! prefills the rest, generates, and leaves two states in the cache: after its prompt (less the
//! last token, whose logits choose the first new token) and after everything it fed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mamba_wgpu::chat_template::ChatTemplate;
use mamba_wgpu::generate::{FinishReason, Generator, StopConditions};
use mamba_wgpu::sampling::Sampler;
use mamba_wgpu::tokenizer::Tokenizer;
use mamba_wgpu::{Model, Session};
use tokio::sync::{mpsc, Semaphore};

use super::api::{ApiError, Checked, Usage};
use super::cache::StateCache;

/// What every request shares.
pub struct Shared {
    pub model: Arc<Model>,
    pub model_id: String,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub eos: Vec<u32>,
    pub cache: Mutex<StateCache>,
    /// Sessions not in use (one per request running at a time, made on demand).
    pub sessions: Mutex<Vec<Session>>,
    /// One permit per request that may run at once.
    pub running: Semaphore,
    /// Requests generating now (for /health; the others admitted are waiting).
    pub generating: AtomicUsize,
    /// Requests admitted and not finished (waiting or generating), and how many may wait on
    /// top of the `parallel` that generate.
    pub admitted: AtomicUsize,
    pub queue_limit: usize,
    pub parallel: usize,
    pub max_prompt_tokens: usize,
}

/// What a running request sends to its HTTP handler.
pub enum Event {
    Text(String),
    Done { finish: &'static str, usage: Usage },
    Failed(String),
}

/// A request admitted to the queue: it waits for its turn with [`Ticket::run`]; dropping it
/// (at the end of the run) frees its place.
pub struct Ticket {
    shared: Arc<Shared>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Admits a request (to generate now, or to wait), or refuses it when `parallel` requests
    /// generate and `queue_limit` wait already.
    pub fn admit(self: &Arc<Self>) -> Result<Ticket, ApiError> {
        let admitted = self.admitted.fetch_add(1, Ordering::SeqCst);
        if admitted >= self.parallel + self.queue_limit {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("the server is busy: {} requests are already waiting", self.queue_limit),
            ));
        }
        Ok(Ticket { shared: self.clone() })
    }

    /// The prompt's token ids, checked against the length limit.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ApiError> {
        let tokens = self.tokenizer.encode(text).map_err(|e| ApiError::bad_request(Some("prompt"), e.to_string()))?;
        if tokens.is_empty() {
            return Err(ApiError::bad_request(Some("prompt"), "the prompt is empty"));
        }
        if tokens.len() > self.max_prompt_tokens {
            return Err(ApiError::bad_request(
                Some("prompt"),
                format!("the prompt has {} tokens, more than the limit of {}", tokens.len(), self.max_prompt_tokens),
            ));
        }
        Ok(tokens)
    }
}

impl Ticket {
    /// Waits for a free slot, then generates on a blocking thread, sending events until the
    /// end or until the receiver is gone (the client disconnected: generation stops).
    pub async fn run(self, tokens: Vec<u32>, request: Checked, events: mpsc::Sender<Event>) {
        let shared = self.shared.clone();
        let Ok(_permit) = shared.running.acquire().await else { return };
        // A client that went away while its request waited costs no prefill.
        if events.is_closed() {
            return;
        }
        let worker = shared.clone();
        let failed = events.clone();
        shared.generating.fetch_add(1, Ordering::SeqCst);
        let outcome = tokio::task::spawn_blocking(move || generate(&worker, &tokens, &request, &events)).await;
        shared.generating.fetch_sub(1, Ordering::SeqCst);
        let message = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => format!("generation failed: {panic}"),
        };
        let _ = failed.send(Event::Failed(message)).await;
    }
}

fn generate(shared: &Shared, tokens: &[u32], request: &Checked, events: &mpsc::Sender<Event>) -> mamba_wgpu::Result<()> {
    let mut session = match shared.sessions.lock().unwrap_or_else(|e| e.into_inner()).pop() {
        Some(session) => session,
        None => Session::new(shared.model.clone(), 1)?,
    };
    let result = generate_in(shared, &mut session, tokens, request, events);
    if result.is_ok() {
        shared.sessions.lock().unwrap_or_else(|e| e.into_inner()).push(session);
    }
    result
}

fn generate_in(shared: &Shared, session: &mut Session, tokens: &[u32], request: &Checked, events: &mpsc::Sender<Event>) -> mamba_wgpu::Result<()> {
    // The state before the last prompt token: cached, or restored from the longest cached
    // prefix and fed the rest. The last token's logits choose the first new token.
    let (before_last, last) = tokens.split_at(tokens.len() - 1);
    let cached = shared.cache.lock().unwrap_or_else(|e| e.into_inner()).longest_prefix(before_last);
    let cached_tokens = match cached {
        Some((n, state)) => {
            session.restore(&state)?;
            n
        }
        None => {
            session.reset();
            0
        }
    };
    if cached_tokens < before_last.len() {
        pollster::block_on(session.feed(&[before_last[cached_tokens..].to_vec()]))?;
        let state = pollster::block_on(session.snapshot())?;
        shared.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(before_last, state);
    }

    let stop = StopConditions { max_tokens: request.max_tokens, eos: shared.eos.clone(), stop_strings: request.stop.clone() };
    let sampler = Sampler::new(request.params.clone())?;
    let mut gen = Generator::new(session, sampler, stop).with_history(before_last).with_tokenizer(&shared.tokenizer);
    pollster::block_on(gen.start(last))?;
    let mut completion_tokens = 0;
    while let Some(text) = pollster::block_on(gen.next_text())? {
        completion_tokens = gen.stats().generated_tokens;
        if text.is_empty() {
            continue;
        }
        if events.blocking_send(Event::Text(text)).is_err() {
            // The client went away: stop here, and keep nothing of this run.
            gen.cancel();
            return Ok(());
        }
    }
    completion_tokens = completion_tokens.max(gen.stats().generated_tokens);
    let finish = super::api::finish_reason(gen.finish_reason().or(Some(FinishReason::MaxTokens)));
    // Everything fed: the session's position counts it, the history names it (the last chosen
    // token is not fed yet).
    let history = gen.history().to_vec();
    drop(gen);
    let fed = &history[..(session.position() as usize).min(history.len())];
    if fed.len() > tokens.len() {
        let state = pollster::block_on(session.snapshot())?;
        shared.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(fed, state);
    }
    let usage = Usage { prompt_tokens: tokens.len(), completion_tokens, cached_tokens };
    let _ = events.blocking_send(Event::Done { finish, usage });
    Ok(())
}
