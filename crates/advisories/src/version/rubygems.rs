//! RubyGems' `Gem::Version`: segments are runs of digits or letters; a letter segment makes a
//! pre-release and sorts below any number; missing segments read as 0.

use std::cmp::Ordering;

#[derive(Debug, PartialEq, Eq)]
enum Seg<'a> {
    Num(&'a str),
    Str(&'a str),
}

fn segments(v: &str) -> Option<Vec<Seg<'_>>> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-') {
        return None;
    }
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let s = i;
        if b[i].is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Seg::Num(&v[s..i]));
        } else if b[i].is_ascii_alphabetic() {
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Seg::Str(&v[s..i]));
        } else {
            i += 1;
        }
    }
    Some(out)
}

pub(super) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (sa, sb) = (segments(a)?, segments(b)?);
    for k in 0..sa.len().max(sb.len()) {
        let o = match (sa.get(k).unwrap_or(&Seg::Num("0")), sb.get(k).unwrap_or(&Seg::Num("0"))) {
            (Seg::Num(x), Seg::Num(y)) => super::cmp_digits(x, y),
            (Seg::Num(_), Seg::Str(_)) => Ordering::Greater,
            (Seg::Str(_), Seg::Num(_)) => Ordering::Less,
            (Seg::Str(x), Seg::Str(y)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return Some(o);
        }
    }
    Some(Ordering::Equal)
}
