//! A session's sampled runs: sampling on the GPU (set per sequence), prefill with its first
//! token sampled, k decode steps per submit each feeding the token the step before sampled,
//! and the rollback that makes a generation ending inside such a run exact.

use super::{Readback, Session, TapeKey};
use crate::error::{Error, Result};
use crate::gpu::readback::Staging;
use crate::model::forward::StateBuffers;
use crate::ops::sample::{Sampled, SamplerBuffers, SequenceSampling, MAX_STEPS};

impl Session {
    /// Sets each sequence's sampling (options, seed, stop ids, budget, recent tokens, position)
    /// for the sampled runs that follow: `prefill_sample` and `decode_sampled`.
    pub fn set_sampling(&mut self, sequences: &[SequenceSampling]) -> Result<()> {
        let ctx = self.model.ctx.clone();
        self.sampler_buffers().set(&ctx, sequences)
    }

    /// Sets sequence `index`'s sampling alone (a request that takes a place in a batch); the
    /// others keep theirs.
    pub fn set_sequence_sampling(&mut self, index: usize, sequence: &SequenceSampling) -> Result<()> {
        let ctx = self.model.ctx.clone();
        self.sampler_buffers().set_one(&ctx, index, sequence)
    }

    /// The GPU sampler's buffers, made on first use.
    fn sampler_buffers(&mut self) -> &SamplerBuffers {
        let ctx = &self.model.ctx;
        let (batch, vocab) = (self.batch, self.model.config.vocab_size);
        let (buffers, _) = self.sampling.get_or_insert_with(|| {
            (SamplerBuffers::new(ctx, batch, vocab), Staging::new(ctx, "sampled tokens readback", (MAX_STEPS * batch * 4) as u64))
        });
        buffers
    }

    /// Prefills the prompts and samples each sequence's next token on the GPU, as
    /// `set_sampling` said.
    pub async fn prefill_sample(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<Sampled>> {
        self.require_sampling()?;
        let bytes = self.consume(prompts, Readback::Sampled(1)).await?;
        Ok(sampled_rows(&bytes, self.batch).remove(0))
    }

    /// `steps` decode steps in one submit, with no round trip between them: step 0 feeds
    /// `tokens` (one per sequence), every later step the tokens the step before it sampled on
    /// the GPU. Returns what each step sampled, [step][sequence]; a sequence that stopped (an
    /// EOS id or its budget) is `Stopped` in the steps after, which still run for it but whose
    /// tokens are not taken. The state before the run is kept for `rollback`.
    pub async fn decode_sampled(&mut self, tokens: &[u32], steps: usize) -> Result<Vec<Vec<Sampled>>> {
        self.require_sampling()?;
        if !(1..=MAX_STEPS).contains(&steps) {
            return Err(Error::invalid("tokens_per_submit", format!("{steps}: must be in 1..={MAX_STEPS}")));
        }
        let prompts = self.one_per_sequence(tokens)?;
        self.validate(&prompts)?;
        // One step never runs past where a generation ends: only longer runs keep the state.
        if steps > 1 {
            self.save_checkpoint();
        } else {
            self.checkpoint_valid = false;
        }
        let bytes = self.run(tokens, 1, Readback::Sampled(steps as u8)).await?;
        self.position += steps as u64;
        Ok(sampled_rows(&bytes, self.batch))
    }

    /// Returns the state to what it was before the last `decode_sampled`, then feeds `replay`
    /// (batch 1) one token at a time through the same step kernels: the state is then exactly
    /// that of a run that fed only those tokens. Used where a generation ends inside a run.
    pub async fn rollback(&mut self, replay: &[u32]) -> Result<()> {
        if self.batch != 1 {
            return Err(Error::invalid("rollback", format!("needs a session of batch 1, this one has {}", self.batch)));
        }
        let position = match (&self.checkpoint, self.checkpoint_valid) {
            (Some((_, position)), true) => *position,
            _ => return Err(Error::invalid("rollback", "no decode run to roll back")),
        };
        self.copy_state(false);
        self.position = position;
        self.checkpoint_valid = false;
        for &token in replay {
            self.feed(&[vec![token]]).await?;
        }
        Ok(())
    }

    fn require_sampling(&self) -> Result<()> {
        match self.sampling {
            Some(_) => Ok(()),
            None => Err(Error::invalid("sampling", "call Session::set_sampling before a sampled run")),
        }
    }

    /// Copies the state into the checkpoint (made on first use).
    fn save_checkpoint(&mut self) {
        if self.checkpoint.is_none() {
            self.checkpoint = Some((StateBuffers::new(&self.model.ctx, &self.model, self.batch), 0));
        }
        self.copy_state(true);
        if let Some((_, position)) = &mut self.checkpoint {
            *position = self.position;
        }
        self.checkpoint_valid = true;
    }

    /// State -> checkpoint (`save`) or checkpoint -> state, on the GPU.
    fn copy_state(&self, save: bool) {
        let Some((saved, _)) = &self.checkpoint else { return };
        let mut encoder = self.model.ctx.device.create_command_encoder(&Default::default());
        let live = self.state.conv.iter().chain(&self.state.ssm);
        for (live, saved) in live.zip(saved.conv.iter().chain(&saved.ssm)) {
            let (from, to) = if save { (live, saved) } else { (saved, live) };
            encoder.copy_buffer_to_buffer(from, 0, to, 0, from.size());
        }
        self.model.ctx.queue.submit([encoder.finish()]);
    }

    /// Dispatches the last recorded run of `steps` sampled one-token steps holds (None before
    /// one ran): what a decode step costs in fixed per-dispatch overheads.
    pub fn sampled_step_dispatches(&self, steps: usize) -> Option<usize> {
        self.tapes.get(&TapeKey::new(1, self.batch, Readback::Sampled(steps as u8))).map(|tape| tape.dispatches())
    }
}

/// What each step of a sampled run gave each sequence, [step][sequence].
fn sampled_rows(bytes: &[u8], batch: usize) -> Vec<Vec<Sampled>> {
    let words: Vec<u32> = bytemuck::pod_collect_to_vec(bytes);
    words.chunks(batch).map(|row| row.iter().map(|&w| Sampled::from_word(w)).collect()).collect()
}
