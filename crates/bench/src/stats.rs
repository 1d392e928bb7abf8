//! Medians and percentiles over samples.

/// The `q` quantile (0.0..=1.0) of `samples`, sorting them in place (nearest rank).
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// The median of `samples`.
pub fn median(samples: &mut [f64]) -> f64 {
    quantile(samples, 0.5)
}

/// Median and 99th percentile of `samples`.
pub fn summarize(samples: &mut [f64]) -> (f64, f64) {
    (quantile(samples, 0.5), quantile(samples, 0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        v.reverse();
        let (m, p) = summarize(&mut v);
        assert!((50.0..=51.0).contains(&m));
        assert_eq!(p, 99.0);
    }
}
