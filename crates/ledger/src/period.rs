//! Billing periods anchored on a day of the month.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// The start of the period of month `year`-`month` for an anchor day (clamped to the month's last day),
/// at 00:00 UTC.
pub(crate) fn anchor_in_month(year: i32, month: u32, anchor_day: u32) -> DateTime<Utc> {
    let mut day = anchor_day.clamp(1, 31);
    loop {
        if let Some(date) = NaiveDate::from_ymd_opt(year, month, day) {
            let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
            return Utc.from_utc_datetime(&midnight);
        }
        day -= 1;
    }
}

fn add_months(year: i32, month: u32, n: u32) -> (i32, u32) {
    let idx = year * 12 + (month as i32 - 1) + n as i32;
    (idx.div_euclid(12), idx.rem_euclid(12) as u32 + 1)
}

/// The first reset strictly after `instant` for an anchor day.
pub(crate) fn next_reset(instant: DateTime<Utc>, anchor_day: u32) -> DateTime<Utc> {
    let this_month = anchor_in_month(instant.year(), instant.month(), anchor_day);
    if this_month > instant {
        this_month
    } else {
        let (y, m) = add_months(instant.year(), instant.month(), 1);
        anchor_in_month(y, m, anchor_day)
    }
}

/// The last reset at or before `instant` for an anchor day.
pub(crate) fn last_reset(instant: DateTime<Utc>, anchor_day: u32) -> DateTime<Utc> {
    let this_month = anchor_in_month(instant.year(), instant.month(), anchor_day);
    if this_month <= instant {
        this_month
    } else {
        let (y, m) = add_months(instant.year(), instant.month(), 11);
        anchor_in_month(y - 1, m, anchor_day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn day_31_clamps_to_short_months_and_comes_back() {
        assert_eq!(next_reset(at(2026, 1, 31), 31), at(2026, 2, 28));
        assert_eq!(next_reset(at(2026, 2, 28), 31), at(2026, 3, 31));
        assert_eq!(next_reset(at(2026, 3, 31), 31), at(2026, 4, 30));
        assert_eq!(next_reset(at(2028, 1, 31), 31), at(2028, 2, 29));
        assert_eq!(next_reset(at(2026, 12, 31), 31), at(2027, 1, 31));
    }

    #[test]
    fn last_reset_is_at_or_before() {
        assert_eq!(last_reset(at(2026, 3, 15), 15), at(2026, 3, 15));
        assert_eq!(last_reset(at(2026, 3, 14), 15), at(2026, 2, 15));
        assert_eq!(last_reset(at(2026, 1, 5), 15), at(2025, 12, 15));
        assert_eq!(last_reset(at(2026, 3, 1), 31), at(2026, 2, 28));
    }
}
