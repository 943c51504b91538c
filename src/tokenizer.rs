//! Text <-> token ids, through a Hugging Face `tokenizer.json`.
//!
//! A thin wrapper over the `tokenizers` crate that turns its errors into the
//! crate's [`Error`] and adds [`TextStream`], which decodes generated tokens
//! one at a time without ever emitting half a UTF-8 character.

use crate::error::{Error, Result};

/// Names the end-of-sequence token commonly has: GPT-NeoX (the Mamba
/// tokenizer) and GPT-2 use the first, Llama-style vocabularies the second.
const EOS_CANDIDATES: [&str; 2] = ["<|endoftext|>", "</s>"];

/// Bytes of text encoded at a time (Tokenizer::encode).
const ENCODE_PIECE_BYTES: usize = 64 << 10;

/// Where the first piece of `text` ends: the whole text if it is short, else the first
/// position at or after `min` where a single space, after a non-space, precedes a letter or
/// digit (the whole text if there is none).
fn piece_end(text: &str, min: usize) -> usize {
    if text.len() <= min {
        return text.len();
    }
    let bytes = text.as_bytes();
    let mut at = min;
    while at + 1 < bytes.len() {
        if bytes[at] == b' ' && !bytes[at - 1].is_ascii_whitespace() && bytes[at + 1].is_ascii_alphanumeric() {
            return at;
        }
        at += 1;
    }
    text.len()
}

/// The character a lossy UTF-8 decode puts where bytes are missing or invalid.
const REPLACEMENT: char = '\u{FFFD}';

/// A loaded tokenizer and the id of its end-of-sequence token, if it has one.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos_id: Option<u32>,
    /// Where the tokenizer came from (a path or a caller-given name), so that
    /// errors say which tokenizer failed.
    name: String,
}

impl Tokenizer {
    /// Loads a `tokenizer.json` file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        // The largest tokenizer.json files are tens of MB; a device or a huge file is refused.
        let name = path.display().to_string();
        let bytes = crate::model::checkpoint::read_limited(path, 512 << 20, "a tokenizer.json").map_err(|e| match e {
            Error::Io { reason, .. } => Error::Tokenizer { path: name.clone(), reason },
            other => other,
        })?;
        Self::from_bytes(&bytes, &name)
    }

    /// Parses the contents of a `tokenizer.json`; `name` only labels errors.
    /// Works without a file system (e.g. bytes fetched by a web page).
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| tokenizer_error(name, e))?;
        let eos_id = EOS_CANDIDATES.iter().find_map(|t| inner.token_to_id(t));
        Ok(Self { inner, eos_id, name: name.to_string() })
    }

    /// Wraps a tokenizer built in code (a GGUF file's vocabulary); `eos_id` is the
    /// end-of-sequence id its source names, else the one guessed as for a tokenizer.json.
    pub fn from_tokenizers(inner: tokenizers::Tokenizer, eos_id: Option<u32>, name: &str) -> Self {
        let eos_id = eos_id.or_else(|| EOS_CANDIDATES.iter().find_map(|t| inner.token_to_id(t)));
        Self { inner, eos_id, name: name.to_string() }
    }

    /// The tokenizer as `tokenizer.json` text (what `quantize` embeds in a GGUF file).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| self.error(e))
    }

    /// Token ids of `text`, without special tokens (no BOS/EOS): the prompt
    /// is fed to the model exactly as written.
    ///
    /// A long text is encoded a piece at a time, so that memory stays bounded:
    /// the `tokenizers` crate keeps several hundred bytes of bookkeeping per
    /// token of the text it encodes. Pieces end before a single space that
    /// follows a non-space and precedes a letter or digit, where GPT-2 style
    /// pre-tokenizers (and whitespace ones) split anyway, so the ids are those
    /// of encoding the whole text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let cut = piece_end(rest, ENCODE_PIECE_BYTES);
            let encoding = self.inner.encode(&rest[..cut], false).map_err(|e| self.error(e))?;
            ids.extend_from_slice(encoding.get_ids());
            rest = &rest[cut..];
        }
        Ok(ids)
    }

    /// Text of `ids`. Special tokens (such as EOS) are skipped so they never
    /// show up in generated text. Invalid byte sequences become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| self.error(e))
    }

    /// Number of ids the tokenizer can produce, added tokens included. The
    /// model's embedding table may be larger (padded), never smaller.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Fails unless this tokenizer can belong to a model of `model_vocab` ids: it may not
    /// produce ids the model cannot take. A smaller tokenizer is normal (checkpoints pad their
    /// embedding tables); an id the model emits beyond it is an error when it is decoded
    /// (TextStream::push), never text dropped without a word.
    pub fn check_fits(&self, model_vocab: usize) -> Result<()> {
        let n = self.vocab_size();
        if n > model_vocab {
            return Err(self.error(format!(
                "has {n} tokens, but the model's vocabulary holds {model_vocab} (config.json `vocab_size`): the tokenizer belongs to another model"
            )));
        }
        Ok(())
    }

    /// Id of an exact token string (e.g. `"<|endoftext|>"`), if it exists.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The end-of-sequence id guessed from the vocabulary; callers should
    /// prefer the model's `config.json` value when it has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Starts decoding a stream of generated ids, one at a time.
    pub fn stream(&self) -> TextStream<'_> {
        TextStream { tokenizer: self, ids: Vec::new(), prefix_len: 0 }
    }

    fn error(&self, reason: impl std::fmt::Display) -> Error {
        tokenizer_error(&self.name, reason)
    }
}

fn tokenizer_error(path: &str, reason: impl std::fmt::Display) -> Error {
    Error::Tokenizer { path: path.to_string(), reason: reason.to_string() }
}

/// Incremental decoder for generated tokens.
///
/// Byte-level tokenizers split characters such as emoji, CJK or accented
/// letters over several tokens, and a single token can decode differently
/// depending on its neighbours (e.g. leading-space handling). So instead of
/// decoding each id alone, the stream keeps the ids since the last emitted
/// boundary, decodes them with and without the newest ones, and emits the
/// difference only once it does not end in U+FFFD, the mark of an unfinished
/// character.
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    /// Ids since the start of the last emitted chunk. The chunk before them
    /// has been emitted in full, so decoding can restart cleanly here.
    ids: Vec<u32>,
    /// How many of `ids` have already been turned into emitted text.
    prefix_len: usize,
}

impl TextStream<'_> {
    /// A UTF-8 character is at most 4 bytes and every byte-level token holds
    /// at least one, so a character cannot stay unfinished longer than this.
    /// Past it the U+FFFD is real (the model produced invalid bytes) and is
    /// emitted rather than holding back text forever.
    const MAX_PENDING: usize = 8;

    /// Adds one generated id; returns the text that became complete (often
    /// one word piece, sometimes empty while a character is unfinished).
    pub fn push(&mut self, id: u32) -> Result<String> {
        let n = self.tokenizer.vocab_size();
        if id as usize >= n {
            return Err(self
                .tokenizer
                .error(format!("has {n} tokens and no token {id}, which the model chose: the tokenizer does not fit the model")));
        }
        self.ids.push(id);
        let (prefix, full) = self.decode_both()?;
        let pending = self.ids.len() - self.prefix_len;
        let unfinished = full.ends_with(REPLACEMENT) && pending < Self::MAX_PENDING;
        if full.len() <= prefix.len() || unfinished {
            return Ok(String::new());
        }
        let new_text = self.new_suffix(&prefix, &full)?;
        // The emitted prefix is no longer needed as context: the chunk just
        // emitted becomes the prefix for the next token.
        self.ids.drain(..self.prefix_len);
        self.prefix_len = self.ids.len();
        Ok(new_text)
    }

    /// Returns whatever text is still held back (possibly ending in U+FFFD if
    /// the generation stopped inside a character) and resets the stream.
    pub fn finish(&mut self) -> Result<String> {
        let (prefix, full) = self.decode_both()?;
        let rest = if full.len() > prefix.len() { self.new_suffix(&prefix, &full)? } else { String::new() };
        self.ids.clear();
        self.prefix_len = 0;
        Ok(rest)
    }

    /// Decodes the already-emitted ids alone and together with the new ones.
    fn decode_both(&self) -> Result<(String, String)> {
        let prefix = self.tokenizer.decode(&self.ids[..self.prefix_len])?;
        let full = self.tokenizer.decode(&self.ids)?;
        Ok((prefix, full))
    }

    /// The part of `full` after `prefix`. Decoders only ever append when ids
    /// are appended, so a mismatch means an unusual tokenizer: report it
    /// rather than emit text that would duplicate or drop characters.
    fn new_suffix(&self, prefix: &str, full: &str) -> Result<String> {
        match full.strip_prefix(prefix) {
            Some(rest) => Ok(rest.to_string()),
            None => Err(self.tokenizer.error(format!("streaming decode: {full:?} does not extend the already emitted {prefix:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const SAMPLE: &str = "héllo wörld 🌍 日本語 café, naïve “quotes” — ok!\n\tend";

    /// GPT-2's byte-to-character table: printable bytes map to themselves,
    /// the rest to code points from 256 up, so every byte is a visible token.
    fn byte_to_char() -> Vec<char> {
        let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        let mut table = Vec::with_capacity(256);
        let mut next_spare = 256; // next code point for an unprintable byte
        for b in 0..256u32 {
            let code = if printable(b) { b } else { next_spare };
            if !printable(b) {
                next_spare += 1;
            }
            table.push(char::from_u32(code).expect("code points below 0x200 are valid"));
        }
        table
    }

    /// A byte-level BPE tokenizer.json: the 256 byte tokens (ids 0-255),
    /// three merges (256-258) and an EOS added token (259). Two merges stop in
    /// the middle of a multi-byte character, which is what streaming must
    /// handle; the third covers a whole one.
    fn tokenizer_json() -> String {
        let table = byte_to_char();
        let token = |bytes: &[u8]| bytes.iter().map(|b| table[*b as usize]).collect::<String>();
        let mut vocab = serde_json::Map::new();
        for b in 0..=255u8 {
            vocab.insert(token(&[b]), (b as u32).into());
        }
        // First two bytes of 🌍 (F0 9F 8C 8D) and of 日 (E6 97 A5), plus a whole "é".
        let pairs: [[u8; 2]; 3] = [[0xF0, 0x9F], [0xE6, 0x97], [0xC3, 0xA9]];
        let mut merges = Vec::new();
        for (i, pair) in pairs.iter().enumerate() {
            vocab.insert(token(pair), (256 + i as u32).into());
            merges.push(format!("{} {}", token(&pair[..1]), token(&pair[1..])));
        }
        let byte_level = serde_json::json!({
            "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
        });
        serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [{
                "id": 259, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            }],
            "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "vocab": vocab, "merges": merges
            }
        })
        .to_string()
    }

    /// Writes `contents` to a file unique to this test run and returns its path.
    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("mamba-wgpu-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("temp dir is writable");
        path
    }

    fn load() -> Tokenizer {
        let path = temp_file("tokenizer.json", &tokenizer_json());
        let tokenizer = Tokenizer::from_file(&path).expect("generated tokenizer.json loads");
        let _ = std::fs::remove_file(&path);
        tokenizer
    }

    #[test]
    fn vocabulary_and_special_tokens() {
        let tok = load();
        assert_eq!(tok.vocab_size(), 260);
        assert_eq!(tok.eos_id(), Some(259));
        assert_eq!(tok.token_id("<|endoftext|>"), Some(259));
        assert_eq!(tok.token_id("no such token"), None);
    }

    #[test]
    fn encode_decode_round_trip() {
        let tok = load();
        let ids = tok.encode(SAMPLE).expect("encodes");
        assert!(ids.contains(&256) && ids.contains(&257) && ids.contains(&258), "merges should apply: {ids:?}");
        assert!(ids.len() < SAMPLE.len(), "merges shorten the byte sequence");
        assert_eq!(tok.decode(&ids).expect("decodes"), SAMPLE);
        // EOS is never added by encode and is skipped by decode.
        let mut with_eos = ids.clone();
        with_eos.push(259);
        assert_eq!(tok.decode(&with_eos).expect("decodes"), SAMPLE);
    }

    #[test]
    fn streaming_matches_one_shot_decode_without_broken_chars() {
        let tok = load();
        let ids = tok.encode(SAMPLE).expect("encodes");
        let mut stream = tok.stream();
        let mut text = String::new();
        let mut chunks = 0;
        for &id in &ids {
            let chunk = stream.push(id).expect("decodes");
            assert!(!chunk.contains(REPLACEMENT), "broken character in chunk {chunk:?}");
            chunks += !chunk.is_empty() as usize;
            text.push_str(&chunk);
        }
        text.push_str(&stream.finish().expect("decodes"));
        assert_eq!(text, SAMPLE);
        assert!(chunks > 10, "text should arrive piece by piece, got {chunks} chunks");
    }

    #[test]
    fn streaming_holds_back_an_unfinished_character() {
        let tok = load();
        let ids = tok.encode("🌍").expect("encodes");
        assert_eq!(ids.len(), 3, "F0 9F merged, then 8C and 8D: {ids:?}");
        let mut stream = tok.stream();
        assert_eq!(stream.push(ids[0]).expect("decodes"), "");
        assert_eq!(stream.push(ids[1]).expect("decodes"), "");
        // Generation stopping mid-character flushes what there is.
        assert_eq!(stream.finish().expect("decodes"), "\u{FFFD}");
        // After finish the stream starts afresh.
        for &id in &ids[..2] {
            stream.push(id).expect("decodes");
        }
        assert_eq!(stream.push(ids[2]).expect("decodes"), "🌍");
        assert_eq!(stream.finish().expect("decodes"), "");
    }

    #[test]
    fn invalid_bytes_are_not_held_back_forever() {
        let tok = load();
        let mut stream = tok.stream();
        let lone_lead = 0xF0; // starts a 4-byte character that never completes
        let out: String = (0..20).map(|_| stream.push(lone_lead).expect("decodes")).collect();
        assert!(!out.is_empty(), "text must eventually be released");
    }

    #[test]
    fn missing_file_names_the_path() {
        let path = std::env::temp_dir().join("mamba-wgpu-does-not-exist/tokenizer.json");
        match Tokenizer::from_file(&path) {
            Err(Error::Tokenizer { path: p, .. }) => {
                assert!(p.contains("mamba-wgpu-does-not-exist"), "{p}")
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a missing file must not load"),
        }
    }

    #[test]
    fn non_json_file_is_a_tokenizer_error() {
        let path = temp_file("garbage.json", "this is not json {");
        let result = Tokenizer::from_file(&path);
        let _ = std::fs::remove_file(&path);
        assert!(matches!(result, Err(Error::Tokenizer { .. })), "expected a tokenizer error");
        assert!(matches!(Tokenizer::from_bytes(b"{}", "empty"), Err(Error::Tokenizer { path, .. }) if path == "empty"));
    }
}
