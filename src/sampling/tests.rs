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
    for position in 0..200 {
        let logits = random_logits(&mut data, 500);
        let expected = argmax(&logits);
        assert_eq!(greedy.sample(&logits, &[], position).ok(), expected);
        assert_eq!(cold.sample(&logits, &[], position).ok(), expected);
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
    for position in 0..2000 {
        let t = s.sample(&logits, &[], position).expect("valid logits");
        assert!(best.contains(&t), "token {t} is not among the 5 best");
        drawn.insert(t);
    }
    assert_eq!(drawn.len(), 5, "every one of the k best should come up");
    let cands = s.candidate_probs(&logits, &[]).expect("valid logits");
    let mut best_in_id_order = best.clone();
    best_in_id_order.sort();
    assert_eq!(ids(&cands), best_in_id_order);
}

/// Every filter is a threshold on the score: entries tied with the last one kept stay.
#[test]
fn filters_keep_ties_with_their_boundary() {
    let logits = [1.0, 3.0, 2.0, 2.0, 0.0];
    let s = sampler(with(|p| p.top_k = 2));
    assert_eq!(ids(&s.candidate_probs(&logits, &[]).unwrap()), vec![1, 2, 3]);
    // 3.0 alone holds about 0.52 of the mass: top-p 0.6 needs a 2.0, and takes both.
    let s = sampler(with(|p| p.top_p = 0.6));
    assert_eq!(ids(&s.candidate_probs(&logits, &[]).unwrap()), vec![1, 2, 3]);
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
    (0..n as u64).map(|position| s.sample(&flat, &[], position).expect("valid logits")).collect()
}

/// The counter-based generator: values in [0, 1), spread evenly, different for neighbouring
/// positions and seeds (including seeds that differ only in their high 32 bits).
#[test]
fn uniform_at_is_spread_and_depends_on_seed_and_position() {
    let mut buckets = [0usize; 10];
    for position in 0..100_000u64 {
        let u = uniform_at(3, position);
        assert!((0.0..1.0).contains(&u));
        buckets[(u * 10.0) as usize] += 1;
    }
    for count in buckets {
        assert!((9_500..10_500).contains(&count), "bucket count {count} of 100000 draws");
    }
    assert_ne!(uniform_at(3, 10), uniform_at(3, 11));
    assert_ne!(uniform_at(3, 10), uniform_at(4, 10));
    assert_ne!(uniform_at(3, 10), uniform_at(3 + (1 << 32), 10));
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
    for position in 0..20_000 {
        counts[s.sample(&logits, &[], position).expect("valid logits") as usize] += 1;
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
        ("repetition_window", with(|p| p.repetition_window = MAX_REPETITION_WINDOW + 1)),
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
    assert!(s.sample(&[], &[], 0).is_err());
    assert!(s.sample(&[0.0, f32::NAN], &[], 0).is_err());
    assert!(s.sample(&[0.0, f32::INFINITY], &[], 0).is_err());
    assert!(s.sample(&[f32::NEG_INFINITY; 3], &[], 0).is_err());
    let mut g = sampler(SamplingParams::greedy());
    assert!(g.sample(&[f32::NAN, 1.0], &[], 0).is_err());
    // Masked (-inf) tokens are fine and are never drawn.
    for position in 0..100 {
        assert_eq!(s.sample(&[f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY], &[], position).ok(), Some(1));
    }
}

/// xoshiro256** (Blackman & Vigna): small, fast, statistically solid, and
/// self-contained, so draws are identical on every platform, wasm included.
/// Test data: random logits.
struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Expands the 64-bit seed with SplitMix64, as the xoshiro authors
    /// recommend; this also avoids the forbidden all-zero state.
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut splitmix = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self { s: [splitmix(), splitmix(), splitmix(), splitmix()] }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1): the top 53 bits fill an f64 mantissa exactly.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}
