//! The GPU side of the server: one scheduler thread owns two sessions of the loaded model, a
//! batch of `--parallel` sequences for decoding and a single sequence for prefills. A request
//! takes a free sequence of the batch: its prompt is prefilled alone (from the longest cached
//! state of its tokens, see `cache.rs`), its state copied into the batch, and from then on it
//! decodes in the batch's one step per token with every other running request, so their
//! tokens interleave; each sequence samples on the GPU with its own request's options. Requests beyond the batch wait in a bounded queue. When a request ends,
//! its state goes back to the cache: after its prompt (less the last token, whose logits choose
//! the first new one) and after everything it fed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as channel, Arc, Mutex};

use mamba_wgpu::chat_template::ChatTemplate;
use mamba_wgpu::generate::{FinishReason, TextOutput};
use mamba_wgpu::ops::sample::{Sampled, SequenceSampling};
use mamba_wgpu::tokenizer::Tokenizer;
use mamba_wgpu::{Model, Result, Session};
use tokio::sync::mpsc;

use super::api::{finish_reason, ApiError, Checked, Usage};
use super::cache::StateCache;

/// What every request shares.
pub struct Shared {
    pub model: Arc<Model>,
    pub model_id: String,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub eos: Vec<u32>,
    pub cache: Mutex<StateCache>,
    /// Requests admitted and not finished (waiting or generating), and how many may wait on
    /// top of the `parallel` that generate.
    pub admitted: AtomicUsize,
    pub queue_limit: usize,
    pub parallel: usize,
    /// Requests generating now (for /health; the others admitted are waiting).
    pub generating: AtomicUsize,
    pub max_prompt_tokens: usize,
    /// Where requests go to the scheduler.
    pub jobs: Mutex<channel::Sender<Job>>,
}

/// Events of one request: unbounded, so that a client that reads slowly never holds up the
/// scheduler (and with it every other request); the text is bounded by `max_tokens`.
pub type Events = mpsc::UnboundedSender<Event>;

/// What a running request sends to its HTTP handler.
pub enum Event {
    Text(String),
    Done { finish: &'static str, usage: Usage },
    Failed(String),
}

/// A request admitted to the queue; dropping it (when the request ends) frees its place.
pub struct Ticket {
    shared: Arc<Shared>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request for the scheduler.
pub struct Job {
    tokens: Vec<u32>,
    request: Checked,
    events: Events,
    _ticket: Ticket,
}

impl Shared {
    /// Admits a request (to generate now, or to wait), or refuses it when `parallel` requests
    /// generate and `queue_limit` wait already.
    pub fn admit(self: &Arc<Self>) -> std::result::Result<Ticket, ApiError> {
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
    pub fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, ApiError> {
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

    /// Hands the request to the scheduler; its events come back on `events`.
    pub fn submit(&self, ticket: Ticket, tokens: Vec<u32>, request: Checked, events: Events) {
        let job = Job { tokens, request, events, _ticket: ticket };
        let sent = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).send(job);
        if let Err(channel::SendError(job)) = sent {
            let _ = job.events.send(Event::Failed("the generation thread has stopped".into()));
        }
    }
}

/// A request generating in sequence `i` of the batch.
struct Running<'t> {
    job: Job,
    text: TextOutput<'t>,
    /// Prompt and generated ids (the repetition penalty's window, and the cache key).
    history: Vec<u32>,
    /// Ids in the sequence's state: the prompt, then each generated token once it is fed.
    fed: usize,
    /// The last chosen token, fed by the next step.
    pending: Option<u32>,
    generated: usize,
    cached_tokens: usize,
    /// Set when the request is over.
    finish: Option<FinishReason>,
}

/// The two sessions the scheduler runs: a batch of `--parallel` sequences for decoding, one
/// sequence for prefills. Made before the server starts, so a model that cannot run them is an
/// error at start, not on every request.
pub struct Sessions {
    pub single: Session,
    pub batch: Session,
}

impl Sessions {
    pub fn new(model: &Arc<Model>, parallel: usize) -> Result<Self> {
        Ok(Sessions { single: Session::new(model.clone(), 1)?, batch: Session::with_chunk(model.clone(), parallel, 1)? })
    }
}

/// The scheduler: runs until the server's job channel closes. A failure of the GPU reaches the
/// requests it concerns as an error.
pub fn run(shared: Arc<Shared>, sessions: Sessions, jobs: channel::Receiver<Job>) {
    let Sessions { mut single, mut batch } = sessions;
    let mut slots: Vec<Option<Running>> = (0..shared.parallel).map(|_| None).collect();
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        if slots.iter().all(Option::is_none) && waiting.is_empty() {
            match jobs.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        waiting.extend(jobs.try_iter());
        // Clients that went away while waiting cost nothing more.
        waiting.retain(|job| !job.events.is_closed());
        // Fill free sequences of the batch.
        while let Some(free) = slots.iter().position(Option::is_none) {
            let Some(job) = waiting.pop_front() else { break };
            // A client that went away while its request waited costs no prefill.
            if job.events.is_closed() {
                continue;
            }
            shared.generating.fetch_add(1, Ordering::SeqCst);
            match start(&shared, &mut single, &mut batch, free, job) {
                Ok(running) => slots[free] = Some(running),
                Err((job, e)) => fail(&shared, job, &e.to_string()),
            }
        }
        // One step of the batch for every running request.
        if slots.iter().any(|s| s.as_ref().is_some_and(|r| r.finish.is_none())) {
            if let Err(e) = step(&mut batch, &mut slots, &shared.eos) {
                for running in slots.iter_mut().filter_map(Option::take) {
                    fail(&shared, running.job, &e.to_string());
                }
                continue;
            }
        }
        for i in 0..slots.len() {
            if slots[i].as_ref().is_some_and(|r| r.finish.is_some()) {
                if let Some(running) = slots[i].take() {
                    end(&shared, &mut single, &batch, i, running);
                }
            }
        }
    }
}

fn fail(shared: &Shared, job: Job, message: &str) {
    let _ = job.events.send(Event::Failed(message.to_string()));
    shared.generating.fetch_sub(1, Ordering::SeqCst);
}

/// Prefills a request's prompt alone (from the longest cached state of its tokens), chooses its
/// first token and moves its state into sequence `i` of the batch.
fn start<'t>(
    shared: &'t Shared,
    single: &mut Session,
    batch: &mut Session,
    i: usize,
    job: Job,
) -> std::result::Result<Running<'t>, (Job, mamba_wgpu::Error)> {
    let prepared = (|| -> Result<(usize, Option<Sampled>)> {
        let tokens = &job.tokens;
        let (before_last, last) = tokens.split_at(tokens.len() - 1);
        let cached = shared.cache.lock().unwrap_or_else(|e| e.into_inner()).longest_prefix(before_last);
        let cached_tokens = match cached {
            Some((n, state)) => {
                single.restore(&state)?;
                n
            }
            None => {
                single.reset();
                0
            }
        };
        if cached_tokens < before_last.len() {
            pollster::block_on(single.feed(&[before_last[cached_tokens..].to_vec()]))?;
            let state = pollster::block_on(single.snapshot())?;
            shared.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(before_last, state);
        }
        let first = if job.request.max_tokens == 0 {
            pollster::block_on(single.feed(&[last.to_vec()]))?;
            None
        } else {
            // The first token is sampled on the GPU right after the prompt's last one.
            single.set_sampling(&[sampling(shared, &job.request, tokens, job.request.max_tokens)])?;
            Some(pollster::block_on(single.prefill_sample(&[last.to_vec()]))?[0])
        };
        batch.copy_sequence(i, single, 0)?;
        Ok((cached_tokens, first))
    })();
    let (cached_tokens, first) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => return Err((job, e)),
    };
    let text = TextOutput::new(&shared.tokenizer, job.request.stop.clone());
    let history = job.tokens.clone();
    let fed = history.len();
    let mut running = Running { job, text, history, fed, pending: None, generated: 0, cached_tokens, finish: None };
    match first.map(Sampled::token) {
        None | Some(Ok(None)) => running.finish = Some(FinishReason::MaxTokens),
        Some(Ok(Some(token))) => running.accept(token, &shared.eos),
        Some(Err(e)) => return Err((running.job, e)),
    }
    if running.finish.is_none() {
        // The batch's sampler takes over this sequence where the single session's left it.
        let budget = running.job.request.max_tokens - running.generated;
        let sequence = sampling(shared, &running.job.request, &running.history, budget);
        if let Err(e) = batch.set_sequence_sampling(i, &sequence) {
            return Err((running.job, e));
        }
    }
    Ok(running)
}

/// A request's sampling on the GPU: its options, the model's stop ids, `budget` tokens still
/// to sample, after `history` (its prompt and what it generated so far).
fn sampling(shared: &Shared, request: &Checked, history: &[u32], budget: usize) -> SequenceSampling {
    SequenceSampling { params: request.params.clone(), eos: shared.eos.clone(), budget, recent: history.to_vec(), position: history.len() as u64 }
}

impl Running<'_> {
    /// Takes the token chosen for this request: EOS ends it; otherwise its text goes to the
    /// client, and a stop string, the token budget or a client that went away ends it.
    fn accept(&mut self, token: u32, eos: &[u32]) {
        if eos.contains(&token) {
            self.finish = Some(FinishReason::Eos);
            return;
        }
        self.history.push(token);
        self.generated += 1;
        let (piece, stopped) = match self.text.push(token) {
            Ok(out) => out,
            Err(e) => {
                let _ = self.job.events.send(Event::Failed(e.to_string()));
                self.finish = Some(FinishReason::Cancelled);
                return;
            }
        };
        if !piece.is_empty() && self.job.events.send(Event::Text(piece)).is_err() {
            self.finish = Some(FinishReason::Cancelled);
        } else if stopped {
            self.finish = Some(FinishReason::StopString);
        } else if self.generated >= self.job.request.max_tokens {
            self.finish = Some(FinishReason::MaxTokens);
        } else {
            self.pending = Some(token);
        }
    }
}

/// Feeds every running request's pending token in one step of the batch, whose sampler (on the
/// GPU, each sequence with its request's options) picks each one's next token; 4 bytes per
/// sequence come back. Free sequences get token 0; what they sample is not taken.
fn step(batch: &mut Session, slots: &mut [Option<Running>], eos: &[u32]) -> Result<()> {
    let tokens: Vec<u32> = slots.iter().map(|s| s.as_ref().and_then(|r| r.pending).unwrap_or(0)).collect();
    let sampled = pollster::block_on(batch.decode_sampled(&tokens, 1))?.remove(0);
    for (sampled, slot) in sampled.into_iter().zip(slots.iter_mut()) {
        let Some(running) = slot.as_mut().filter(|r| r.finish.is_none()) else { continue };
        if running.pending.take().is_some() {
            running.fed += 1;
        }
        // A client that went away, even one whose text is held back, ends its request here.
        if running.job.events.is_closed() {
            running.finish = Some(FinishReason::Cancelled);
            continue;
        }
        match sampled.token() {
            Ok(Some(token)) => running.accept(token, eos),
            // The GPU's budget ends with the request's own (accept ends it first).
            Ok(None) => running.finish = Some(FinishReason::MaxTokens),
            // A row that cannot be sampled (NaN logits) fails its own request only.
            Err(e) => {
                let _ = running.job.events.send(Event::Failed(e.to_string()));
                running.finish = Some(FinishReason::Cancelled);
            }
        }
    }
    Ok(())
}

/// Ends a request: the rest of its text and its usage go to the client, and the state after
/// everything it fed to the cache (copied out of the batch through the single session).
fn end(shared: &Shared, single: &mut Session, batch: &Session, i: usize, mut running: Running) {
    shared.generating.fetch_sub(1, Ordering::SeqCst);
    // Cancelled: the client went away, or it was sent an error already.
    if running.finish == Some(FinishReason::Cancelled) {
        return;
    }
    let events = &running.job.events;
    match running.text.finish() {
        Ok(Some(rest)) if !rest.is_empty() => {
            let _ = events.send(Event::Text(rest));
        }
        Ok(_) => {}
        Err(e) => {
            let _ = events.send(Event::Failed(e.to_string()));
            return;
        }
    }
    if running.fed > running.job.tokens.len() {
        let saved = single.copy_sequence(0, batch, i).and_then(|()| pollster::block_on(single.snapshot()));
        if let Ok(state) = saved {
            shared.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(&running.history[..running.fed], state);
        }
    }
    let usage = Usage { prompt_tokens: running.job.tokens.len(), completion_tokens: running.generated, cached_tokens: running.cached_tokens };
    let _ = events.send(Event::Done { finish: finish_reason(running.finish), usage });
}
