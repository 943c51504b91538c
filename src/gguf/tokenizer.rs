//! The tokenizer a GGUF file embeds (`tokenizer.ggml.*`), as a `tokenizers` tokenizer: for
//! model "gpt2" (byte-level BPE, what llama.cpp's converter writes for Mamba's GPT-NeoX style
//! vocabularies) the tokens (already in byte-level form) and merges make the BPE model, with
//! the ByteLevel pre-tokenizer and decoder that Hugging Face's tokenizer.json of such a model
//! names. Control tokens become special added tokens (skipped when decoding), user-defined ones
//! plain added tokens, as transformers marks them.
//!
//! The pre-tokenizer: llama.cpp names it (`tokenizer.ggml.pre`) and splits text with its own
//! regexes per name. The names whose regex is GPT-2's are ByteLevel's own split; any other
//! name gets GPT-2's too, with a warning that text may split differently than in llama.cpp.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use super::header::GgufHeader;
use super::value::Value;
use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// `tokenizer.ggml.pre` names whose pre-tokenizer llama.cpp runs with GPT-2's regex alone
/// (llama-vocab.cpp: LLAMA_VOCAB_PRE_TYPE_GPT2, _MPT, _OLMO), which is ByteLevel's split.
const GPT2_PRE: [&str; 4] = ["gpt-2", "phi-2", "mpt", "olmo"];

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;
const UNUSED: i64 = 5;

/// The tokenizer embedded in the GGUF file `name` (used in errors), for a model whose embedding
/// has `model_vocab` rows: unused padding tokens past those rows (the converter pads the list
/// to a multiple of 8 or 16) are dropped, so the tokenizer fits the model.
pub fn tokenizer_from_header(h: &GgufHeader, name: &str, model_vocab: usize) -> Result<Tokenizer> {
    let err = |reason: String| Error::Tokenizer { path: name.to_string(), reason };
    let model = match h.get("tokenizer.ggml.model") {
        None => return Err(err("the file embeds no tokenizer (no `tokenizer.ggml.model`)".into())),
        Some(v) => v.as_str().ok_or_else(|| err("`tokenizer.ggml.model` is not a string".into()))?,
    };
    if model != "gpt2" {
        return Err(err(format!("tokenizer model `{model}` is not supported (only `gpt2`, byte-level BPE)")));
    }
    let strings = |key: &str| -> Result<&[String]> {
        h.get(key).and_then(Value::as_array).and_then(|a| a.as_strings()).ok_or_else(|| err(format!("`{key}` is missing or not an array of strings")))
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let types = match h.get("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(v) => v.as_array().and_then(|a| a.to_i64()).ok_or_else(|| err("`tokenizer.ggml.token_type` is not an array of integers".into()))?,
    };
    if types.len() != tokens.len() {
        return Err(err(format!("{} tokens but {} token types", tokens.len(), types.len())));
    }
    let mut n = tokens.len();
    while n > model_vocab && types[n - 1] == UNUSED {
        n -= 1;
    }
    let merges = strings("tokenizer.ggml.merges")?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // llama.cpp splits at the first space after the first byte.
            let at = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1).ok_or_else(|| err(format!("merge {i} `{m}` is not two tokens")))?;
            Ok((m[..at].to_string(), m[at + 1..].to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let vocab: Vocab = tokens[..n].iter().enumerate().map(|(id, t)| (t.clone(), id as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| err(format!("BPE from the tokens and merges: {e}")))?;

    let pre = h.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
    if !GPT2_PRE.contains(&pre) {
        log::warn!("{name}: pre-tokenizer `{pre}` is not GPT-2's; text is split with GPT-2's regex, which may differ from llama.cpp's `{pre}`");
    }
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    let added = |kind: i64| -> Vec<AddedToken> {
        (0..n).filter(|&i| types[i] == kind).map(|i| AddedToken::from(tokens[i].clone(), kind == CONTROL).normalized(false)).collect()
    };
    inner.add_special_tokens(&added(CONTROL));
    inner.add_tokens(&added(USER_DEFINED));
    let eos = h.get("tokenizer.ggml.eos_token_id").and_then(Value::as_u64).and_then(|id| u32::try_from(id).ok()).filter(|&id| (id as usize) < n);
    Ok(Tokenizer::from_tokenizers(inner, eos, name))
}

/// The chat template the file embeds (`tokenizer.chat_template`, with the BOS and EOS tokens'
/// text), or the plain transcript where it has none.
pub fn chat_template_from_header(h: &GgufHeader, name: &str) -> Result<ChatTemplate> {
    let Some(source) = h.get("tokenizer.chat_template") else { return Ok(ChatTemplate::plain()) };
    let source = source.as_str().ok_or_else(|| Error::Config { path: name.into(), reason: "`tokenizer.chat_template` is not a string".into() })?;
    let tokens = h.get("tokenizer.ggml.tokens").and_then(Value::as_array).and_then(|a| a.as_strings()).unwrap_or_default();
    let token = |key: &str| -> &str {
        let id = h.get(key).and_then(Value::as_u64).and_then(|id| usize::try_from(id).ok());
        id.and_then(|id| tokens.get(id)).map_or("", String::as_str)
    };
    // The shape of a tokenizer_config.json, so that one parser reads both.
    let config = serde_json::json!({
        "chat_template": source,
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
    });
    ChatTemplate::from_tokenizer_config(&config.to_string(), name)
}
