//! The shipped model's tokenizer: exact round trips, and streaming decode equal to one-shot
//! decode on text whose characters span several byte-level tokens.

use std::path::Path;

use mamba_wgpu::tokenizer::Tokenizer;

const TEXTS: &[&str] = &[
    "ROMEO.\nBut soft! what light through yonder window breaks?\n",
    "Café déjà vu — naïve Zoë, “quoted” ‘text’…",
    "Emoji 🌍🎭 and CJK 日本語の文章 and 한국어, mixed: x\u{301}y.",
    "  leading spaces,\ttabs\r\nand\n\n\nblank lines  ",
];

fn shipped() -> Tokenizer {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shakespeare-mamba/tokenizer.json");
    Tokenizer::from_file(&path).expect("the shipped tokenizer loads")
}

#[test]
fn shipped_tokenizer_round_trips_exactly() {
    let tok = shipped();
    assert_eq!(tok.eos_id(), Some(0), "<|endoftext|> is id 0, the model's EOS");
    for text in TEXTS {
        let ids = tok.encode(text).unwrap();
        assert!(!ids.is_empty());
        assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        assert_eq!(&tok.decode(&ids).unwrap(), text);
    }
}

#[test]
fn streaming_decode_equals_one_shot_and_never_emits_broken_characters() {
    let tok = shipped();
    for text in TEXTS {
        let ids = tok.encode(text).unwrap();
        let mut stream = tok.stream();
        let mut streamed = String::new();
        for &id in &ids {
            let piece = stream.push(id).unwrap();
            assert!(!piece.contains('\u{FFFD}'), "a broken character was emitted for {text:?}: {piece:?}");
            streamed.push_str(&piece);
        }
        streamed.push_str(&stream.finish().unwrap());
        assert_eq!(&streamed, text);
        assert_eq!(streamed, tok.decode(&ids).unwrap());
    }
}

/// A long text is encoded a piece at a time (bounded memory); the ids equal those of encoding
/// it in one piece with the `tokenizers` crate itself.
#[test]
fn long_texts_encode_as_one_piece_would() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shakespeare-mamba/tokenizer.json");
    let whole = tokenizers::Tokenizer::from_file(&path).unwrap();
    let mut text = String::new();
    let mut i = 0usize;
    while text.len() < 400_000 {
        text += TEXTS[i % TEXTS.len()];
        text += [" ", "  ", "\n", " x", "\t", ". A", " 42 "][i % 7];
        i += 1;
    }
    let want = whole.encode(text.as_str(), false).unwrap().get_ids().to_vec();
    assert_eq!(shipped().encode(&text).unwrap(), want);
}
