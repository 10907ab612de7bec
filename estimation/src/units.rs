//! Decimal units: constants, time conversions, human-readable formatting and
//! parsing of sizes and counts.
//!
//! Everything here is decimal (SI), because the source design's numbers are:
//! 1 kB = 10^3 B, 1 MB = 10^6 B, 1 GB = 10^9 B, 1 TB = 10^12 B,
//! 1 PB = 10^15 B. Binary units (KiB, MiB, …) are accepted when parsing, so
//! a measured "512 MiB" can be typed as is, but output is always decimal so
//! that it can be checked against the document by eye.
//!
//! A day is 86,400 s and a year is 365 days: that is what makes five years of
//! 2 TB a day come to 3.65 PB.

use thiserror::Error;

/// One kilobyte, 10^3 bytes.
pub const KB: f64 = 1e3;
/// One megabyte, 10^6 bytes.
pub const MB: f64 = 1e6;
/// One gigabyte, 10^9 bytes.
pub const GB: f64 = 1e9;
/// One terabyte, 10^12 bytes.
pub const TB: f64 = 1e12;
/// One petabyte, 10^15 bytes.
pub const PB: f64 = 1e15;
/// One exabyte, 10^18 bytes.
pub const EB: f64 = 1e18;

/// Seconds in a day: per-day figures are averaged over this to get rates.
pub const SECONDS_PER_DAY: f64 = 86_400.0;
/// Days in a year: leap days are ignored, as the source design ignores them.
pub const DAYS_PER_YEAR: f64 = 365.0;

/// One line saying which units the output uses; printed with every plan.
pub const UNITS_NOTE: &str = "decimal units: 1 kB = 10^3 B, 1 MB = 10^6 B, 1 TB = 10^12 B, \
     1 PB = 10^15 B; a day is 86,400 s, a year is 365 days";

/// Converts a per-day quantity to an average per-second rate.
///
/// ```
/// use estimation::units::{per_day_to_per_sec, TB, MB};
/// // The source design: 2 TB a day is 23.1 MB/s on average.
/// let rate = per_day_to_per_sec(2.0 * TB);
/// assert_eq!(format!("{:.1}", rate / MB), "23.1");
/// ```
pub fn per_day_to_per_sec(per_day: f64) -> f64 {
    per_day / SECONDS_PER_DAY
}

/// Converts an average per-second rate back to a per-day quantity.
pub fn per_sec_to_per_day(per_sec: f64) -> f64 {
    per_sec * SECONDS_PER_DAY
}

/// Converts years (of 365 days) to days.
///
/// ```
/// assert_eq!(estimation::units::years_to_days(5.0), 1825.0);
/// ```
pub fn years_to_days(years: f64) -> f64 {
    years * DAYS_PER_YEAR
}

/// Decimal byte units from largest to smallest, used for formatting.
const BYTE_UNITS: [(f64, &str); 7] = [
    (EB, "EB"),
    (PB, "PB"),
    (TB, "TB"),
    (GB, "GB"),
    (MB, "MB"),
    (KB, "kB"),
    (1.0, "B"),
];

/// Large-count scales from largest to smallest (short scale, as the document
/// writes "20 billion").
const COUNT_SCALES: [(f64, &str); 4] = [
    (1e15, "quadrillion"),
    (1e12, "trillion"),
    (1e9, "billion"),
    (1e6, "million"),
];

/// Formats a byte count with a decimal unit and three significant digits.
///
/// ```
/// use estimation::units::format_bytes;
/// assert_eq!(format_bytes(2e12), "2 TB");
/// assert_eq!(format_bytes(3.65e15), "3.65 PB");
/// assert_eq!(format_bytes(23_148_148.1), "23.1 MB");
/// assert_eq!(format_bytes(100.0), "100 B");
/// ```
pub fn format_bytes(bytes: f64) -> String {
    scaled(bytes, &BYTE_UNITS, "B")
}

/// Formats a byte rate, e.g. `23.1 MB/s`.
pub fn format_bytes_per_sec(bytes_per_sec: f64) -> String {
    format!("{}/s", format_bytes(bytes_per_sec))
}

/// Formats a count for people: whole numbers with thousands separators below
/// a million, "N million/billion/…" with three significant digits above, and
/// three significant digits for small fractional values.
///
/// ```
/// use estimation::units::format_count;
/// assert_eq!(format_count(2e10), "20 billion");
/// assert_eq!(format_count(231_481.48), "231,481");
/// assert_eq!(format_count(10_000.0), "10,000");
/// assert_eq!(format_count(913.0), "913");
/// assert_eq!(format_count(2.5), "2.5");
/// ```
pub fn format_count(count: f64) -> String {
    if !count.is_finite() {
        return count.to_string();
    }
    let magnitude = count.abs();
    if magnitude >= 999_999.5 {
        return scaled(count, &COUNT_SCALES, "million");
    }
    if magnitude >= 100.0 {
        let rounded = count.round();
        let sign = if rounded < 0.0 { "-" } else { "" };
        // Below a million the rounded value is exact in u64.
        return format!("{sign}{}", group_thousands(rounded.abs() as u64));
    }
    significant(count, 3)
}

/// Writes an integer with `,` between groups of three digits.
///
/// ```
/// assert_eq!(estimation::units::group_thousands(500_000_000), "500,000,000");
/// ```
pub fn group_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Picks the largest unit not above `value` and writes the value in it with
/// three significant digits, moving up a unit when rounding reaches 1000.
fn scaled(value: f64, units: &[(f64, &str)], smallest: &str) -> String {
    if !value.is_finite() {
        return format!("{value} {smallest}");
    }
    let magnitude = value.abs();
    let index = units
        .iter()
        .position(|(size, _)| magnitude >= *size)
        .unwrap_or(units.len() - 1);
    let (mut size, mut name) = units[index];
    if index > 0 && round_significant(magnitude / size, 3) >= 1000.0 {
        (size, name) = units[index - 1];
    }
    format!("{} {name}", significant(value / size, 3))
}

/// Rounds to `digits` significant digits.
fn round_significant(value: f64, digits: i32) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let decimals = digits - 1 - value.abs().log10().floor() as i32;
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// Writes `value` with `digits` significant digits, without trailing zeros.
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let decimals = (digits - 1 - value.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// Why a size or count could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    /// Nothing was given.
    #[error("empty value")]
    Empty,
    /// The numeric part is not a number.
    #[error("`{input}` is not a number")]
    NotANumber {
        /// The text as given.
        input: String,
    },
    /// Commas were used, but not as thousands separators.
    #[error("`{input}`: commas may only separate groups of three digits (e.g. 500,000,000)")]
    MisplacedSeparator {
        /// The text as given.
        input: String,
    },
    /// The unit suffix is not known.
    #[error("`{input}`: unknown unit `{unit}` (expected {expected})")]
    UnknownUnit {
        /// The text as given.
        input: String,
        /// The unit part.
        unit: String,
        /// The units that are accepted here.
        expected: &'static str,
    },
    /// The value is negative.
    #[error("`{input}` is negative")]
    Negative {
        /// The text as given.
        input: String,
    },
    /// The value is infinite once scaled.
    #[error("`{input}` is too large")]
    TooLarge {
        /// The text as given.
        input: String,
    },
    /// A whole number was required.
    #[error("`{input}` is not a whole number")]
    NotWhole {
        /// The text as given.
        input: String,
    },
}

const BYTE_UNITS_EXPECTED: &str =
    "B, kB, MB, GB, TB, PB, EB or KiB, MiB, GiB, TiB, PiB, EiB; case does not matter";
const COUNT_UNITS_EXPECTED: &str =
    "K (thousand), M (million), B or G (billion), T (trillion), or those words";

/// Reads a byte size such as `100`, `100B`, `4TB`, `4 tb`, `1.5e3 kB` or
/// `512MiB`. A bare number is bytes. Decimal units are powers of 1000, the
/// `…iB` units powers of 1024.
///
/// ```
/// use estimation::units::parse_bytes;
/// assert_eq!(parse_bytes("4TB").unwrap(), 4e12);
/// assert_eq!(parse_bytes("100").unwrap(), 100.0);
/// assert_eq!(parse_bytes("1 KiB").unwrap(), 1024.0);
/// assert!(parse_bytes("4 parsecs").is_err());
/// ```
pub fn parse_bytes(input: &str) -> Result<f64, UnitError> {
    let (number, unit) = split_unit(input)?;
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => KB,
        "mb" => MB,
        "gb" => GB,
        "tb" => TB,
        "pb" => PB,
        "eb" => EB,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        "pib" => 1024f64.powi(5),
        "eib" => 1024f64.powi(6),
        _ => {
            return Err(UnitError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
                expected: BYTE_UNITS_EXPECTED,
            });
        }
    };
    scale(input, number, multiplier)
}

/// Reads a count such as `500000000`, `500_000_000`, `500,000,000`, `500M`,
/// `50K`, `20B` (billion) or `20 billion`: whatever [`format_count`] writes
/// reads back.
///
/// ```
/// use estimation::units::parse_count;
/// assert_eq!(parse_count("500M").unwrap(), 5e8);
/// assert_eq!(parse_count("50K").unwrap(), 5e4);
/// assert_eq!(parse_count("20 billion").unwrap(), 2e10);
/// assert_eq!(parse_count("500,000,000").unwrap(), 5e8);
/// ```
pub fn parse_count(input: &str) -> Result<f64, UnitError> {
    let (number, unit) = split_unit(input)?;
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" => 1.0,
        "k" | "thousand" => 1e3,
        "m" | "million" => 1e6,
        "b" | "g" | "billion" => 1e9,
        "t" | "trillion" => 1e12,
        "quadrillion" => 1e15,
        _ => {
            return Err(UnitError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
                expected: COUNT_UNITS_EXPECTED,
            });
        }
    };
    scale(input, number, multiplier)
}

/// Reads a count that must be a whole number, such as `500M` or `50000`.
///
/// ```
/// use estimation::units::parse_whole_count;
/// assert_eq!(parse_whole_count("2.5M").unwrap(), 2_500_000);
/// assert!(parse_whole_count("2.5").is_err());
/// ```
pub fn parse_whole_count(input: &str) -> Result<u64, UnitError> {
    let value = parse_count(input)?;
    if value.fract() != 0.0 {
        return Err(UnitError::NotWhole {
            input: input.to_owned(),
        });
    }
    if value >= u64::MAX as f64 {
        return Err(UnitError::TooLarge {
            input: input.to_owned(),
        });
    }
    Ok(value as u64)
}

/// Reads a plain non-negative number (no unit), such as `40` or `1.5`.
pub fn parse_number(input: &str) -> Result<f64, UnitError> {
    let (number, unit) = split_unit(input)?;
    if !unit.is_empty() {
        return Err(UnitError::UnknownUnit {
            input: input.to_owned(),
            unit: unit.to_owned(),
            expected: "no unit",
        });
    }
    scale(input, number, 1.0)
}

/// Splits `input` into its number and its trailing alphabetic unit, and
/// removes thousands separators from the number.
fn split_unit(input: &str) -> Result<(String, &str), UnitError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(UnitError::Empty);
    }
    let number_end = trimmed
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphabetic())
        .last()
        .map_or(trimmed.len(), |(i, _)| i);
    let (number, unit) = trimmed.split_at(number_end);
    let number = number.trim();
    if number.is_empty() {
        return Err(UnitError::NotANumber {
            input: input.to_owned(),
        });
    }
    if number.contains(',') && !commas_are_thousands(number) {
        return Err(UnitError::MisplacedSeparator {
            input: input.to_owned(),
        });
    }
    Ok((number.replace([',', '_'], ""), unit))
}

/// Checks that commas in `number` only separate groups of three digits in
/// the integer part, so that `1,5` (a decimal comma) is not read as 15.
fn commas_are_thousands(number: &str) -> bool {
    let unsigned = number.strip_prefix(['-', '+']).unwrap_or(number);
    let integer = unsigned.split(['.', 'e', 'E']).next().unwrap_or("");
    let mut groups = integer.split(',');
    let first_ok = groups
        .next()
        .is_some_and(|g| (1..=3).contains(&g.len()) && g.chars().all(|c| c.is_ascii_digit()));
    first_ok && groups.all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
}

/// Parses the number, applies the unit and rejects negative or infinite
/// results.
fn scale(input: &str, number: String, multiplier: f64) -> Result<f64, UnitError> {
    let value: f64 = number.parse().map_err(|_| UnitError::NotANumber {
        input: input.to_owned(),
    })?;
    if value.is_nan() {
        return Err(UnitError::NotANumber {
            input: input.to_owned(),
        });
    }
    if value < 0.0 {
        return Err(UnitError::Negative {
            input: input.to_owned(),
        });
    }
    let scaled = value * multiplier;
    if !scaled.is_finite() {
        return Err(UnitError::TooLarge {
            input: input.to_owned(),
        });
    }
    Ok(scaled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_source_design_figures() {
        assert_eq!(format_bytes(2e12), "2 TB");
        assert_eq!(format_bytes(3.65e15), "3.65 PB");
        assert_eq!(format_bytes_per_sec(2e12 / 86_400.0), "23.1 MB/s");
        assert_eq!(format_bytes(4e12), "4 TB");
        assert_eq!(format_count(2e10), "20 billion");
        assert_eq!(format_count(5e8), "500 million");
        assert_eq!(format_count(10_000.0), "10,000");
    }

    #[test]
    fn formats_edges() {
        assert_eq!(format_bytes(0.0), "0 B");
        assert_eq!(format_bytes(0.5), "0.5 B");
        assert_eq!(format_bytes(999.0), "999 B");
        assert_eq!(format_bytes(999.6), "1 kB");
        assert_eq!(format_bytes(999_600.0), "1 MB");
        assert_eq!(format_bytes(1e21), "1000 EB");
        assert_eq!(format_count(0.0), "0");
        assert_eq!(format_count(40.0), "40");
        assert_eq!(format_count(0.125), "0.125");
        assert_eq!(format_count(999_999.6), "1 million");
        assert_eq!(format_count(1.5e6), "1.5 million");
        assert_eq!(format_count(-1234.0), "-1,234");
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
    }

    #[test]
    fn parses_sizes_and_counts() {
        assert_eq!(parse_bytes("4 TB").unwrap(), 4e12);
        assert_eq!(parse_bytes("4tb").unwrap(), 4e12);
        assert_eq!(parse_bytes("1.5e3kB").unwrap(), 1.5e6);
        assert_eq!(parse_bytes("4e12").unwrap(), 4e12);
        assert_eq!(parse_bytes("2MiB").unwrap(), 2.0 * 1024.0 * 1024.0);
        assert_eq!(parse_count("1_000").unwrap(), 1000.0);
        assert_eq!(parse_count("20B").unwrap(), 2e10);
        assert_eq!(parse_whole_count("50K").unwrap(), 50_000);
        assert_eq!(parse_number("1.25").unwrap(), 1.25);
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(parse_bytes(""), Err(UnitError::Empty));
        assert!(matches!(parse_bytes("-1"), Err(UnitError::Negative { .. })));
        assert!(matches!(
            parse_bytes("TB"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_bytes("nan"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_bytes("inf"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_bytes("1e300EB"),
            Err(UnitError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_bytes("4 TiBs"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_count("1,5"),
            Err(UnitError::MisplacedSeparator { .. })
        ));
        assert!(matches!(
            parse_count("5 apples"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_number("5x"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_whole_count("0.5K5"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_whole_count("1e30"),
            Err(UnitError::TooLarge { .. })
        ));
    }

    #[test]
    fn time_conversions() {
        assert_eq!(years_to_days(5.0), 1825.0);
        assert_eq!(per_sec_to_per_day(per_day_to_per_sec(86_400.0)), 86_400.0);
    }
}
