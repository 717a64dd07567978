//! Identifiers and timestamps in the exact textual forms the reference relay puts on the wire,
//! so peers and clients of the reference can parse ours without special cases.

use rand::Rng;

/// Current UTC time as ISO-8601 with microseconds and a trailing `Z`
/// (`2026-11-25T11:50:00.123456Z`), the reference's `_now()` format.
pub fn now_iso() -> String {
    // `to_rfc3339_opts` writes this exact form without parsing a format string per call
    // (`format(..)` did, and showed up in the send path's profile).
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Current time as Unix seconds with sub-second precision (the reference's `received_at`).
pub fn now_unix() -> f64 {
    let now = chrono::Utc::now();
    now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6
}

/// Parses a reference timestamp (ISO-8601, with or without `Z` or fraction) into Unix seconds.
/// Returns `None` for anything unparseable, so callers can reject rather than guess.
pub fn parse_iso(ts: &str) -> Option<f64> {
    let clean = ts.trim().trim_end_matches('Z');
    let parsed = chrono::NaiveDateTime::parse_from_str(clean, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(ts.trim())
                .ok()
                .map(|d| d.naive_utc())
        })?;
    let utc = parsed.and_utc();
    Some(utc.timestamp() as f64 + f64::from(utc.timestamp_subsec_micros()) / 1e6)
}

/// A random identifier `<prefix>_<12 hex>` (messages, tasks, sessions, cards).
pub fn make_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_hex(12))
}

/// A fresh link token: `tok_` + 16 lowercase hex characters.
pub fn make_token() -> String {
    format!("tok_{}", random_hex(16))
}

fn random_hex(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_reference_shape() {
        let id = make_id("msg");
        assert_eq!(id.len(), 16);
        assert!(id.starts_with("msg_"));
        assert!(
            id[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let tok = make_token();
        assert_eq!(tok.len(), 20);
        assert!(tok.starts_with("tok_"));
    }

    #[test]
    fn timestamps_round_trip() {
        let now = now_iso();
        assert!(now.ends_with('Z'));
        // The reference's exact shape: 2026-11-25T11:50:00.123456Z.
        assert_eq!(now.len(), 27, "{now}");
        assert_eq!(&now[10..11], "T");
        assert_eq!(&now[19..20], ".");
        let parsed = parse_iso(&now).expect("own format parses");
        assert!((parsed - now_unix()).abs() < 5.0);
        assert!(parse_iso("2026-01-02T03:04:05Z").is_some());
        assert!(parse_iso("2026-01-02T03:04:05.5").is_some());
        assert!(parse_iso("yesterday").is_none());
    }
}
