//! Timestamps as the specs write them.

/// `2026-11-24T10:00:00Z` for seconds since the epoch (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Seconds since the epoch of an RFC 3339 time (`2026-11-24T10:00:00Z`, fractions and offsets
/// allowed) or of a plain date (`2026-11-24`, midnight UTC). `None` for anything else or a time
/// before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim();
    let num = |t: &str| -> Option<i64> { (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok()).flatten() };
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.splitn(3, '-');
    let (year, month, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut secs = 0i64;
    if let Some(t) = time {
        let (clock, offset) = match t.find(['Z', 'z', '+', '-']) {
            Some(i) => (&t[..i], &t[i..]),
            None => return None,
        };
        let clock = clock.split('.').next()?;
        let mut c = clock.splitn(3, ':');
        let (h, m, sec) = (num(c.next()?)?, num(c.next()?)?, num(c.next()?)?);
        if h > 23 || m > 59 || sec > 60 {
            return None;
        }
        secs = h * 3600 + m * 60 + sec;
        if !offset.eq_ignore_ascii_case("z") {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (oh, om) = offset[1..].split_once(':')?;
            secs -= sign * (num(oh)? * 3600 + num(om)? * 60);
        }
    }
    // Days from civil (the inverse of `rfc3339`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + secs).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_parses_what_it_writes_and_what_others_write() {
        for secs in [0, 951_782_400, 1_795_478_400 + 3_661, 4_102_444_800] {
            assert_eq!(super::parse_rfc3339(&super::rfc3339(secs)), Some(secs));
        }
        assert_eq!(super::parse_rfc3339("2026-11-24"), Some(1_795_478_400));
        assert_eq!(super::parse_rfc3339("2026-11-24T02:01:01.123456789+01:00"), Some(1_795_478_400 + 3_661));
        assert_eq!(super::parse_rfc3339("2026-11-24T00:00:00-00:30"), Some(1_795_478_400 + 1_800));
        for bad in ["", "2026-13-01", "2026-11-24T25:00:00Z", "2026-11-24T10:00:00", "yesterday", "1969-12-31"] {
            assert_eq!(super::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_478_400 + 3_661), "2026-11-24T01:01:01Z");
    }
}
