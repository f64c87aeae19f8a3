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
        Self { mt, pos: N }
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.mt[i] & UPPER_MASK) | (self.mt[(i + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.mt[i] = self.mt[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    /// The next raw 32-bit output (numpy's `next_uint32`).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == N {
            self.twist();
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
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
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        mask |= mask >> 32;
        if max <= u64::from(u32::MAX) {
            let mask = mask as u32;
            let max = max as u32;
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
        let mut values: Vec<usize> = (0..n).collect();
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
