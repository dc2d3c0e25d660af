//! RPM's ordering: `[epoch:]version[-release]`, each part by `rpmvercmp` (alphanumeric segments,
//! digits numerically and above letters, `~` sorting before everything and `^` after the end).
//! A missing epoch is 0; a release is compared only when both sides have one.

use std::cmp::Ordering;

pub(super) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (ea, va, ra) = split(a)?;
    let (eb, vb, rb) = split(b)?;
    let mut o = ea.cmp(&eb).then_with(|| rpmvercmp(va, vb));
    if let (Some(ra), Some(rb)) = (ra, rb) {
        o = o.then_with(|| rpmvercmp(ra, rb));
    }
    Some(o)
}

fn split(v: &str) -> Option<(u64, &str, Option<&str>)> {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => (e.parse().ok()?, rest),
        None => (0, v),
    };
    let (version, release) = match rest.rsplit_once('-') {
        Some((v, r)) => (v, Some(r)),
        None => (rest, None),
    };
    (!version.is_empty()).then_some((epoch, version, release))
}

pub(super) fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca.is_none() && cb.is_none() {
            return Ordering::Equal;
        }
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = ca.is_ascii_digit();
        let class = |c: u8| if numeric { c.is_ascii_digit() } else { c.is_ascii_alphabetic() };
        let (si, sj) = (i, j);
        while i < a.len() && class(a[i]) {
            i += 1;
        }
        while j < b.len() && class(b[j]) {
            j += 1;
        }
        if sj == j {
            // Segments of different kinds: a number is newer than letters.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let (sa, sb) = (std::str::from_utf8(&a[si..i]).unwrap(), std::str::from_utf8(&b[sj..j]).unwrap());
        let o = if numeric { super::cmp_digits(sa, sb) } else { sa.cmp(sb) };
        if o != Ordering::Equal {
            return o;
        }
    }
    if i >= a.len() { Ordering::Less } else { Ordering::Greater }
}
