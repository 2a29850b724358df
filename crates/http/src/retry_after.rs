//! `Retry-After` (delta-seconds or HTTP date), OpenAI's `retry-after-ms`, and the `x-should-retry`
//! override.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// The longest wait accepted from a provider; longer hints are capped (a bad header must not park a job
/// for a year).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// How long the provider asked us to wait, read at the current time. See [`retry_after_at`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// How long the provider asked us to wait: `retry-after-ms` (milliseconds, may be fractional) wins over
/// `retry-after`, which is either delta-seconds (`"30"`, fractional accepted) or an HTTP date (a date in
/// the past means "now": zero). Unparseable or negative values are ignored. Capped at
/// [`MAX_RETRY_AFTER`].
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(parse_seconds_like)
        && let Some(d) = Duration::try_from_secs_f64(ms / 1000.0).ok()
    {
        return Some(d.min(MAX_RETRY_AFTER));
    }
    let value = text("retry-after")?;
    if let Some(secs) = parse_seconds_like(value) {
        return Duration::try_from_secs_f64(secs)
            .ok()
            .map(|d| d.min(MAX_RETRY_AFTER));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

fn parse_seconds_like(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// The provider's explicit verdict on retrying (`x-should-retry: true|false`), if it sent one.
pub fn should_retry_override(headers: &HeaderMap) -> Option<bool> {
    let v = headers.get("x-should-retry")?.to_str().ok()?.trim();
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn delta_seconds_dates_and_ms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", "30")]), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", "1.5")]), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:42 GMT")]), now),
            Some(Duration::from_secs(42))
        );
        // A date already past: retry now.
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT")]), now),
            Some(Duration::ZERO)
        );
        // retry-after-ms wins.
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", "30"), ("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after_at(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after_at(&headers(&[("retry-after", "-3")]), now), None);
        assert_eq!(retry_after_at(&HeaderMap::new(), now), None);
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", "99999999")]), now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn should_retry_header() {
        assert_eq!(
            should_retry_override(&headers(&[("x-should-retry", "true")])),
            Some(true)
        );
        assert_eq!(
            should_retry_override(&headers(&[("x-should-retry", "FALSE")])),
            Some(false)
        );
        assert_eq!(
            should_retry_override(&headers(&[("x-should-retry", "maybe")])),
            None
        );
        assert_eq!(should_retry_override(&HeaderMap::new()), None);
    }
}
