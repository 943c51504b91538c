//! The sampler's filters, draws and GPU-candidate path against hand-made rows.

use super::*;

fn sampler(params: SamplingParams) -> Sampler {
    Sampler::new(params).expect("test parameters are valid")
}

/// Default parameters with one change, e.g. `with(|p| p.top_k = 5)`.
fn with(change: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
    let mut params = SamplingParams::default();
    change(&mut params);
    params
}

fn ids(cands: &[(u32, f32)]) -> Vec<u32> {
    cands.iter().map(|c| c.0).collect()
}

/// Logits whose softmax is exactly the given probabilities (up to rounding).
fn logits_of(probs: &[f32]) -> Vec<f32> {
    probs.iter().map(|p| p.ln()).collect()
}

fn random_logits(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (rng.next_f64() * 20.0 - 10.0) as f32).collect()
}

#[test]
fn argmax_takes_first_of_ties_and_skips_nan() {
    assert_eq!(argmax(&[]), None);
    assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
    assert_eq!(argmax(&[f32::NAN, -1.0, f32::NAN]), Some(1));
}

#[test]
fn tiny_temperature_matches_greedy() {
    let mut data = Rng::new(7);
    let mut greedy = sampler(SamplingParams::greedy());
    let mut cold = sampler(with(|p| p.temperature = 1e-6));
    for _ in 0..200 {
        let logits = random_logits(&mut data, 500);
        let expected = argmax(&logits);
        assert_eq!(greedy.sample(&logits, &[]).ok(), expected);
        assert_eq!(cold.sample(&logits, &[]).ok(), expected);
    }
}

#[test]
fn top_k_never_leaves_the_k_best() {
    let mut data = Rng::new(11);
    let logits = random_logits(&mut data, 1000);
    let mut order: Vec<u32> = (0..1000).collect();
    order.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
    let best: Vec<u32> = order[..5].to_vec();

    // A high temperature flattens the distribution so that, without the
    // filter, tokens outside the top 5 would be drawn often.
    let mut s = sampler(with(|p| {
        p.temperature = 5.0;
        p.top_k = 5
    }));
    let mut drawn = std::collections::HashSet::new();
    for _ in 0..2000 {
        let t = s.sample(&logits, &[]).expect("valid logits");
        assert!(best.contains(&t), "token {t} is not among the 5 best");
        drawn.insert(t);
    }
    assert_eq!(drawn.len(), 5, "every one of the k best should come up");
    let cands = s.candidate_probs(&logits, &[]).expect("valid logits");
    assert_eq!(ids(&cands), best);
}

#[test]
fn top_p_keeps_smallest_set_reaching_p() {
    let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
    let cases = [(0.4, vec![0]), (0.7, vec![0, 1]), (0.8, vec![0, 1])];
    let more_cases = [(0.81, vec![0, 1, 2]), (1.0, vec![0, 1, 2, 3])];
    for (top_p, expected) in cases.into_iter().chain(more_cases) {
        let s = sampler(with(|p| p.top_p = top_p));
        let cands = s.candidate_probs(&logits, &[]).expect("valid logits");
        assert_eq!(ids(&cands), expected, "top_p = {top_p}");
        let total: f32 = cands.iter().map(|c| c.1).sum();
        assert!((total - 1.0).abs() < 1e-5, "renormalized, got {total}");
    }
    // Renormalized: with {0, 1} kept, token 0 has 0.5 / 0.8.
    let s = sampler(with(|p| p.top_p = 0.7));
    let cands = s.candidate_probs(&logits, &[]).expect("valid logits");
    assert!((cands[0].1 - 0.625).abs() < 1e-5, "got {}", cands[0].1);
}

#[test]
fn min_p_drops_tokens_below_fraction_of_best() {
    // Best is 0.5, so min_p 0.29 sets the bar at 0.145, 0.31 at 0.155,
    // 0.61 at 0.305.
    let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
    for (min_p, expected) in [(0.29, vec![0, 1, 2]), (0.31, vec![0, 1]), (0.61, vec![0])] {
        let s = sampler(with(|p| p.min_p = min_p));
        assert_eq!(ids(&s.candidate_probs(&logits, &[]).expect("valid logits")), expected, "min_p {min_p}");
    }
}

fn prob_of(s: &Sampler, logits: &[f32], recent: &[u32], id: u32) -> f32 {
    let cands = s.candidate_probs(logits, recent).expect("valid logits");
    cands.iter().find(|c| c.0 == id).map_or(0.0, |c| c.1)
}

#[test]
fn repetition_penalty_lowers_positive_and_negative_logits() {
    let s = sampler(with(|p| p.repetition_penalty = 2.0));
    let positive = [2.0, 1.0, 0.5];
    assert!(prob_of(&s, &positive, &[0], 0) < prob_of(&s, &positive, &[], 0) - 0.1);
    // Dividing -1 by 2 would raise it; the penalty must multiply instead.
    let negative = [-1.0, -2.0, -0.5];
    assert!(prob_of(&s, &negative, &[0], 0) < prob_of(&s, &negative, &[], 0) - 0.05);
    // Repeating the token in the window does not penalize it twice.
    assert_eq!(prob_of(&s, &positive, &[0, 0, 0], 0), prob_of(&s, &positive, &[0], 0));
    // Out-of-vocabulary ids in the history are ignored, not an error.
    assert!(s.candidate_probs(&positive, &[99]).is_ok());
}

#[test]
fn repetition_penalty_only_looks_inside_the_window() {
    let params = with(|p| {
        p.repetition_penalty = 2.0;
        p.repetition_window = 3
    });
    let s = sampler(params);
    let logits = [2.0, 1.0, 0.5];
    // Token 1 is in the window every time; only token 0's place changes.
    let unpenalized = prob_of(&s, &logits, &[1], 0);
    // Token 0 is 4th from the end: outside a window of 3.
    assert_eq!(prob_of(&s, &logits, &[0, 1, 1, 1], 0), unpenalized);
    assert!(prob_of(&s, &logits, &[1, 0, 1, 1], 0) < unpenalized - 0.1);
}

fn draws(seed: u64, n: usize) -> Vec<u32> {
    let mut s = sampler(with(|p| p.seed = seed));
    let flat = vec![0.0f32; 100];
    (0..n).map(|_| s.sample(&flat, &[]).expect("valid logits")).collect()
}

/// The GPU path (`top_k_request`, then `sample_candidates`) draws the same tokens as
/// `sample` on the whole row, whatever order the candidates come in. Candidates are built
/// here the way shaders/top_k.wgsl defines them (tests/ops.rs checks the kernel).
#[test]
fn candidates_draw_like_the_whole_row() {
    let mut rng = Rng::new(7);
    let cases = [
        with(|p| p.top_k = 1),
        with(|p| p.top_k = 5),
        with(|p| {
            p.top_k = 40;
            p.temperature = 0.7;
            p.repetition_penalty = 1.3;
            p.repetition_window = 8;
        }),
        with(|p| {
            p.top_k = 20;
            p.top_p = 0.8;
            p.min_p = 0.05;
            p.repetition_penalty = 0.8;
        }),
    ];
    for (i, params) in cases.into_iter().enumerate() {
        let (mut whole, mut gpu) = (sampler(params.clone()), sampler(params.clone()));
        for step in 0..50 {
            // Rounded logits: ties at the k-th place happen.
            let row: Vec<f32> = random_logits(&mut rng, 300).iter().map(|x| (x * 4.0).round() / 4.0).collect();
            let recent: Vec<u32> = (0..12).map(|j| ((step * 7 + j * 13) % 300) as u32).collect();
            let request = gpu.top_k_request(&recent).expect("top-k at a positive temperature");
            // In reverse id order, to show the order does not matter.
            let mut candidates = crate::reference::top_k_candidates(&row, &request.penalized, request.penalty, request.k);
            candidates.reverse();
            assert_eq!(gpu.sample_candidates(candidates).unwrap(), whole.sample(&row, &recent).unwrap(), "case {i} step {step}");
        }
    }
    // No GPU path without top-k, or at temperature 0.
    assert!(sampler(SamplingParams::default()).top_k_request(&[]).is_none());
    assert!(sampler(with(|p| {
        p.top_k = 5;
        p.temperature = 0.0;
    }))
    .top_k_request(&[])
    .is_none());
    assert!(sampler(with(|p| p.top_k = TOP_K_MAX + 1)).top_k_request(&[]).is_none());
}

#[test]
fn seed_makes_draws_reproducible() {
    assert_eq!(draws(42, 50), draws(42, 50));
    assert_ne!(draws(42, 50), draws(43, 50));
}

#[test]
fn draws_follow_the_distribution() {
    let logits = logits_of(&[0.7, 0.2, 0.1]);
    let mut s = sampler(with(|p| p.seed = 5));
    let mut counts = [0usize; 3];
    for _ in 0..20_000 {
        counts[s.sample(&logits, &[]).expect("valid logits") as usize] += 1;
    }
    for (count, p) in counts.iter().zip([0.7, 0.2, 0.1]) {
        let freq = *count as f64 / 20_000.0;
        assert!((freq - p).abs() < 0.02, "frequency {freq} for probability {p}");
    }
}

#[test]
fn validate_rejects_out_of_range_values() {
    let cases = [
        ("top_p", with(|p| p.top_p = 1.5)),
        ("top_p", with(|p| p.top_p = 0.0)),
        ("temperature", with(|p| p.temperature = -1.0)),
        ("temperature", with(|p| p.temperature = f32::NAN)),
        ("min_p", with(|p| p.min_p = f32::NAN)),
        ("repetition_penalty", with(|p| p.repetition_penalty = 0.0)),
    ];
    for (field, params) in cases {
        match Sampler::new(params) {
            Err(Error::InvalidArgument { name, .. }) => assert_eq!(name, field),
            Err(other) => panic!("wrong error for {field}: {other}"),
            Ok(_) => panic!("{field} should be rejected"),
        }
    }
    assert!(SamplingParams::default().validate().is_ok());
    assert!(SamplingParams::greedy().validate().is_ok());
}

#[test]
fn broken_logits_are_errors() {
    let mut s = sampler(SamplingParams::default());
    assert!(s.sample(&[], &[]).is_err());
    assert!(s.sample(&[0.0, f32::NAN], &[]).is_err());
    assert!(s.sample(&[0.0, f32::INFINITY], &[]).is_err());
    assert!(s.sample(&[f32::NEG_INFINITY; 3], &[]).is_err());
    let mut g = sampler(SamplingParams::greedy());
    assert!(g.sample(&[f32::NAN, 1.0], &[]).is_err());
    // Masked (-inf) tokens are fine and are never drawn.
    for _ in 0..100 {
        assert_eq!(s.sample(&[f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY], &[]).ok(), Some(1));
    }
}
