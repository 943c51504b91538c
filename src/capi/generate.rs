//! Generation through the `Generator`: sampling options as a plain C struct, text handed to a
//! callback piece by piece (never half a UTF-8 character, never a stop string).

use std::ffi::{c_char, c_void};

use super::errors::{c_str, guard, slice, CResult, Failure};
use super::mw_status;
use super::session::{mw_session, with_session, SessionState};
use crate::generate::{FinishReason, Generator, StopConditions};
use crate::sampling::{Sampler, SamplingParams};

/// Called with each new piece of text (`len` bytes of UTF-8, also NUL-terminated); returns 0
/// to go on, anything else to stop.
pub type mw_text_fn = Option<unsafe extern "C" fn(text: *const c_char, len: usize, user_data: *mut c_void) -> i32>;

/// Called with each new token id; returns 0 to go on, anything else to stop.
pub type mw_token_fn = Option<unsafe extern "C" fn(id: u32, user_data: *mut c_void) -> i32>;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mw_sampling_options {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub repetition_window: u32,
    pub seed: u64,
    pub max_tokens: u32,
    pub stop_strings: *const *const c_char,
    pub n_stop_strings: usize,
}

/// Tokens a generation returns at most unless told otherwise (as the CLI's --max-tokens).
pub const DEFAULT_MAX_TOKENS: u32 = 200;

impl Default for mw_sampling_options {
    /// `SamplingParams::default()` (plain sampling, every filter off), 200 tokens, no stop strings.
    fn default() -> Self {
        let p = SamplingParams::default();
        mw_sampling_options {
            temperature: p.temperature,
            top_k: p.top_k.try_into().unwrap_or(u32::MAX),
            top_p: p.top_p,
            min_p: p.min_p,
            repetition_penalty: p.repetition_penalty,
            repetition_window: p.repetition_window.try_into().unwrap_or(u32::MAX),
            seed: p.seed,
            max_tokens: DEFAULT_MAX_TOKENS,
            stop_strings: std::ptr::null(),
            n_stop_strings: 0,
        }
    }
}

impl mw_sampling_options {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k as usize,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            repetition_window: self.repetition_window as usize,
            seed: self.seed,
        }
    }

    /// The stop strings, checked.
    ///
    /// # Safety
    /// `stop_strings` is NULL or readable for `n_stop_strings` pointers, each NULL or a
    /// NUL-terminated string.
    unsafe fn stops(&self) -> CResult<Vec<String>> {
        let list = slice(self.stop_strings, self.n_stop_strings, "options.stop_strings")?;
        let mut stops = Vec::with_capacity(list.len());
        for (i, &p) in list.iter().enumerate() {
            let text = c_str(p, &format!("options.stop_strings[{i}]"))?;
            if text.is_empty() {
                return Err(Failure::invalid(&format!("options.stop_strings[{i}]"), "is empty"));
            }
            stops.push(text.to_string());
        }
        Ok(stops)
    }
}

/// Why a generation ended (`mw_generate_result.finish_reason`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mw_finish_reason {
    MW_FINISH_NONE = 0,
    MW_FINISH_EOS = 1,
    MW_FINISH_MAX_TOKENS = 2,
    MW_FINISH_STOP_STRING = 3,
    MW_FINISH_CALLBACK = 4,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct mw_generate_result {
    /// Tokens fed before the first new one (the prompt, plus a token left by the last call).
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    /// An `mw_finish_reason` value.
    pub finish_reason: i32,
}

/// Fills `options` with the defaults (see the header).
///
/// # Safety
/// `options` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_sampling_defaults(options: *mut mw_sampling_options) -> mw_status {
    guard(|| super::errors::write(options, "options", mw_sampling_options::default()))
}

/// Where generated pieces go.
#[derive(Clone, Copy)]
enum Sink {
    Text(unsafe extern "C" fn(*const c_char, usize, *mut c_void) -> i32),
    Tokens(unsafe extern "C" fn(u32, *mut c_void) -> i32),
}

/// Continues the session's sequence with `ids` and generates; the last token stays pending
/// (fed by the session's next call).
unsafe fn generate(
    s: &mut SessionState,
    ids: Vec<u32>,
    options: &mw_sampling_options,
    sink: Sink,
    user_data: *mut c_void,
) -> CResult<mw_generate_result> {
    let stop_strings = options.stops()?;
    if matches!(sink, Sink::Tokens(_)) && !stop_strings.is_empty() {
        return Err(Failure::invalid("options.stop_strings", "stop strings match text; mw_generate_tokens takes none (use mw_generate)"));
    }
    let sampler = Sampler::new(options.params()).map_err(|e| match e {
        crate::Error::InvalidArgument { name, reason } => Failure::invalid(&format!("options.{name}"), reason),
        other => other.into(),
    })?;
    let SessionState { model, session, pending, history } = s;
    let tokenizer = match sink {
        Sink::Text(_) => Some(model.tokenizer()?),
        Sink::Tokens(_) => None,
    };
    // The pending token is the last of the history, and the first of this prompt.
    let earlier = history.len() - pending.is_some() as usize;
    let mut prompt: Vec<u32> = pending.iter().copied().collect();
    prompt.extend_from_slice(&ids);
    let stop = StopConditions { max_tokens: options.max_tokens as usize, eos: model.eos.clone(), stop_strings };
    let position = session.position();
    let mut gen = Generator::new(session, sampler, stop).with_history(&history[..earlier]);
    if let Some(tok) = tokenizer {
        gen = gen.with_tokenizer(tok);
    }
    let started = pollster::block_on(gen.start(&prompt));
    if let Err(e) = started {
        drop(gen);
        if session.position() != position {
            *pending = None;
        }
        return Err(e.into());
    }
    let mut stopped_by_callback = false;
    let outcome = (|| -> crate::Result<()> {
        loop {
            let go_on = match sink {
                Sink::Text(call) => {
                    let Some(text) = pollster::block_on(gen.next_text())? else { return Ok(()) };
                    if text.is_empty() {
                        continue;
                    }
                    let mut bytes = text.into_bytes();
                    let len = bytes.len();
                    bytes.push(0);
                    call(bytes.as_ptr().cast(), len, user_data) == 0
                }
                Sink::Tokens(call) => {
                    let Some(id) = pollster::block_on(gen.next_token())? else { return Ok(()) };
                    call(id, user_data) == 0
                }
            };
            if !go_on {
                pollster::block_on(gen.stop())?;
                stopped_by_callback = true;
                return Ok(());
            }
        }
    })();
    let (stats, reason) = (gen.stats(), gen.finish_reason());
    let (new_pending, new_history) = (gen.pending_token(), gen.history().to_vec());
    drop(gen);
    *pending = new_pending;
    *history = new_history;
    super::session::trim_history(history);
    outcome?;
    let finish = match reason {
        _ if stopped_by_callback => mw_finish_reason::MW_FINISH_CALLBACK,
        Some(FinishReason::Eos) => mw_finish_reason::MW_FINISH_EOS,
        Some(FinishReason::MaxTokens) => mw_finish_reason::MW_FINISH_MAX_TOKENS,
        Some(FinishReason::StopString) => mw_finish_reason::MW_FINISH_STOP_STRING,
        Some(FinishReason::Cancelled) => mw_finish_reason::MW_FINISH_CALLBACK,
        None => mw_finish_reason::MW_FINISH_NONE,
    };
    Ok(mw_generate_result {
        prompt_tokens: stats.prompt_tokens as u64,
        generated_tokens: stats.generated_tokens as u64,
        prefill_seconds: stats.prefill_seconds,
        decode_seconds: stats.decode_seconds,
        finish_reason: finish as i32,
    })
}

/// The options at `options` (NULL: the defaults).
unsafe fn options_or_default(options: *const mw_sampling_options) -> mw_sampling_options {
    if options.is_null() {
        mw_sampling_options::default()
    } else {
        options.read()
    }
}

/// Zeroes the caller's result (if any) up front, and fills it on success.
unsafe fn with_result(result: *mut mw_generate_result, run: impl FnOnce() -> CResult<mw_generate_result>) -> CResult<()> {
    if !result.is_null() {
        result.write(mw_generate_result::default());
    }
    let out = run()?;
    if !result.is_null() {
        result.write(out);
    }
    Ok(())
}

/// Tokenizes `prompt`, continues the session with it and generates text.
///
/// # Safety
/// `session` is NULL or a session handle; `prompt` is NULL or a NUL-terminated string;
/// `options` is NULL or readable (its strings as documented); `on_text` is NULL or a function
/// that does not unwind; `result` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_generate(
    session: *mut mw_session,
    prompt: *const c_char,
    options: *const mw_sampling_options,
    on_text: mw_text_fn,
    user_data: *mut c_void,
    result: *mut mw_generate_result,
) -> mw_status {
    guard(|| {
        with_result(result, || {
            let prompt = c_str(prompt, "prompt")?;
            let call = on_text.ok_or_else(|| Failure::null("on_text"))?;
            let options = options_or_default(options);
            with_session(session, |s| {
                let ids = s.model.tokenizer()?.encode(prompt)?;
                generate(s, ids, &options, Sink::Text(call), user_data)
            })
        })
    })
}

/// Continues the session with `n_prompt` token ids and generates ids.
///
/// # Safety
/// `session` is NULL or a session handle; `prompt` is NULL or readable for `n_prompt` ids;
/// `options` is NULL or readable; `on_token` is NULL or a function that does not unwind;
/// `result` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_generate_tokens(
    session: *mut mw_session,
    prompt: *const u32,
    n_prompt: usize,
    options: *const mw_sampling_options,
    on_token: mw_token_fn,
    user_data: *mut c_void,
    result: *mut mw_generate_result,
) -> mw_status {
    guard(|| {
        with_result(result, || {
            let ids = slice(prompt, n_prompt, "prompt")?.to_vec();
            let call = on_token.ok_or_else(|| Failure::null("on_token"))?;
            let options = options_or_default(options);
            with_session(session, |s| generate(s, ids, &options, Sink::Tokens(call), user_data))
        })
    })
}
