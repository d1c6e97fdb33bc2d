//! The clock every record uses.

/// Now, as journal and reports write it: RFC 3339, UTC, milliseconds.
#[must_use]
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
