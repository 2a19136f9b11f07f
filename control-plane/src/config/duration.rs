//! The durations the settings take: `10s`, `500ms`, `2m` or seconds everywhere, and days or
//! hours too for the audit trail's retention.

use std::time::Duration;

/// Default of CREDMGR_AUDIT_RETENTION.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 10s, 500ms or 1m"))?;
    match unit.trim() {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        other => Err(format!(
            "unknown unit `{other}` in `{text}`: use ms, s or m"
        )),
    }
}

/// CREDMGR_AUDIT_RETENTION: `30d`, `12h`, or what the other durations take (`90m`, `3600s`).
pub fn parse_retention(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let days_or_hours = |suffix: char, unit: u64| {
        t.strip_suffix(suffix)
            .and_then(|n| n.parse::<u64>().ok())
            .map(|n| Duration::from_secs(n.saturating_mul(unit)))
    };
    let d = days_or_hours('d', 86_400)
        .or_else(|| days_or_hours('h', 3600))
        .map_or_else(|| parse_duration(t), Ok)?;
    if d < Duration::from_secs(60) {
        return Err(format!("`{text}`: keep the audit trail at least 1m"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn retention_in_days_hours_or_durations() {
        assert_eq!(parse_retention("30d"), Ok(DEFAULT_RETENTION));
        assert_eq!(parse_retention("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_retention("90m"), Ok(Duration::from_secs(5400)));
        assert!(parse_retention("1s").is_err());
        assert!(parse_retention("soon").is_err());
    }
}
