//! Durations in Go syntax (`time.ParseDuration`): `300ms`, `1.5h`, `1h30m`, `-2s`.
//!
//! A duration is an optional sign followed by one or more decimal numbers, each with an optional
//! fraction and a required unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`). `0` alone needs no
//! unit. Like Go, the value must fit in 2^63-1 nanoseconds. Unlike Go, negative durations are
//! refused, because no field of `VMDistributed` accepts one; [`DurationError::Negative`] says so.

use std::time::Duration;

/// An example shown in every error so the user sees what a valid value looks like.
const EXAMPLES: &str = "use Go duration syntax such as \"90s\", \"5m\" or \"1h30m\"";

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration: {EXAMPLES}")]
    Empty,
    /// The string is not a Go duration.
    #[error("invalid duration {input:?}: {reason}; {EXAMPLES}")]
    Invalid {
        /// The rejected input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The string is a valid Go duration, but negative.
    #[error("invalid duration {input:?}: must not be negative")]
    Negative {
        /// The rejected input.
        input: String,
    },
    /// The value exceeds 2^63-1 nanoseconds (about 292 years), as in Go.
    #[error("invalid duration {input:?}: too large (at most about 2562047h)")]
    Overflow {
        /// The rejected input.
        input: String,
    },
}

/// Nanoseconds per unit, longest unit names first so `ms` is not read as `m`.
const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parse a Go duration string.
///
/// # Errors
/// [`DurationError`] with a message that quotes the input and shows valid examples.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = |reason: &str| DurationError::Invalid {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let (negative, mut rest) = match input.as_bytes()[0] {
        b'-' => (true, &input[1..]),
        b'+' => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid("a number is missing"));
    }
    // Total in nanoseconds; u128 so intermediate sums of several large terms cannot wrap.
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid(&format!(
                "expected a number at {:?}",
                truncate(rest)
            )));
        }
        let unit_len = after_num
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after_num.len(), |(i, _)| i);
        let (unit, after_unit) = after_num.split_at(unit_len);
        if unit.is_empty() {
            return Err(invalid(&format!(
                "missing unit after {:?} (one of ns, us, ms, s, m, h)",
                format!(
                    "{int_part}{}{frac_part}",
                    if frac_part.is_empty() { "" } else { "." }
                )
            )));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(invalid(&format!(
                "unknown unit {unit:?} (one of ns, us, ms, s, m, h)"
            )));
        };
        total = total
            .checked_add(term_nanos(int_part, frac_part, scale).ok_or_else(|| overflow(input))?)
            .ok_or_else(|| overflow(input))?;
        if total > u128::from(i64::MAX.unsigned_abs()) {
            return Err(overflow(input));
        }
        rest = after_unit;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative {
            input: input.to_owned(),
        });
    }
    let total = u64::try_from(total).map_err(|_| overflow(input))?;
    Ok(Duration::from_nanos(total))
}

/// Format a duration the way Go prints it (`1h30m0s`, `300ms`, `0s`), for messages.
#[must_use]
pub(crate) fn format_go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (value, unit) = if nanos < 1_000 {
            (nanos as f64, "ns")
        } else if nanos < 1_000_000 {
            (nanos as f64 / 1e3, "µs")
        } else {
            (nanos as f64 / 1e6, "ms")
        };
        return format!("{value}{unit}");
    }
    let secs = duration.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let sub = duration.subsec_nanos();
    let seconds = if sub == 0 {
        format!("{seconds}s")
    } else {
        let frac = format!("{sub:09}");
        format!("{seconds}.{}s", frac.trim_end_matches('0'))
    };
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// `int.frac * scale` in nanoseconds, exact for the digits that matter (Go keeps the same
/// precision: fractions below a nanosecond are dropped).
fn term_nanos(int_part: &str, frac_part: &str, scale: u64) -> Option<u128> {
    let scale = u128::from(scale);
    let mut whole: u128 = 0;
    for digit in int_part.bytes() {
        whole = whole
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
        if whole > u128::from(u64::MAX) {
            return None;
        }
    }
    let mut nanos = whole.checked_mul(scale)?;
    let mut place = scale;
    for digit in frac_part.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        nanos += u128::from(digit - b'0') * place;
    }
    Some(nanos)
}

fn overflow(input: &str) -> DurationError {
    DurationError::Overflow {
        input: input.to_owned(),
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(16) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_go_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1h30m15.5s"), Duration::from_millis(5_415_500));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("+2s"), Duration::from_secs(2));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("10μs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("1.0000000001s"), Duration::from_secs(1));
        assert_eq!(ok("2562047h"), Duration::from_secs(2_562_047 * 3600));
    }

    #[test]
    fn rejects_with_examples() {
        for bad in [
            "5 minutes",
            "5",
            "m",
            ".",
            "1x",
            "1h 30m",
            "1.2.3s",
            "--1s",
            " 1s",
            "1s ",
        ] {
            let err = parse_go_duration(bad).expect_err(bad).to_string();
            assert!(err.contains("\"5m\""), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        assert_eq!(parse_go_duration(""), Err(DurationError::Empty));
        let err = parse_go_duration("5 minutes")
            .expect_err("words")
            .to_string();
        assert!(err.contains("unknown unit \" minutes\""), "{err}");
        let err = parse_go_duration("5").expect_err("no unit").to_string();
        assert!(err.contains("missing unit"), "{err}");
    }

    #[test]
    fn negative_and_overflow() {
        assert_eq!(
            parse_go_duration("-1s"),
            Err(DurationError::Negative {
                input: "-1s".into()
            })
        );
        assert!(matches!(
            parse_go_duration("2562048h"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_go_duration("99999999999999999999999s"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(300)), "300ms");
    }
}
