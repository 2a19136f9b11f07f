//! How webhooks are delivered: the receivers' URLs allowed, the timeout, the retries.

use std::time::Duration;

/// Default first retry delay; each next one doubles, up to [`MAX_RETRY_DELAY`].
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(5);
/// Default attempts before a delivery fails for good (the last 3 to 5½ hours after the first
/// with the default base, as the jitter falls).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 15;
/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// Default time a receiver has to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether `http://` URLs on the loopback interface (127.0.0.0/8, ::1, localhost) are
    /// accepted (CREDMGR_WEBHOOK_ALLOW_LOOPBACK_HTTP): for tests and a receiver next to the
    /// control plane. Every other URL must be `https://`.
    pub allow_loopback_http: bool,
    pub retry_base: Duration,
    pub max_attempts: u32,
    pub timeout: Duration,
    /// How often the worker looks for due deliveries.
    pub poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_loopback_http: false,
            retry_base: DEFAULT_RETRY_BASE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
            poll: Duration::from_secs(1),
        }
    }
}

impl Settings {
    /// The wait before the attempt after `attempts` failed ones: `base * 2^(attempts-1)`, at
    /// most [`MAX_RETRY_DELAY`], of which a random part (up to half) is taken off, so that
    /// the deliveries that failed together (a receiver down) do not all come back at once.
    pub fn retry_delay(&self, attempts: u32, random: f64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let full = self
            .retry_base
            .saturating_mul(1u32 << exp)
            .min(MAX_RETRY_DELAY);
        full.mul_f64(1.0 - 0.5 * random.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_a_cap() {
        let s = Settings::default();
        assert_eq!(s.retry_delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(s.retry_delay(2, 0.0), Duration::from_secs(10));
        assert_eq!(s.retry_delay(3, 1.0), Duration::from_secs(10));
        assert_eq!(s.retry_delay(40, 0.0), MAX_RETRY_DELAY);
    }
}
