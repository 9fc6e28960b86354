//! Retries with exponential backoff for 429, 5xx and dropped connections, honouring `Retry-After`.

use std::time::{Duration, SystemTime};

/// How often and how patiently to retry transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total (1 means no retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each next one.
    pub base_delay: Duration,
    /// Upper bound of one delay (also caps `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before retry number `attempt` (1-based), preferring the server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        // A little jitter so that concurrent transfers do not retry in lockstep.
        let jitter_ms = (SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            % 100) as u64;
        (exp + Duration::from_millis(jitter_ms)).min(self.max_delay)
    }
}

/// Whether an HTTP status is worth retrying.
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parses `Retry-After`: delay seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert!(p.delay(1, None) >= Duration::from_millis(100));
        assert!(p.delay(3, None) >= Duration::from_millis(400));
        assert_eq!(p.delay(30, None), Duration::from_secs(1));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
        assert!(retryable_status(503) && retryable_status(429) && !retryable_status(404));
    }
}
