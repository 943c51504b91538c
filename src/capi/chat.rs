//! Chat messages to a prompt, through the model's chat template (its tokenizer_config.json's,
//! else the plain transcript): the rendering the CLI's chat, the server and the page use.

use std::ffi::c_char;

use super::errors::{c_str, copy_out, guard, slice, write, CResult};
use super::model::mw_model;
use super::{handle, mw_status};
use crate::chat_template::Message;

/// One message of a conversation.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mw_chat_message {
    /// `system`, `user` or `assistant` (a template may accept others).
    pub role: *const c_char,
    pub content: *const c_char,
}

/// The messages at `messages`, copied and checked.
///
/// # Safety
/// `messages` is NULL or readable for `n_messages` messages, whose strings are NULL or
/// NUL-terminated.
unsafe fn messages_of(messages: *const mw_chat_message, n_messages: usize) -> CResult<Vec<Message>> {
    slice(messages, n_messages, "messages")?
        .iter()
        .enumerate()
        .map(|(i, m)| Ok(Message::new(c_str(m.role, &format!("messages[{i}].role"))?, c_str(m.content, &format!("messages[{i}].content"))?)))
        .collect()
}

/// The prompt for `n_messages` messages, NUL-terminated in `text`; with a nonzero
/// `add_generation_prompt`, followed by what opens the assistant's reply.
///
/// # Safety
/// `model` is NULL or a model handle; `messages` is NULL or readable for `n_messages`
/// messages (their strings NULL or NUL-terminated); `text` is NULL or writable for `capacity`
/// bytes; `text_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_chat_render(
    model: *const mw_model,
    messages: *const mw_chat_message,
    n_messages: usize,
    add_generation_prompt: i32,
    text: *mut c_char,
    capacity: usize,
    text_len: *mut usize,
) -> mw_status {
    guard(|| {
        let m = &handle(model, "model")?.inner;
        write(text_len, "text_len", 0)?;
        let messages = messages_of(messages, n_messages)?;
        let prompt = m.template.render(&messages, add_generation_prompt != 0)?;
        copy_out(prompt.as_bytes(), true, text.cast(), capacity, text_len, "text")
    })
}
