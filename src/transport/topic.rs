//! MQTT topic names and filters: validation (so a caller's mistake is an error at once, not a
//! broker disconnect later) and matching (so each message reaches the handlers of every filter
//! it matches, including overlapping ones).

/// The MQTT limit on the encoded length of a topic (a two-byte length prefix).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Why a topic or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TopicError(pub String);

fn check_common(s: &str, what: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError(format!("{what} is empty")));
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError(format!(
            "{what} is {} bytes long; MQTT allows at most {MAX_TOPIC_BYTES}",
            s.len()
        )));
    }
    if s.contains('\0') {
        return Err(TopicError(format!("{what} contains a NUL character")));
    }
    Ok(())
}

/// Checks a topic name to publish to: no wildcards.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    check_common(topic, "topic")?;
    if topic.contains('+') || topic.contains('#') {
        return Err(TopicError(format!(
            "topic `{topic}` contains a wildcard (`+` or `#`); wildcards are only for subscribing"
        )));
    }
    Ok(())
}

/// Checks a subscription filter: `+` fills one whole level, `#` only the whole last level.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter, "topic filter")?;
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Err(TopicError(format!(
                "filter `{filter}`: `#` must be a whole level and the last one (as in `a/b/#`)"
            )));
        }
        if level.contains('+') && *level != "+" {
            return Err(TopicError(format!(
                "filter `{filter}`: `+` must fill a whole level (as in `a/+/c`)"
            )));
        }
    }
    Ok(())
}

/// Whether `topic` matches `filter` by the MQTT rules; topics starting with `$` are not matched
/// by a filter starting with a wildcard.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert!(validate_topic("canvasl/sync").is_ok());
        assert!(validate_topic("a//b").is_ok());
        assert!(validate_topic("").unwrap_err().0.contains("empty"));
        assert!(validate_topic("a/+/b").unwrap_err().0.contains("wildcard"));
        assert!(validate_topic("a/#").unwrap_err().0.contains("wildcard"));
        assert!(validate_topic("a\0b").is_err());
        assert!(validate_topic(&"x".repeat(MAX_TOPIC_BYTES + 1))
            .unwrap_err()
            .0
            .contains("at most"));
        assert!(validate_topic(&"x".repeat(MAX_TOPIC_BYTES)).is_ok());
    }

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/+/c", "a/#", "+/+", "a/b", "/+"] {
            assert!(validate_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["a/#/c", "a#", "a/b#", "a+/b", "a/+b", ""] {
            assert!(validate_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching() {
        assert!(filter_matches("a/b", "a/b"));
        assert!(!filter_matches("a/b", "a/b/c"));
        assert!(filter_matches("a/+", "a/b"));
        assert!(!filter_matches("a/+", "a/b/c"));
        assert!(filter_matches("a/+/c", "a/x/c"));
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(filter_matches("#", "x/y"));
        assert!(filter_matches("+/+", "/x"));
        assert!(!filter_matches("+", "a/b"));
        assert!(!filter_matches("#", "$SYS/broker"));
        assert!(!filter_matches("+/broker", "$SYS/broker"));
        assert!(filter_matches("$SYS/#", "$SYS/broker"));
    }
}
