//! The draws foldwise makes from a stream, each with a fixed, documented algorithm, so that a
//! dependency upgrade cannot change a recorded run (the algorithms behind `rand`'s
//! distributions are free to change between versions).

use rand_chacha::rand_core::Rng;

/// Draws on top of any generator (in foldwise: a [`crate::SeedNode::rng`] stream).
///
/// ```
/// use cv_seed::{Draw, SeedTree};
/// let mut rng = SeedTree::new(3).child("augment").rng();
/// let u = rng.uniform();
/// assert!((0.0..1.0).contains(&u));
/// assert!(rng.below(10) < 10);
/// ```
pub trait Draw: Rng {
    /// Uniform in `[0, 1)`: the top 53 bits of one `next_u64`, times 2^-53.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[low, high)`: `low + (high - low) * uniform()`.
    fn uniform_in(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    /// Uniform integer in `[0, n)`, without bias: Lemire's widening multiply with rejection.
    /// Draws nothing when `n <= 1`.
    fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// `true` with probability `p`: `uniform() < p`.
    fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal by Box–Muller (two uniforms per draw, the second value discarded so
    /// that every draw consumes the same amount of the stream).
    fn normal(&mut self) -> f64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates shuffle from the end, `below(i + 1)` for each position `i`.
    fn shuffle<T>(&mut self, values: &mut [T]) {
        for i in (1..values.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            values.swap(i, j);
        }
    }
}

impl<R: Rng + ?Sized> Draw for R {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeedTree;

    #[test]
    fn draws_are_pinned() {
        // Values from the documented algorithms over the pinned `init` stream of seed 42: its
        // first two u64 outputs are 11970644190333541611 and 16699699968113278191.
        let mut rng = SeedTree::new(42).child("init").rng();
        let u = rng.uniform();
        assert_eq!(
            u,
            (11_970_644_190_333_541_611u64 >> 11) as f64 / (1u64 << 53) as f64
        );
        let below = rng.below(1000);
        assert_eq!(
            below,
            ((16_699_699_968_113_278_191u128 * 1000) >> 64) as u64
        );
    }

    #[test]
    fn below_is_uniform_enough_and_in_range() {
        let mut rng = SeedTree::new(1).child("t").rng();
        let mut counts = [0usize; 6];
        for _ in 0..60_000 {
            counts[rng.below(6) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = SeedTree::new(2).child("n").rng();
        let xs: Vec<f64> = (0..50_000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((var - 1.0).abs() < 0.03, "{var}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = SeedTree::new(5).child("s").rng();
        let mut v: Vec<u32> = (0..100).collect();
        rng.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
