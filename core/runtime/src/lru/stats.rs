//! What a cache counts: hits, misses, evictions, load failures, and the distribution of the
//! load times of misses, kept in a fixed log-scale histogram (no allocation, constant size).
//!
//! The histogram has four buckets per power of two of nanoseconds (so a bucket spans at most
//! 19% of its values) up to 2^40 ns (18 minutes; longer loads land in the last bucket).
//! Percentiles are read off the cumulative counts and reported as the bucket's geometric
//! midpoint, so they are within 12% of the true value; the maximum is exact.

// Bucket indexes are below 160 and steps below 4, by construction; durations become floats only
// for the bucket midpoints and the quantile rank, where rounding is the point.
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, clippy::cast_sign_loss)]

/// Buckets per power of two.
const STEPS: u32 = 4;
/// Powers of two covered.
const OCTAVES: u32 = 40;
/// Buckets in all.
const BUCKETS: usize = (STEPS * OCTAVES) as usize;

/// A log-scale histogram of durations in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadTimes {
    counts: [u64; BUCKETS],
    total: u64,
    max: u64,
}

impl Default for LoadTimes {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadTimes {
    /// No samples.
    pub const fn new() -> Self {
        Self { counts: [0; BUCKETS], total: 0, max: 0 }
    }

    /// The bucket of `ns`: the power of two below it and which quarter of that octave.
    fn bucket(ns: u64) -> usize {
        if ns < u64::from(STEPS) {
            // 0..4 ns: a bucket each (the first octaves are narrower than four steps).
            return ns as usize;
        }
        let octave = 63 - ns.leading_zeros(); // floor(log2(ns)), at least 2
        let step = ((ns >> (octave - 2)) & u64::from(STEPS - 1)) as u8; // 0..4
        let index = (octave - 1) * STEPS + u32::from(step);
        index.min(BUCKETS as u32 - 1) as usize
    }

    /// The geometric midpoint of bucket `index`'s values.
    fn representative(index: usize) -> u64 {
        if index < STEPS as usize {
            return index as u64;
        }
        let index = index as u32; // < BUCKETS
        let octave = index / STEPS + 1;
        let step = u64::from(index % STEPS);
        let low = (1u64 << octave) + (step << (octave - 2));
        let high = low + (1u64 << (octave - 2));
        // Below 2^41, so exact in an f64 product's square root to well under a nanosecond.
        libm::sqrt(low as f64 * high as f64) as u64
    }

    /// Counts one duration.
    pub fn record(&mut self, ns: u64) {
        self.counts[Self::bucket(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    /// How many durations were counted.
    pub const fn count(&self) -> u64 {
        self.total
    }

    /// The longest duration counted (exact); 0 without samples.
    pub const fn max(&self) -> u64 {
        self.max
    }

    /// The duration below which `fraction` (0 to 1) of the samples lie, to within 12%; 0
    /// without samples. Never above the maximum.
    pub fn quantile(&self, fraction: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = libm::ceil(fraction.clamp(0.0, 1.0) * self.total as f64).max(1.0) as u64;
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::representative(index).min(self.max);
            }
        }
        self.max
    }
}

/// A cache's running counters (what a cache keeps; its users report them in their own form).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Gets answered from the cache.
    pub hits: u64,
    /// Gets that loaded (successfully or not).
    pub misses: u64,
    /// Entries that left because of a budget.
    pub evictions: u64,
    /// Loads that failed.
    pub load_failures: u64,
    /// Load times of misses that loaded.
    pub load_times: LoadTimes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut previous = 0;
        // Under Miri, every value below 256 (the narrow buckets) and every 37th up to 20,000.
        let sampled = |ns: &u64| !cfg!(miri) || *ns < 256 || ns % 37 == 0;
        for ns in (0..20_000u64).filter(sampled).chain([1 << 20, (1 << 20) + 1, 3 << 30, u64::MAX]) {
            let bucket = LoadTimes::bucket(ns);
            assert!(bucket >= previous || ns > 20_000, "{ns}");
            previous = bucket;
            let rep = LoadTimes::representative(bucket);
            if (4..1 << 40).contains(&ns) {
                let error = (rep as f64 - ns as f64).abs() / ns as f64;
                assert!(error <= 0.125, "{ns}: bucket {bucket} reports {rep}");
            }
        }
        assert_eq!(LoadTimes::bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_counts() {
        let mut times = LoadTimes::new();
        assert_eq!((times.quantile(0.5), times.max()), (0, 0));
        for ns in 1..=1000u64 {
            times.record(ns * 1000); // 1 us .. 1 ms, uniformly
        }
        let within = |got: u64, want: u64| (got as f64 - want as f64).abs() <= 0.12 * want as f64;
        assert!(within(times.quantile(0.5), 500_000), "{}", times.quantile(0.5));
        assert!(within(times.quantile(0.99), 990_000), "{}", times.quantile(0.99));
        assert_eq!(times.max(), 1_000_000);
        assert!(times.quantile(1.0) <= times.max());
        assert_eq!(times.count(), 1000);
    }
}
