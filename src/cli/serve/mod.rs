//! `mamba-wgpu serve`: an OpenAI-compatible HTTP server (axum on tokio) that keeps each
//! conversation's recurrent state. Requests decode together in one batched session on the
//! loaded model, scheduled by one thread (`engine.rs`); states are cached by their token ids
//! (`cache.rs`); the API's bodies and errors are in `api.rs`, the routes in `routes.rs`.

mod api;
mod cache;
mod engine;
mod routes;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use mamba_wgpu::gpu::kernels::MATVEC_MAX_M;
use mamba_wgpu::{Error, Result};

use super::args::ServeArgs;
use super::interrupt;
use super::load::{chat_template, load, NeedTokenizer};
use super::print_err;

pub fn run(args: &ServeArgs) -> Result<()> {
    // More rows than the matrix-vector kernel takes would switch the batch to the tiled
    // matmul, whose sums are rounded differently from a request running alone.
    if args.parallel == 0 || args.parallel > MATVEC_MAX_M as usize {
        return Err(Error::invalid("--parallel", format!("must be 1 to {MATVEC_MAX_M}")));
    }
    let loaded = load(&args.model, NeedTokenizer::Yes)?;
    let tokenizer = loaded.tokenizer.ok_or_else(|| Error::invalid("--model", "serving text needs a tokenizer (tokenizer.json or --tokenizer)"))?;
    let model = loaded.model;
    let model_id = args.model.model.clone().unwrap_or_else(|| "shakespeare-mamba".into());
    let (jobs, scheduled) = std::sync::mpsc::channel();
    let shared = Arc::new(engine::Shared {
        eos: model.config.eos_ids_or(tokenizer.eos_id()),
        template: chat_template(&args.model)?,
        model,
        model_id,
        tokenizer,
        cache: Mutex::new(cache::StateCache::new(args.state_cache_mb.saturating_mul(1 << 20))),
        generating: AtomicUsize::new(0),
        jobs: Mutex::new(jobs),
        admitted: AtomicUsize::new(0),
        queue_limit: args.queue,
        parallel: args.parallel,
        max_prompt_tokens: args.max_prompt_tokens,
    });
    let sessions = engine::Sessions::new(&shared.model, args.parallel)?;
    let scheduler = shared.clone();
    std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || engine::run(scheduler, sessions, scheduled))
        .map_err(|e| Error::io("scheduler thread", e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| Error::io("tokio runtime", e))?;
    runtime.block_on(async {
        let address = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&address).await.map_err(|e| Error::io(&address, e))?;
        let bound = listener.local_addr().map_err(|e| Error::io(&address, e))?;
        let s = &shared;
        print_err(&format!(
            "serving {} ({}) on http://{bound}/v1 with {} on {}; Ctrl-C stops",
            s.model_id,
            s.model.config.family.model_type(),
            if s.template.is_plain() { "the plain chat transcript" } else { "its chat template" },
            s.model.ctx.adapter
        ));
        // Ctrl-C ends the process at once (no request is half-written to disk: the server
        // keeps its cache in memory only).
        interrupt::set_exit_note(Some("mamba-wgpu serve: stopped".into()));
        axum::serve(listener, routes::router(shared.clone(), args.max_body_bytes)).await.map_err(|e| Error::io(&address, e))
    })
}
