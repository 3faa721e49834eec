//! HTTP-dates (RFC 9110 §5.6.7): parsing the three formats servers send, formatting the one
//! they should.
//!
//! [`parse_http_date`] accepts
//!
//! - IMF-fixdate, the preferred format: `Sun, 06 Nov 1994 08:49:37 GMT`;
//! - the obsolete RFC 850 format: `Sunday, 06-Nov-94 08:49:37 GMT`;
//! - the obsolete ANSI C `asctime()` format: `Sun Nov  6 08:49:37 1994`.
//!
//! The two obsolete formats are the `obsolete-dates` feature (on by default). RFC 9110 §5.6.7
//! says a recipient MUST accept them; without the feature this parser does not (only
//! IMF-fixdate, with the short day name, is read). That is for firmware short of flash, and
//! safe only against servers known to send IMF-fixdate (all current ones, Genesys Cloud
//! included). A date in another format then reads as no date: a `Retry-After` in it is ignored
//! and the caller backs off on its own.
//!
//! [`format_http_date`] writes IMF-fixdate into an inline 29-byte [`HttpDate`].
//!
//! # Leniency (what a client should accept, RFC 9110 §5.6.7 and §2.2)
//!
//! A client reads dates to learn when to retry; refusing a slightly odd date only makes it guess.
//! So the parser is lenient where that is harmless and strict where a mistake would be a wrong
//! time:
//!
//! - Surrounding whitespace is ignored, runs of spaces count as one, and day and month names
//!   match case-insensitively. Any format may use the short or long day name.
//! - The day name is **not** checked against the date. Such a mismatch is a server's typo, and the
//!   numbers are what say when to retry. (The `httpdate` crate rejects it; this parser does not.)
//! - `UTC` is accepted where `GMT` is required, and `asctime` may carry a trailing `GMT`.
//! - RFC 850 dates may carry a four-digit year. A two-digit year is read with a fixed window,
//!   `70..=99` → 1970–1999 and `00..=69` → 2000–2069: RFC 9110 asks for "not more than 50 years in
//!   the future" relative to now, but this core never reads a clock, and no server has sent an
//!   RFC 850 date outside that window in this century.
//! - Field ranges are checked: the day must exist in its month (leap years included: 2000 is one,
//!   2100 is not), hours `< 24`, minutes `< 60`, seconds `<= 60`. A leap second (`:60`) is read
//!   POSIX-style, as the first second of the next minute.
//! - Dates before 1970 cannot be a [`UnixTime`] and give `None`; years after 9999 cannot be written.
//!
//! Parsing is linear in the input and never panics; the calendar arithmetic is Howard Hinnant's
//! `days_from_civil` / `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>),
//! restricted to non-negative years so that it runs on unsigned integers.

use core::fmt;

use crate::http::Headers;
use crate::http::cursor::Cursor;
use crate::time::UnixTime;

/// 9999-12-31T23:59:59Z: the last second an IMF-fixdate (four-digit year) can carry.
/// [`format_http_date`] clamps later times to it.
pub const MAX_HTTP_DATE: UnixTime = UnixTime::from_secs(253_402_300_799);

const SECS_PER_DAY: u64 = 86_400;

/// Whether the two obsolete formats (RFC 850, `asctime`) are read: the `obsolete-dates` feature.
const OBSOLETE: bool = cfg!(feature = "obsolete-dates");

/// Short day names, Sunday first (the weekday numbering of `civil_from_days`).
const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
/// Long day names, as RFC 850 dates use them.
const DAY_NAMES_LONG: [&str; 7] =
    ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
/// Month names, January first.
const MONTH_NAMES: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Parses an HTTP-date in any of the three formats of RFC 9110 §5.6.7 (the two obsolete ones
/// with the `obsolete-dates` feature, on by default).
///
/// Returns `None` for anything that is not a valid date at or after 1970-01-01T00:00:00Z (see the
/// module docs for exactly how lenient it is).
///
/// ```
/// use credflow_core::http::date::parse_http_date;
/// use credflow_core::UnixTime;
///
/// let t = UnixTime::from_secs(784_111_777);
/// assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
/// # let t = if cfg!(feature = "obsolete-dates") { t } else { return };
/// assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
/// assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), Some(t));
/// assert_eq!(parse_http_date(b"Sun, 31 Nov 1994 08:49:37 GMT"), None); // no 31 November
/// ```
#[must_use]
pub fn parse_http_date(value: &[u8]) -> Option<UnixTime> {
    let value = value.trim_ascii();
    let civil = match imf_fixdate(value) {
        Some(civil) => civil,
        None if OBSOLETE => rfc850_date(value).or_else(|| asctime_date(value))?,
        None => return None,
    };
    // A leap second at the very end of 9999 would land one second past what a date can say.
    civil.to_unix().map(|t| t.min(MAX_HTTP_DATE))
}

/// IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn imf_fixdate(value: &[u8]) -> Option<Civil> {
    let mut c = Cursor(value);
    day_of_week(c.alpha())?;
    c.eat(b',').then_some(())?;
    c.spaces1()?;
    let day = c.number(1, 2)?;
    c.spaces1()?;
    let month = month_number(c.alpha())?;
    c.spaces1()?;
    let year = c.number(4, 4)?;
    time_in_gmt(c, year, month, day)
}

/// The obsolete RFC 850 format: `Sunday, 06-Nov-94 08:49:37 GMT` (or, leniently, with a
/// four-digit year).
fn rfc850_date(value: &[u8]) -> Option<Civil> {
    let mut c = Cursor(value);
    day_of_week(c.alpha())?;
    c.eat(b',').then_some(())?;
    c.spaces1()?;
    let day = c.number(1, 2)?;
    c.eat(b'-').then_some(())?;
    let month = month_number(c.alpha())?;
    c.eat(b'-').then_some(())?;
    let year = match c.digits(4)? {
        (2, year) if year >= 70 => year.saturating_add(1900),
        (2, year) => year.saturating_add(2000),
        (4, year) => year,
        _ => return None,
    };
    time_in_gmt(c, year, month, day)
}

/// The end IMF-fixdate and RFC 850 dates share, after the date: ` 08:49:37 GMT`, and nothing
/// more.
fn time_in_gmt(mut c: Cursor<'_>, year: u32, month: u32, day: u32) -> Option<Civil> {
    c.spaces1()?;
    let (hour, minute, second) = c.time_of_day()?;
    c.spaces1()?;
    (is_utc(c.alpha()) && c.0.is_empty()).then_some(Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// The obsolete ANSI C `asctime()` format: `Sun Nov  6 08:49:37 1994` (or, leniently, with a
/// trailing `GMT`).
fn asctime_date(value: &[u8]) -> Option<Civil> {
    let mut c = Cursor(value);
    day_of_week(c.alpha())?;
    c.spaces1()?;
    let month = month_number(c.alpha())?;
    c.spaces1()?;
    let day = c.number(1, 2)?;
    c.spaces1()?;
    let (hour, minute, second) = c.time_of_day()?;
    c.spaces1()?;
    let year = c.number(4, 4)?;
    let zone_ok = c.ows() == 0 || is_utc(c.alpha());
    (zone_ok && c.0.is_empty()).then_some(Civil { year, month, day, hour, minute, second })
}

/// The server's `Date` header (RFC 9110 §6.6.1), if present and valid.
///
/// This is the best reference for an HTTP-date `Retry-After` or an epoch rate-limit reset: both
/// times then come from the same clock, so the client's own clock skew cancels out (see
/// awslabs/aws-sdk-rust#1033 for what skew does otherwise).
#[must_use]
pub fn server_date<H: Headers + ?Sized>(headers: &H) -> Option<UnixTime> {
    headers.get("date").and_then(parse_http_date)
}

/// Formats `t` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
///
/// Times after [`MAX_HTTP_DATE`] (year 9999) are clamped to it: a four-digit year cannot say more.
#[must_use]
pub fn format_http_date(t: UnixTime) -> HttpDate {
    let secs = t.as_secs().min(MAX_HTTP_DATE.as_secs());
    // Up to 2 932 896 days (9999-12-31) and 86 399 seconds in a day: 32 bits hold both.
    let days = u32::try_from(secs / SECS_PER_DAY).unwrap_or(u32::MAX);
    let in_day = u32::try_from(secs % SECS_PER_DAY).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 (day 0) was a Thursday (index 4).
    let weekday = days.saturating_add(4) % 7;

    let mut w = Writer { buf: [b' '; HTTP_DATE_LEN], len: 0 };
    w.text(name(&DAY_NAMES, weekday));
    w.text(", ");
    w.two(day);
    w.text(" ");
    w.text(name(&MONTH_NAMES, month.saturating_sub(1)));
    w.text(" ");
    w.two(year / 100);
    w.two(year);
    w.text(" ");
    w.two(in_day / 3600);
    w.text(":");
    w.two(in_day / 60 % 60);
    w.text(":");
    w.two(in_day % 60);
    w.text(" GMT");
    HttpDate(w.buf)
}

/// Length of an IMF-fixdate in bytes.
const HTTP_DATE_LEN: usize = 29;

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), stored inline in 29 bytes.
///
/// Made by [`format_http_date`]; always ASCII.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HttpDate([u8; HTTP_DATE_LEN]);

impl HttpDate {
    /// The date as text.
    pub fn as_str(&self) -> &str {
        // Only ever filled with ASCII by `format_http_date`.
        core::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The date as bytes, ready for a header value.
    pub const fn as_bytes(&self) -> &[u8; HTTP_DATE_LEN] {
        &self.0
    }
}

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpDate({:?})", self.as_str())
    }
}

/// Fills a fixed buffer left to right; writes past the end are dropped (they cannot happen for
/// the fixed layout above).
struct Writer {
    buf: [u8; HTTP_DATE_LEN],
    len: usize,
}

impl Writer {
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len = self.len.saturating_add(1);
        }
    }

    fn text(&mut self, s: &str) {
        s.bytes().for_each(|b| self.byte(b));
    }

    /// The last two decimal digits of `v`.
    fn two(&mut self, v: u32) {
        self.byte(ascii_digit(v / 10));
        self.byte(ascii_digit(v));
    }
}

/// The ASCII digit for `v % 10`.
fn ascii_digit(v: u32) -> u8 {
    b'0'.saturating_add(u8::try_from(v % 10).unwrap_or(0))
}

fn name(table: &[&'static str], index: u32) -> &'static str {
    usize::try_from(index).ok().and_then(|i| table.get(i)).copied().unwrap_or("???")
}

/// Whether `word` is a time zone meaning UTC (`GMT`, or leniently `UTC`).
fn is_utc(word: &[u8]) -> bool {
    word.eq_ignore_ascii_case(b"GMT") || word.eq_ignore_ascii_case(b"UTC")
}

/// The day-of-week index (Sunday = 0) of a short or long day name.
fn day_of_week(word: &[u8]) -> Option<usize> {
    DAY_NAMES.iter().position(|n| word.eq_ignore_ascii_case(n.as_bytes())).or_else(|| {
        let long = if OBSOLETE { &DAY_NAMES_LONG[..] } else { &[] };
        long.iter().position(|n| word.eq_ignore_ascii_case(n.as_bytes()))
    })
}

/// The month number (January = 1) of a three-letter month name.
fn month_number(word: &[u8]) -> Option<u32> {
    let index = MONTH_NAMES.iter().position(|n| word.eq_ignore_ascii_case(n.as_bytes()))?;
    u32::try_from(index).ok()?.checked_add(1)
}

/// A calendar date and time of day, as read (not yet validated).
struct Civil {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Civil {
    /// Validates the fields and converts to seconds since the epoch.
    fn to_unix(&self) -> Option<UnixTime> {
        let valid = (1970..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second <= 60;
        if !valid {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = u64::from(days)
            .checked_mul(SECS_PER_DAY)?
            .checked_add(u64::from(self.hour.checked_mul(3600)?))?
            .checked_add(u64::from(self.minute.checked_mul(60)?))?
            .checked_add(u64::from(self.second))?;
        Some(UnixTime::from_secs(secs))
    }
}

/// Whether `year` is a Gregorian leap year.
const fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// The number of days in `month` (1..=12) of `year`; 0 for an invalid month.
const fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to `year-month-day` (Hinnant's `days_from_civil`), for a validated date
/// (`1970..=9999`, a real day of the month): every step then stays within `u32` and at or above
/// zero (the walk of every day in the tests checks it), so wrapping operations never wrap; they
/// only keep the arithmetic total, in fewer instructions than saturating ones.
fn days_from_civil(year: u32, month: u32, day: u32) -> u32 {
    // Count years from March, so that the leap day is the last day of the "year".
    let y = if month <= 2 { year.wrapping_sub(1) } else { year };
    let era = y / 400;
    let year_of_era = y % 400; // [0, 399]
    let shifted_month = if month > 2 { month.wrapping_sub(3) } else { month.wrapping_add(9) };
    let day_of_year =
        (shifted_month.wrapping_mul(153).wrapping_add(2) / 5).wrapping_add(day).wrapping_sub(1); // [0, 365]
    let day_of_era = year_of_era
        .wrapping_mul(365)
        .wrapping_add(year_of_era / 4)
        .wrapping_sub(year_of_era / 100)
        .wrapping_add(day_of_year); // [0, 146096]
    era.wrapping_mul(146_097).wrapping_add(day_of_era).wrapping_sub(719_468)
}

/// The civil date `(year, month, day)` of day `days` after 1970-01-01 (Hinnant's
/// `civil_from_days`, unsigned).
fn civil_from_days(days: u32) -> (u32, u32, u32) {
    let z = days.saturating_add(719_468); // days since 0000-03-01
    let era = z / 146_097;
    let day_of_era = z % 146_097; // [0, 146096]
    let year_of_era = day_of_era
        .saturating_sub(day_of_era / 1460)
        .saturating_add(day_of_era / 36_524)
        .saturating_sub(day_of_era / 146_096)
        / 365; // [0, 399]
    let year = year_of_era.saturating_add(era.saturating_mul(400));
    let day_of_year = day_of_era.saturating_sub(
        year_of_era
            .saturating_mul(365)
            .saturating_add(year_of_era / 4)
            .saturating_sub(year_of_era / 100),
    ); // [0, 365]
    let shifted_month = day_of_year.saturating_mul(5).saturating_add(2) / 153; // [0, 11]
    let day = day_of_year
        .saturating_sub(shifted_month.saturating_mul(153).saturating_add(2) / 5)
        .saturating_add(1); // [1, 31]
    let month = if shifted_month < 10 {
        shifted_month.saturating_add(3)
    } else {
        shifted_month.saturating_sub(9)
    };
    let year = if month <= 2 { year.saturating_add(1) } else { year };
    (year, month, day)
}

/// The HTTP-date productions, on the shared cursor.
impl<'a> Cursor<'a> {
    /// Consumes at least one space or tab.
    fn spaces1(&mut self) -> Option<()> {
        (self.ows() > 0).then_some(())
    }

    /// Consumes a run of ASCII letters.
    fn alpha(&mut self) -> &'a [u8] {
        self.take_while(|b| b.is_ascii_alphabetic())
    }

    /// Consumes a run of at most `max` digits (and fails if more follow), returning how many were
    /// read and their value.
    fn digits(&mut self, max: usize) -> Option<(usize, u32)> {
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > max {
            return None;
        }
        // Digits only, and at most four of them (every caller's `max`), so nothing wraps.
        debug_assert!(max <= 9, "a u32 holds any 9 digits");
        let value = self.0.get(..n)?.iter().fold(0u32, |acc, b| {
            acc.wrapping_mul(10).wrapping_add(u32::from(b.wrapping_sub(b'0')))
        });
        self.advance(n);
        Some((n, value))
    }

    /// Consumes a number of `min..=max` digits.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let (n, value) = self.digits(max)?;
        (n >= min).then_some(value)
    }

    /// Consumes `HH:MM:SS` (two digits each; ranges are checked later).
    fn time_of_day(&mut self) -> Option<(u32, u32, u32)> {
        let hour = self.number(2, 2)?;
        self.eat(b':').then_some(())?;
        let minute = self.number(2, 2)?;
        self.eat(b':').then_some(())?;
        let second = self.number(2, 2)?;
        Some((hour, minute, second))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::format;
    use std::string::String;

    const RFC_EXAMPLE: UnixTime = UnixTime::from_secs(784_111_777);

    fn p(s: &str) -> Option<u64> {
        parse_http_date(s.as_bytes()).map(UnixTime::as_secs)
    }

    /// What an obsolete-format date parses to: `expected` with the `obsolete-dates` feature,
    /// nothing without it (only IMF-fixdate is read then).
    fn obsolete<T>(expected: Option<T>) -> Option<T> {
        if OBSOLETE { expected } else { None }
    }

    #[test]
    fn rfc_9110_examples_all_three_formats() {
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(RFC_EXAMPLE));
        let obsolete_forms = [&b"Sunday, 06-Nov-94 08:49:37 GMT"[..], b"Sun Nov  6 08:49:37 1994"];
        for date in obsolete_forms {
            assert_eq!(parse_http_date(date), obsolete(Some(RFC_EXAMPLE)));
        }
        assert_eq!(format_http_date(RFC_EXAMPLE).as_str(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn epoch_boundaries() {
        assert_eq!(p("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(p("Thu, 01 Jan 1970 00:00:01 GMT"), Some(1));
        assert_eq!(p("Wed, 31 Dec 1969 23:59:59 GMT"), None);
        assert_eq!(format_http_date(UnixTime::EPOCH).as_str(), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn leap_years() {
        // 2000 is a leap year (divisible by 400), 2100 is not (divisible by 100), 2024 is.
        assert_eq!(p("Tue, 29 Feb 2000 00:00:00 GMT"), Some(951_782_400));
        assert_eq!(p("Wed, 01 Mar 2000 00:00:00 GMT"), Some(951_868_800));
        assert_eq!(p("Mon, 29 Feb 2100 00:00:00 GMT"), None);
        assert_eq!(p("Sun, 28 Feb 2100 23:59:59 GMT"), Some(4_107_542_399));
        assert_eq!(p("Mon, 01 Mar 2100 00:00:00 GMT"), Some(4_107_542_400));
        assert_eq!(p("Thu, 29 Feb 2024 12:00:00 GMT"), Some(1_709_208_000));
        assert_eq!(p("Wed, 29 Feb 2023 12:00:00 GMT"), None);
        assert_eq!(
            format_http_date(UnixTime::from_secs(951_782_400)).as_str(),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }

    #[test]
    fn far_future_and_clamping() {
        let max = MAX_HTTP_DATE.as_secs();
        assert_eq!(p("Fri, 31 Dec 9999 23:59:59 GMT"), Some(max));
        assert_eq!(format_http_date(MAX_HTTP_DATE).as_str(), "Fri, 31 Dec 9999 23:59:59 GMT");
        // Found by fuzzing: a leap second at the end of 9999 parses to the last representable
        // second, so formatting it again round-trips.
        assert_eq!(parse_http_date(b"Fri, 31 Dec 9999 23:59:60 GMT"), Some(MAX_HTTP_DATE));
        assert_eq!(
            format_http_date(UnixTime::from_secs(u64::MAX)).as_str(),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(p("Sat, 01 Jan 10000 00:00:00 GMT"), None);
    }

    #[test]
    fn field_ranges_are_checked() {
        assert_eq!(p("Sun, 06 Nov 1994 24:00:00 GMT"), None);
        assert_eq!(p("Sun, 06 Nov 1994 23:60:00 GMT"), None);
        assert_eq!(p("Sun, 06 Nov 1994 23:59:61 GMT"), None);
        assert_eq!(p("Sun, 00 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(p("Sun, 31 Apr 1994 08:49:37 GMT"), None);
        assert_eq!(p("Sun, 30 Apr 1994 08:49:37 GMT"), Some(767_695_777));
        // A leap second reads as the first second of the next minute (POSIX time).
        assert_eq!(p("Sat, 31 Dec 2016 23:59:60 GMT"), p("Sun, 01 Jan 2017 00:00:00 GMT"));
    }

    #[test]
    fn rfc850_two_digit_year_window() {
        assert_eq!(p("Thursday, 01-Jan-70 00:00:00 GMT"), obsolete(Some(0)));
        assert_eq!(p("Wednesday, 31-Dec-69 23:59:59 GMT"), obsolete(Some(3_155_759_999))); // 2069
        assert_eq!(p("Saturday, 01-Jan-00 00:00:00 GMT"), obsolete(Some(946_684_800))); // 2000
        assert_eq!(p("Sunday, 06-Nov-1994 08:49:37 GMT"), obsolete(Some(784_111_777)));
        assert_eq!(p("Sunday, 06-Nov-994 08:49:37 GMT"), None);
        assert_eq!(p("Sunday, 06-Nov-19940 08:49:37 GMT"), None);
    }

    #[test]
    fn asctime_variants() {
        assert_eq!(p("Sun Nov 06 08:49:37 1994"), obsolete(Some(784_111_777)));
        assert_eq!(p("Sun Nov 6 08:49:37 1994"), obsolete(Some(784_111_777)));
        assert_eq!(p("Sun Nov  6 08:49:37 1994 GMT"), obsolete(Some(784_111_777)));
        assert_eq!(p("Sun Nov  6 08:49:37 1994 PST"), None);
        assert_eq!(p("Sun Nov  6 08:49:37 94"), None);
    }

    #[test]
    fn lenient_where_harmless() {
        // Weekday mismatch: 6 Nov 1994 was a Sunday, not a Monday. Accepted on purpose.
        assert_eq!(p("Mon, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(p("  sun, 06 nov 1994 08:49:37 gmt \t"), Some(784_111_777));
        assert_eq!(p("Sun,  06  Nov  1994  08:49:37  UTC"), Some(784_111_777));
        // A long day name (RFC 850's) on an IMF-fixdate: read with the obsolete formats.
        assert_eq!(p("Sunday, 06 Nov 1994 08:49:37 GMT"), obsolete(Some(784_111_777)));
    }

    #[test]
    fn garbage_is_rejected() {
        for s in [
            "",
            " ",
            "0",
            "42",
            "Sun",
            "Sun,",
            "Foo, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 GMT trailing",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 06 Xyz 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 006 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 19940 08:49:37 GMT",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08-49-37 GMT",
            "Sun, 06 Nov 1994 08:49:37GMT",
            "Sun,06 Nov 1994 08:49:37 GMT",
            "Sun, 99999999999999999999 Nov 1994 08:49:37 GMT",
            "2024-01-01T00:00:00Z",
        ] {
            assert_eq!(p(s), None, "{s:?}");
        }
        assert_eq!(parse_http_date(&[0xff, 0xfe, b',']), None);
    }

    #[test]
    fn server_date_reads_the_date_header() {
        let h = [("Date", "Sun, 06 Nov 1994 08:49:37 GMT")];
        assert_eq!(server_date(&h), Some(RFC_EXAMPLE));
        assert_eq!(server_date(&[("Date", "yesterday")]), None);
        assert_eq!(server_date(&crate::http::NoHeaders), None);
    }

    /// Walks every day from 1970 to 9999 with a naive calendar and checks both conversions.
    #[test]
    fn calendar_matches_a_naive_walk() {
        let (mut y, mut m, mut d) = (1970u32, 1u32, 1u32);
        let mut days = 0u32;
        loop {
            assert_eq!(civil_from_days(days), (y, m, d));
            assert_eq!(days_from_civil(y, m, d), days);
            days += 1;
            d += 1;
            if d > days_in_month(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                    if y > 9999 {
                        break;
                    }
                }
            }
        }
        assert_eq!(u64::from(days) * SECS_PER_DAY, MAX_HTTP_DATE.as_secs() + 1);
    }

    fn rfc850(t: UnixTime) -> String {
        let s = t.as_secs();
        let days = u32::try_from(s / SECS_PER_DAY).unwrap();
        let (y, m, d) = civil_from_days(days);
        let wd = DAY_NAMES_LONG[usize::try_from((days + 4) % 7).unwrap()];
        let r = s % SECS_PER_DAY;
        format!(
            "{wd}, {d:02}-{}-{:02} {:02}:{:02}:{:02} GMT",
            MONTH_NAMES[usize::try_from(m - 1).unwrap()],
            y % 100,
            r / 3600,
            r / 60 % 60,
            r % 60
        )
    }

    fn asctime(t: UnixTime) -> String {
        let s = t.as_secs();
        let days = u32::try_from(s / SECS_PER_DAY).unwrap();
        let (y, m, d) = civil_from_days(days);
        let wd = DAY_NAMES[usize::try_from((days + 4) % 7).unwrap()];
        let r = s % SECS_PER_DAY;
        format!(
            "{wd} {} {d:>2} {:02}:{:02}:{:02} {y}",
            MONTH_NAMES[usize::try_from(m - 1).unwrap()],
            r / 3600,
            r / 60 % 60,
            r % 60
        )
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(secs in 0..=MAX_HTTP_DATE.as_secs()) {
            let t = UnixTime::from_secs(secs);
            let text = format_http_date(t);
            prop_assert_eq!(text.as_str().len(), 29);
            prop_assert_eq!(parse_http_date(text.as_bytes()), Some(t));
            prop_assert_eq!(parse_http_date(asctime(t).as_bytes()), obsolete(Some(t)));
        }

        #[test]
        fn rfc850_round_trips_inside_its_window(secs in 0..3_155_759_999u64) {
            let t = UnixTime::from_secs(secs);
            prop_assert_eq!(parse_http_date(rfc850(t).as_bytes()), obsolete(Some(t)));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_http_date(&bytes);
        }

        #[test]
        fn parse_never_panics_on_near_misses(s in "[A-Za-z, :0-9-]{0,40}") {
            if let Some(t) = parse_http_date(s.as_bytes()) {
                prop_assert!(t <= MAX_HTTP_DATE);
            }
        }
    }
}
