//! Semantic versions as ecosystems really write them: npm and crates.io (a missing minor or patch
//! reads as 0, so OSV's `1.0` is `1.0.0`), Go (`v` prefix; pseudo-versions are pre-releases already;
//! `+incompatible` is build metadata and ignored), NuGet (four numeric parts, labels compared
//! without case).

use std::cmp::Ordering;

fn split(v: &str) -> Option<(Vec<&str>, Option<&str>)> {
    let v = v.trim_start_matches(['v', 'V', '=']);
    let v = v.split_once('+').map_or(v, |(core, _build)| core);
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit())) {
        return None;
    }
    if pre.is_some_and(str::is_empty) {
        return None;
    }
    Some((parts, pre))
}

pub(super) fn compare(a: &str, b: &str, ignore_case: bool) -> Option<Ordering> {
    let (ca, pa) = split(a)?;
    let (cb, pb) = split(b)?;
    for k in 0..ca.len().max(cb.len()) {
        let o = super::cmp_digits(ca.get(k).copied().unwrap_or("0"), cb.get(k).copied().unwrap_or("0"));
        if o != Ordering::Equal {
            return Some(o);
        }
    }
    Some(match (pa, pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => prerelease(x, y, ignore_case),
    })
}

fn prerelease(a: &str, b: &str, ignore_case: bool) -> Ordering {
    let mut ia = a.split('.');
    let mut ib = b.split('.');
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let nx = !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
                let ny = !y.is_empty() && y.bytes().all(|c| c.is_ascii_digit());
                let o = match (nx, ny) {
                    (true, true) => super::cmp_digits(x, y),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) if ignore_case => x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()),
                    (false, false) => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}
