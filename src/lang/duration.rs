//! Human durations as written in plans: `90s`, `45m`, `2h`, `1h30m`, `500ms`, `1d`.

use std::fmt;
use std::time::Duration;

/// The longest duration a plan may state (`3650d`, about ten years): far beyond any
/// timeout or estimate, and small enough that sums and deadlines never overflow.
pub const LONGEST: Duration = Duration::from_secs(3650 * 86_400);

/// A duration written the human way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `90s`, `45m`, `2h`, `1h30m`, `500ms`, `1d`.
    ///
    /// # Errors
    /// A sentence saying what is wrong, for the diagnostic; durations over [`LONGEST`]
    /// are refused.
    pub fn parse(text: &str) -> Result<HumanDuration, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty duration".to_owned());
        }
        if let Some(compact) = compact_form(text)
            && compact != text
        {
            return Err(format!("`{text}` is not written the short way: write `{compact}`"));
        }
        let mut total = Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!("`{text}` is not a duration"));
            }
            let too_long = || {
                format!("`{text}` is longer than {}, the longest duration allowed", HumanDuration(LONGEST))
            };
            let number: u64 = rest[..digits].parse().map_err(|_| too_long())?;
            rest = &rest[digits..];
            let unit_length = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_length];
            rest = &rest[unit_length..];
            let part = match unit {
                "ms" => Duration::from_millis(number),
                "s" => Duration::from_secs(number),
                "m" => Duration::from_secs(number.saturating_mul(60)),
                "h" => Duration::from_secs(number.saturating_mul(3600)),
                "d" => Duration::from_secs(number.saturating_mul(86_400)),
                "" => return Err(format!("`{text}` has no unit")),
                other => return Err(format!("`{other}` is not a duration unit")),
            };
            total = total.saturating_add(part);
            if total > LONGEST {
                return Err(too_long());
            }
        }
        Ok(HumanDuration(total))
    }

    /// The inner duration.
    #[must_use]
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&format_duration(self.0))
    }
}

/// `1 hour 30 minutes` → `1h30m`: the short form of a duration written in words, if it is one.
fn compact_form(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut words = text.split_whitespace().peekable();
    while let Some(word) = words.next() {
        let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return None;
        }
        let unit_word = match &word[digits.len()..] {
            "" => words.next()?,
            rest => rest,
        };
        let unit = match unit_word.trim_end_matches(',').to_ascii_lowercase().as_str() {
            "ms" | "millisecond" | "milliseconds" => "ms",
            "s" | "sec" | "secs" | "second" | "seconds" => "s",
            "m" | "min" | "mins" | "minute" | "minutes" => "m",
            "h" | "hr" | "hrs" | "hour" | "hours" => "h",
            "d" | "day" | "days" => "d",
            _ => return None,
        };
        out.push_str(&digits);
        out.push_str(unit);
    }
    (!out.is_empty()).then_some(out)
}

/// `1h30m`, `4m`, `90s` → `1m30s`, `250ms`: the shortest exact human form.
#[must_use]
pub fn format_duration(duration: Duration) -> String {
    let total_millis = duration.as_millis();
    if total_millis == 0 {
        return "0s".to_owned();
    }
    if total_millis < 1000 {
        return format!("{total_millis}ms");
    }
    let seconds = duration.as_secs();
    let (days, hours, minutes, seconds) =
        (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    for (value, unit) in [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// Seconds as a duration; negative, NaN and absurdly large values (a damaged journal or
/// drill history) saturate instead of panicking.
#[must_use]
pub fn seconds(value: f64) -> Duration {
    if value.is_nan() || value <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
}

/// A measured duration for reports: `1m32.4s`, `12.3s`, `0.8s`.
#[must_use]
pub fn format_measured(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let whole = duration.as_secs();
    let tenths = duration.subsec_millis() / 100;
    let rest = format_duration(Duration::from_secs(whole / 60 * 60));
    format!("{rest}{}.{tenths}s", whole % 60)
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as 90s, 45m, 2h, 1h30m.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(HumanDuration::parse("90s").unwrap().0, Duration::from_secs(90));
        assert_eq!(HumanDuration::parse("1h30m").unwrap().0, Duration::from_secs(5400));
        assert_eq!(HumanDuration::parse("500ms").unwrap().0, Duration::from_millis(500));
        assert!(HumanDuration::parse("30").is_err());
        assert!(HumanDuration::parse("5 minutes").is_err());
        assert!(HumanDuration::parse("m").is_err());
        assert_eq!(
            HumanDuration::parse("1 hour").unwrap_err(),
            "`1 hour` is not written the short way: write `1h`"
        );
        assert!(HumanDuration::parse("30 minutes").unwrap_err().contains("`30m`"));
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_measured(Duration::from_millis(92_400)), "1m32.4s");
    }

    #[test]
    fn durations_longer_than_ten_years_are_refused_naming_the_limit() {
        assert_eq!(HumanDuration::parse("3650d").unwrap().0, LONGEST);
        for text in ["3651d", "10000000000000000000s", "99999999999999999999999ms", "3650d1ms"] {
            let problem = HumanDuration::parse(text).unwrap_err();
            assert!(problem.contains("longer than 3650d"), "{text}: {problem}");
        }
        assert_eq!(seconds(1e300), Duration::MAX);
        assert_eq!(seconds(f64::NAN), Duration::ZERO);
    }
}
