//! Perplexity of a token sequence, as llama.cpp's perplexity tool reports it: the mean negative
//! log-likelihood (natural log) of each scored token given the tokens before it, and
//! PPL = exp(mean NLL).
//!
//! Which tokens are scored: the sequence is cut into windows of `context` tokens (the last one
//! may be shorter), or is one window without a context. The state is reset at the start of
//! every window, so a window's first token has nothing to be predicted from and is not scored;
//! every other token of the window is, from the logits of the position before it. Without a
//! context that is every token but the first; with one, `len - ceil(len / context)` tokens.
//!
//! Memory stays bounded whatever the length: the tokens go in a prefill chunk at a time
//! (`Session::prefill_chunk`; a session made with `Session::with_chunk` takes smaller ones), and
//! each chunk's logits are scored and dropped before the next chunk runs.

use crate::error::{Error, Result};
use crate::session::Session;

/// What a run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Perplexity {
    /// exp(mean NLL)
    pub perplexity: f64,
    /// Mean negative log-likelihood of the scored tokens, in nats.
    pub mean_nll: f64,
    /// How many tokens were scored.
    pub tokens: usize,
}

/// Scores `ids` with the model of `session` (a batch of 1), resetting its state first and at
/// every window of `context` tokens (None: the state carries across the whole sequence; else
/// at least 2). `progress(done, total)` is called after each chunk with the tokens fed so far.
pub async fn perplexity(session: &mut Session, ids: &[u32], context: Option<usize>, progress: &mut dyn FnMut(usize, usize)) -> Result<Perplexity> {
    if session.batch() != 1 {
        return Err(Error::invalid("session", format!("perplexity runs one sequence; this session has a batch of {}", session.batch())));
    }
    if ids.len() < 2 {
        return Err(Error::invalid("tokens", format!("{} token(s): perplexity needs at least 2 (the first is not scored)", ids.len())));
    }
    let window = match context {
        None => ids.len(),
        Some(n) if n < 2 => return Err(Error::invalid("context", format!("{n}: a window needs at least 2 tokens (its first is not scored)"))),
        Some(n) => n,
    };
    let vocab = session.model().config.vocab_size;
    // Checked here, not left to the session: a window's last token is never fed to it.
    if let Some((i, &bad)) = ids.iter().enumerate().find(|&(_, &id)| id as usize >= vocab) {
        return Err(Error::invalid("token id", format!("{bad} at token {i} is outside the vocabulary (size {vocab})")));
    }
    let chunk = session.prefill_chunk();
    let mut nll_sum = 0.0f64;
    let mut scored = 0usize;
    for (w, tokens) in ids.chunks(window).enumerate() {
        session.reset();
        // The window's last token is only a target: its logits would predict nothing scored.
        let inputs = &tokens[..tokens.len() - 1];
        for (c, piece) in inputs.chunks(chunk).enumerate() {
            let logits = session.prefill_all_logits(&[piece.to_vec()]).await?;
            let start = c * chunk;
            for (i, row) in logits.chunks_exact(vocab).enumerate() {
                let position = w * window + start + i;
                let nll = token_nll(row, tokens[start + i + 1])
                    .ok_or_else(|| Error::invalid("logits", format!("at token {position}: NaN or infinite (the model output is broken)")))?;
                nll_sum += nll;
                scored += 1;
            }
            progress(w * window + start + piece.len() + 1, ids.len());
        }
    }
    let mean_nll = nll_sum / scored as f64;
    Ok(Perplexity { perplexity: mean_nll.exp(), mean_nll, tokens: scored })
}

/// -log softmax(logits)[target] in f64, shifted by the largest logit so that no exp
/// overflows; None when it is not finite (a NaN or infinite logit) or `target` is not a column.
fn token_nll(logits: &[f32], target: u32) -> Option<f64> {
    let target = *logits.get(target as usize)? as f64;
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let nll = max + sum.ln() - target;
    nll.is_finite().then_some(nll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_the_log_softmax_and_stable() {
        // Uniform over 4: ln 4, even at logits whose exp overflows f64.
        for offset in [0.0f32, 1000.0, -1000.0] {
            let nll = token_nll(&[offset; 4], 2).unwrap();
            assert!((nll - 4f64.ln()).abs() < 1e-12, "{offset}: {nll}");
        }
        let nll = token_nll(&[1.0, 2.0, 3.0], 0).unwrap();
        let expected = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 1.0;
        assert!((nll - expected).abs() < 1e-12);
    }

    #[test]
    fn broken_logits_are_none() {
        assert_eq!(token_nll(&[0.0, f32::NAN], 0), None);
        assert_eq!(token_nll(&[0.0, f32::INFINITY], 0), None);
        assert_eq!(token_nll(&[0.0, 1.0], 5), None);
    }
}
