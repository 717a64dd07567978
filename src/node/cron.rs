//! Five-field cron expressions (`minute hour day-of-month month day-of-week`), for the
//! card's `availability.schedule`: a node that wakes on a schedule tells peers when it is
//! next active (`next_active_at`), computed here as the reference computes it. Fields take
//! `*`, numbers, ranges `a-b`, lists `a,b` and steps `*/n`, `a-b/n`, `a/n` (no names);
//! day-of-week 0 is Sunday. As in cron, when both day fields are restricted a day matching
//! either one matches. Times are UTC (the block's `timezone` is informational, as in the
//! reference).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};

/// A parsed expression: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether the day-of-month and day-of-week fields were `*` (unrestricted).
    any_day: bool,
    any_weekday: bool,
}

/// How far ahead a next time is looked for (the reference's bound): an expression that
/// matches no date in four years (`0 0 31 2 *`) has none.
const HORIZON_DAYS: i64 = 4 * 366;

/// Parses one field into a bit set of the values in `lo..=hi`.
fn field(text: &str, lo: u32, hi: u32, name: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("cron {name} field {text:?}: {why}");
    let number = |s: &str| -> Result<u32, String> {
        let n: u32 = s
            .parse()
            .map_err(|_| bad(&format!("{s:?} is not a number")))?;
        if n < lo || n > hi {
            return Err(bad(&format!("{n} is outside {lo}-{hi}")));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| bad(&format!("step {s:?} is not a number")))?;
                if step == 0 {
                    return Err(bad("a step of 0"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (start, end) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(bad(&format!("range {a}-{b} runs backwards")));
            }
            (a, b)
        } else {
            let a = number(range)?;
            // `a/n` means from a to the end, every n.
            (a, if part.contains('/') { hi } else { a })
        };
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Schedule {
    /// Parses an expression; the error names the field and what is wrong.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [min, hour, dom, month, dow] = fields[..] else {
            return Err(format!(
                "cron expression {expr:?} must have 5 fields (minute hour day month weekday), \
                 it has {}",
                fields.len()
            ));
        };
        Ok(Schedule {
            minutes: field(min, 0, 59, "minute")?,
            hours: field(hour, 0, 23, "hour")? as u32,
            days: field(dom, 1, 31, "day-of-month")? as u32,
            months: field(month, 1, 12, "month")? as u16,
            weekdays: field(dow, 0, 6, "day-of-week")? as u8,
            any_day: dom == "*",
            any_weekday: dow == "*",
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// Whether a minute (seconds ignored) matches.
    pub fn matches(&self, t: DateTime<Utc>) -> bool {
        self.day_matches(t.date_naive())
            && self.hours & (1 << t.hour()) != 0
            && self.minutes & (1 << t.minute()) != 0
    }

    /// The first matching minute strictly after `after`, within four years.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let mut date = start.date_naive();
        let mut from_minute = start.hour() * 60 + start.minute();
        for _ in 0..=HORIZON_DAYS {
            if self.day_matches(date) {
                for m in from_minute..24 * 60 {
                    let (h, mi) = (m / 60, m % 60);
                    if self.hours & (1 << h) != 0 && self.minutes & (1 << mi) != 0 {
                        return Some(date.and_hms_opt(h, mi, 0)?.and_utc());
                    }
                }
            }
            date = date.succ_opt()?;
            from_minute = 0;
        }
        None
    }
}

/// The reference's form of a wake time: `2026-12-07T18:00:00Z`.
pub fn format_utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_times_of_common_schedules() {
        let now = at("2026-12-07T17:33:20Z"); // a Monday
        let next = |e: &str| Schedule::parse(e).unwrap().next_after(now).map(format_utc);
        assert_eq!(next("* * * * *").unwrap(), "2026-12-07T17:34:00Z");
        assert_eq!(next("0 */4 * * *").unwrap(), "2026-12-07T20:00:00Z");
        assert_eq!(next("30 9 * * 1-5").unwrap(), "2026-12-08T09:30:00Z");
        assert_eq!(next("0 0 1 * *").unwrap(), "2027-01-01T00:00:00Z");
        assert_eq!(next("0 12 * * 0").unwrap(), "2026-12-13T12:00:00Z");
        assert_eq!(next("15,45 17 7 12 *").unwrap(), "2026-12-07T17:45:00Z");
        assert_eq!(next("0 0 29 2 *").unwrap(), "2028-02-29T00:00:00Z");
        // Both day fields restricted: either one.
        assert_eq!(next("0 8 25 * 3").unwrap(), "2026-12-09T08:00:00Z");
        assert_eq!(next("5/20 * * * *").unwrap(), "2026-12-07T17:45:00Z");
        assert_eq!(next("0 0 31 2 *"), None);
    }

    #[test]
    fn bad_expressions_name_the_field() {
        for (bad, why) in [
            ("", "5 fields"),
            ("* * * *", "5 fields"),
            ("* * * * * *", "5 fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 7", "day-of-week"),
            ("*/0 * * * *", "step of 0"),
            ("5-1 * * * *", "backwards"),
            ("a * * * *", "not a number"),
            ("* * * JAN *", "not a number"),
            ("-1 * * * *", "not a number"),
            ("1,,2 * * * *", "not a number"),
        ] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    fn arb_field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
        let n = lo..=hi;
        prop_oneof![
            Just("*".to_owned()),
            n.clone().prop_map(|v| v.to_string()),
            (n.clone(), n.clone()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (1u32..10).prop_map(|s| format!("*/{s}")),
            (n.clone(), n).prop_map(|(a, b)| format!("{a},{b}")),
        ]
    }

    proptest! {
        #![proptest_config(crate::test_support::config(128))]

        /// The next time is after the base, matches, and no earlier minute matches.
        #[test]
        fn prop_next_is_the_first_matching_minute(
            min in arb_field(0, 59), hour in arb_field(0, 23), dom in arb_field(1, 31),
            month in arb_field(1, 12), dow in arb_field(0, 6),
            base in 1_700_000_000i64..2_000_000_000,
        ) {
            let expr = format!("{min} {hour} {dom} {month} {dow}");
            let s = Schedule::parse(&expr).unwrap();
            let base = DateTime::from_timestamp(base, 0).unwrap();
            if let Some(next) = s.next_after(base) {
                prop_assert!(next > base);
                prop_assert!(s.matches(next), "{} -> {}", expr, next);
                prop_assert_eq!(next.second(), 0);
                // Brute force over the minutes in between (up to 3 days of them).
                let mut t = base.with_second(0).unwrap() + Duration::minutes(1);
                let mut steps = 0;
                while t < next && steps < 3 * 24 * 60 {
                    prop_assert!(!s.matches(t), "{} matched earlier at {}", expr, t);
                    t += Duration::minutes(1);
                    steps += 1;
                }
            }
        }

        /// Any text is a schedule or an error, never a panic.
        #[test]
        fn prop_any_text_parses_or_is_refused(expr in "[0-9*/,\\- a-z]{0,30}") {
            if let Ok(s) = Schedule::parse(&expr) {
                let _ = s.next_after(Utc::now());
            }
        }
    }
}
