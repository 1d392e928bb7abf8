//! The values a producer appends: uniform in 0..=100, reproducible by seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::segment::MAX_VALUE;

/// A stream of values in 0..=100.
pub struct Values {
    rng: StdRng,
}

impl Values {
    /// A stream seeded with `seed` (the same seed gives the same values on
    /// every run and machine), or from the OS's entropy.
    pub fn new(seed: Option<u64>) -> Values {
        Values {
            rng: match seed {
                Some(s) => StdRng::seed_from_u64(s),
                None => StdRng::from_entropy(),
            },
        }
    }

    /// The next value.
    #[inline]
    pub fn next_value(&mut self) -> u8 {
        self.rng.gen_range(0..=MAX_VALUE)
    }
}
