//! A port of numpy's legacy `RandomState` (MT19937), the generator behind scikit-learn's
//! `random_state=<int>`.
//!
//! Only what the splitters draw is ported: integer seeding (`init_genrand`, not `init_by_array`),
//! the raw 32/64-bit outputs, `random_interval`, `shuffle` and `permutation`. Each is bit-exact
//! with numpy, so the same seed gives the same folds as scikit-learn.

use crate::SplitError;

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// numpy's `np.random.RandomState(seed)` for an integer seed.
///
/// ```
/// use cv_split::RandomState;
/// // np.random.RandomState(0).permutation(5) == [2, 0, 1, 3, 4]
/// let mut rng = RandomState::new(0).unwrap();
/// assert_eq!(rng.permutation(5), vec![2, 0, 1, 3, 4]);
/// ```
#[derive(Clone)]
pub struct RandomState {
    mt: [u32; N],
    /// The tempered outputs of the current state, computed a whole block at a time.
    out: [u32; N],
    pos: usize,
}

impl std::fmt::Debug for RandomState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RandomState")
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl RandomState {
    /// Seeds the generator as numpy does for an integer seed; seeds outside `0..=2^32-1` are
    /// refused with numpy's message.
    pub fn new(seed: u64) -> Result<Self, SplitError> {
        let seed = u32::try_from(seed).map_err(|_| SplitError::SeedOutOfRange(i128::from(seed)))?;
        Ok(Self::from_u32(seed))
    }

    /// Seeds from a 32-bit value, which is always in range.
    pub fn from_u32(seed: u32) -> Self {
        let mut mt = [0u32; N];
        mt[0] = seed;
        for i in 1..N {
            let prev = mt[i - 1];
            mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        // numpy leaves `pos = 624` after seeding, so the first draw twists first.
        Self {
            mt,
            out: [0; N],
            pos: N,
        }
    }

    fn twist(&mut self) {
        // The standard recurrence, split into three loops so that no index wraps (which lets the
        // compiler vectorise), with the conditional XOR made branch-free.
        #[inline(always)]
        fn step(upper: u32, lower: u32, far: u32) -> u32 {
            let y = (upper & UPPER_MASK) | (lower & LOWER_MASK);
            far ^ (y >> 1) ^ ((y & 1).wrapping_neg() & MATRIX_A)
        }
        let mt = &mut self.mt;
        for i in 0..N - M {
            mt[i] = step(mt[i], mt[i + 1], mt[i + M]);
        }
        for i in N - M..N - 1 {
            mt[i] = step(mt[i], mt[i + 1], mt[i + M - N]);
        }
        mt[N - 1] = step(mt[N - 1], mt[0], mt[M - 1]);
        for (out, &y) in self.out.iter_mut().zip(mt.iter()) {
            let y = y ^ (y >> 11);
            let y = y ^ ((y << 7) & 0x9d2c_5680);
            let y = y ^ ((y << 15) & 0xefc6_0000);
            *out = y ^ (y >> 18);
        }
        self.pos = 0;
    }

    /// The next raw 32-bit output (numpy's `next_uint32`).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == N {
            self.twist();
        }
        let y = self.out[self.pos];
        self.pos += 1;
        y
    }

    /// The next raw 64-bit output: the first 32-bit draw is the high word, as in numpy.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let hi = u64::from(self.next_u32());
        let lo = u64::from(self.next_u32());
        (hi << 32) | lo
    }

    /// A double in `[0, 1)` with 53 random bits (numpy's `random_sample`).
    pub fn next_f64(&mut self) -> f64 {
        let a = u64::from(self.next_u32() >> 5);
        let b = u64::from(self.next_u32() >> 6);
        (a as f64 * 67_108_864.0 + b as f64) / 9_007_199_254_740_992.0
    }

    /// A uniform integer in `[0, max]`, inclusive, by masked rejection (numpy's
    /// `random_interval`). Draws nothing when `max == 0`.
    #[inline]
    pub fn random_interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        // The smallest all-ones mask covering `max` (numpy ORs shifted copies; same value).
        let mask = u64::MAX >> max.leading_zeros();
        if max <= u64::from(u32::MAX) {
            let (mask, max) = (mask as u32, max as u32);
            loop {
                let v = self.next_u32() & mask;
                if v <= max {
                    return u64::from(v);
                }
            }
        } else {
            loop {
                let v = self.next_u64() & mask;
                if v <= max {
                    return v;
                }
            }
        }
    }

    /// Shuffles in place as `RandomState.shuffle` does: Fisher–Yates from the end,
    /// `n - 1` draws.
    pub fn shuffle<T>(&mut self, values: &mut [T]) {
        for i in (1..values.len()).rev() {
            let j = self.random_interval(i as u64) as usize;
            values.swap(i, j);
        }
    }

    /// `RandomState.permutation(n)`: a shuffled `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        self.permutation_of(n)
    }

    /// `permutation(n)` in another integer type (the draws do not depend on it, as in numpy).
    ///
    /// # Panics
    /// If `n - 1` does not fit in `T`.
    pub fn permutation_of<T: TryFrom<usize>>(&mut self, n: usize) -> Vec<T> {
        let mut values: Vec<T> = (0..n)
            .map(|i| T::try_from(i).unwrap_or_else(|_| panic!("{n} values do not fit the type")))
            .collect();
        self.shuffle(&mut values);
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_outputs_match_the_reference_mt19937() {
        // The reference MT19937 seeded by init_genrand(5489) starts 3499211612, 581869302.
        let mut rng = RandomState::from_u32(5489);
        assert_eq!(rng.next_u32(), 3_499_211_612);
        assert_eq!(rng.next_u32(), 581_869_302);
    }

    #[test]
    fn seeds_past_32_bits_are_refused() {
        let err = RandomState::new(1 << 32).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Seed must be between 0 and 2**32 - 1, got 4294967296."
        );
        assert!(RandomState::new(u64::from(u32::MAX)).is_ok());
    }

    #[test]
    fn random_interval_of_zero_draws_nothing() {
        let mut a = RandomState::from_u32(7);
        let mut b = a.clone();
        assert_eq!(a.random_interval(0), 0);
        assert_eq!(a.next_u32(), b.next_u32());
    }
}
