//! Chat messages to a prompt. A model's chat template is the Jinja text of
//! `tokenizer_config.json`'s `chat_template`, rendered as transformers' `apply_chat_template`
//! does (`messages`, `add_generation_prompt`, `bos_token`, `eos_token`; blocks trimmed; Python's
//! string methods available); models without one get the plain transcript: each message's
//! content followed by a blank line, the paragraph break that small models of plain text
//! learn. The CLI's chat, the server, the C API and the page all render through here.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Ends each message of the plain transcript.
pub const PLAIN_SEPARATOR: &str = "\n\n";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant` (a template may accept others).
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

#[derive(Clone, Debug)]
pub struct ChatTemplate {
    /// The Jinja source; None: the plain transcript.
    source: Option<String>,
    bos_token: String,
    eos_token: String,
    /// Where it came from, for errors.
    origin: String,
}

impl ChatTemplate {
    /// The plain transcript: each message's content and a blank line.
    pub fn plain() -> Self {
        ChatTemplate { source: None, bos_token: String::new(), eos_token: String::new(), origin: "the plain transcript".into() }
    }

    /// The template of a `tokenizer_config.json` (`path` names it in errors), or the plain
    /// transcript where it has none. `chat_template` may be one string or a list of named
    /// templates (the one named `default` is used); `bos_token` and `eos_token` may be strings
    /// or `{"content": ...}` objects.
    pub fn from_tokenizer_config(text: &str, path: &str) -> Result<Self> {
        let err = |reason: String| Error::Config { path: path.into(), reason };
        let config: serde_json::Value = serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let source = match config.get("chat_template") {
            None | Some(serde_json::Value::Null) => return Ok(Self::plain()),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str())
                .ok_or_else(|| err("`chat_template` is a list without a template named `default`".into()))?
                .to_string(),
            Some(other) => return Err(err(format!("`chat_template` must be a string, got {other}"))),
        };
        let token = |key: &str| -> String {
            match config.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
                None => String::new(),
            }
        };
        let template = ChatTemplate { source: Some(source), bos_token: token("bos_token"), eos_token: token("eos_token"), origin: path.into() };
        // A template that does not compile is an error now, not at the first request.
        template.environment()?;
        Ok(template)
    }

    /// The template of the `tokenizer_config.json` in the model folder `dir`, or the plain
    /// transcript where there is none. A file that cannot be read, is not UTF-8 or holds a
    /// template that does not compile is an error naming it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_model_folder(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        if !path.is_file() {
            return Ok(Self::plain());
        }
        Self::from_file(&path)
    }

    /// The template of the `tokenizer_config.json` at `path` (read up to 16 MiB).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let bytes = crate::model::checkpoint::read_limited(path, 16 << 20, "a tokenizer_config.json")?;
        let text = String::from_utf8(bytes).map_err(|_| Error::io(path.display(), "is not UTF-8 text"))?;
        Self::from_tokenizer_config(&text, &path.display().to_string())
    }

    /// True for the plain transcript.
    pub fn is_plain(&self) -> bool {
        self.source.is_none()
    }

    /// The prompt for `messages`; with `add_generation_prompt`, followed by what opens the
    /// assistant's reply.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let Some(_) = &self.source else {
            return Ok(messages.iter().map(|m| format!("{}{PLAIN_SEPARATOR}", m.content)).collect());
        };
        let env = self.environment()?;
        let template = env.get_template("chat").map_err(|e| self.error(e))?;
        let messages: Vec<minijinja::Value> =
            messages.iter().map(|m| minijinja::context! { role => m.role.clone(), content => m.content.clone() }).collect();
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
        };
        template.render(context).map_err(|e| self.error(e))
    }

    fn environment(&self) -> Result<minijinja::Environment<'static>> {
        let mut env = minijinja::Environment::new();
        // As transformers renders chat templates.
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().map_err(|e| self.error(e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned("chat", self.source.clone().unwrap_or_default()).map_err(|e| self.error(e))?;
        Ok(env)
    }

    fn error(&self, e: minijinja::Error) -> Error {
        Error::invalid("chat template", format!("{}: {e}", self.origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ChatML template as models publish it (e.g. Qwen's), and what transformers renders.
    const CHATML: &str = r#"{"chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}", "eos_token": {"content": "<|im_end|>"}}"#;

    #[test]
    fn renders_a_chatml_template() {
        let t = ChatTemplate::from_tokenizer_config(CHATML, "tokenizer_config.json").unwrap();
        let messages = [Message::new("system", "Be brief."), Message::new("user", "Hi")];
        assert_eq!(
            t.render(&messages, true).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let earlier = [Message::new("user", "Hi"), Message::new("assistant", "Hello.")];
        assert_eq!(t.render(&earlier, false).unwrap(), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n");
    }

    #[test]
    fn plain_transcript_and_template_errors() {
        let plain = ChatTemplate::from_tokenizer_config(r#"{"model_max_length": 2048}"#, "t.json").unwrap();
        assert!(plain.is_plain());
        assert_eq!(plain.render(&[Message::new("user", "ROMEO:")], true).unwrap(), "ROMEO:\n\n");
        let raising = r#"{"chat_template": "{{ raise_exception('roles must alternate') }}"}"#;
        let err = ChatTemplate::from_tokenizer_config(raising, "t.json").unwrap().render(&[], true).unwrap_err().to_string();
        assert!(err.contains("roles must alternate") && err.contains("t.json"), "{err}");
        let broken = r#"{"chat_template": "{% for m in messages %}"}"#;
        assert!(ChatTemplate::from_tokenizer_config(broken, "t.json").unwrap_err().to_string().contains("t.json"));
    }

    #[test]
    fn python_string_methods_work() {
        let config = r#"{"chat_template": "{% for m in messages %}{{ m['content'].strip().upper() }}{% endfor %}"}"#;
        let t = ChatTemplate::from_tokenizer_config(config, "t.json").unwrap();
        assert_eq!(t.render(&[Message::new("user", "  hi ")], false).unwrap(), "HI");
    }
}
