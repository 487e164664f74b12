//! Reconnect delays: exponential with jitter, so that many gateways that
//! lost one broker do not all come back in the same instant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Delays of 100 ms doubling to `max`, each scaled by a random factor in
/// [0.5, 1.5).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    seed: u64,
}

impl Backoff {
    /// Starts at 100 ms, caps at `max`.
    pub fn new(max: Duration) -> Backoff {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Backoff {
            next: Duration::from_millis(100),
            max,
            seed: u64::from(nanos) | 1,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let factor = 0.5 + (self.seed % 1000) as f64 / 1000.0;
        let delay = self.next.mul_f64(factor);
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] < Duration::from_millis(150));
        assert!(delays.iter().all(|d| *d < Duration::from_secs(3)));
        assert!(
            delays[9] >= Duration::from_secs(1),
            "reaches the cap: {delays:?}"
        );
    }
}
