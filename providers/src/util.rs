//! Small helpers every provider needs (times, sandbox names), kept here so that no provider module
//! imports another.

/// Unix seconds of an RFC 3339 time (`2024-05-01T12:34:56.123456789Z`, any offset); `None` for
/// anything else and for times before 1970 (Docker's "never" is year 1).
pub(crate) fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A fresh sandbox name `sbx-<name>-<4 hex>` that every provider accepts: the user's name with anything
/// but ASCII letters, digits and `-` turned into `-`, cut to `max` characters (short names keep socket
/// paths short on Docker), trimmed of leading and trailing `-`; `sbx-<4 hex>` when nothing is left.
pub(crate) fn fresh_name(name: &str, max: usize) -> String {
    let clean: String = name.chars().take(max).map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let clean = clean.trim_matches('-');
    let suffix = crate::random_hex(2);
    if clean.is_empty() {
        format!("sbx-{suffix}")
    } else {
        format!("sbx-{clean}-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_times_as_providers_write_them() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-05-01T12:34:56.123456789Z"), Some(1_714_566_896));
        assert_eq!(parse_rfc3339("2024-05-01T12:34:56.123Z"), Some(1_714_566_896));
        assert_eq!(parse_rfc3339("2024-05-01T14:34:56+02:00"), Some(1_714_566_896));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), None, "Docker's zero time");
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(parse_rfc3339(""), None);
    }

    #[test]
    fn names_are_safe_and_short() {
        let n = fresh_name("My Project/feature x", 24);
        assert!(n.starts_with("sbx-My-Project-feature-x-"), "{n}");
        assert_eq!(n.len(), "sbx-My-Project-feature-x-".len() + 4);
        assert!(n[4..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{n}");
        assert!(fresh_name("", 24).starts_with("sbx-") && fresh_name("", 24).len() == 8);
        assert_eq!(fresh_name("--", 24).len(), 8);
        assert_eq!(fresh_name(&"a".repeat(100), 24).len(), 4 + 24 + 5);
        let n = fresh_name("ünï_cøde.x", 40);
        assert!(n.starts_with("sbx-n--c-de-x-") && n.len() == "sbx-n--c-de-x-".len() + 4, "{n}");
    }
}
