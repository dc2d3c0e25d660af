//! PEP 440: `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, with the spec's normalisations
//! (`alpha`→`a`, `c`/`pre`/`preview`→`rc`, `-N`/`rev`/`r`→post, optional separators, a `v` prefix).
//! A dev release without pre or post sorts before the pre-releases of its release.

use std::cmp::Ordering;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Local {
    Str(String),
    Num(u64),
}

#[derive(Debug)]
struct Version {
    epoch: u64,
    release: Vec<u64>,
    /// (rank, n): a=0, b=1, rc=2; `None` = no pre-release.
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<Local>,
}

fn parse(v: &str) -> Option<Version> {
    let s = v.trim().to_ascii_lowercase();
    let s = s.strip_prefix('v').unwrap_or(&s);
    let (s, local) = match s.split_once('+') {
        Some((s, l)) => (s, Some(l)),
        None => (s, None),
    };
    let b = s.as_bytes();
    let mut i = 0;
    let num = |i: &mut usize| -> Option<u64> {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        if st == *i { None } else { s[st..*i].parse().ok() }
    };
    let sep = |i: &mut usize| {
        if *i < b.len() && matches!(b[*i], b'.' | b'-' | b'_') {
            *i += 1;
        }
    };
    let word = |i: &mut usize, words: &[&str]| -> Option<String> {
        let w = words.iter().filter(|w| s[*i..].starts_with(**w)).max_by_key(|w| w.len())?;
        *i += w.len();
        Some((*w).to_owned())
    };
    let mut epoch = 0;
    let mut first = num(&mut i)?;
    if b.get(i) == Some(&b'!') {
        i += 1;
        epoch = first;
        first = num(&mut i)?;
    }
    let mut release = vec![first];
    while b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        release.push(num(&mut i)?);
    }
    let mut pre = None;
    let save = i;
    sep(&mut i);
    if let Some(w) = word(&mut i, &["alpha", "beta", "preview", "pre", "rc", "a", "b", "c"]) {
        let rank = match w.as_str() {
            "a" | "alpha" => 0,
            "b" | "beta" => 1,
            _ => 2,
        };
        sep(&mut i);
        pre = Some((rank, num(&mut i).unwrap_or(0)));
    } else {
        i = save;
    }
    let mut post = None;
    let save = i;
    if b.get(i) == Some(&b'-') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        post = num(&mut i);
    } else {
        sep(&mut i);
        if word(&mut i, &["post", "rev", "r"]).is_some() {
            sep(&mut i);
            post = Some(num(&mut i).unwrap_or(0));
        } else {
            i = save;
        }
    }
    let mut dev = None;
    let save = i;
    sep(&mut i);
    if word(&mut i, &["dev"]).is_some() {
        sep(&mut i);
        dev = Some(num(&mut i).unwrap_or(0));
    } else {
        i = save;
    }
    if i != b.len() {
        return None;
    }
    let local = match local {
        None => Vec::new(),
        Some("") => return None,
        Some(l) => l
            .split(['.', '-', '_'])
            .map(|p| match p.parse() {
                Ok(n) if p.bytes().all(|c| c.is_ascii_digit()) => Local::Num(n),
                _ => Local::Str(p.to_owned()),
            })
            .collect(),
    };
    while release.len() > 1 && release.last() == Some(&0) {
        release.pop();
    }
    Some(Version { epoch, release, pre, post, dev, local })
}

/// Orders an optional value where `None` sits at the given end.
fn opt<T: Ord>(a: &Option<T>, b: &Option<T>, none_first: bool) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => if none_first { Ordering::Less } else { Ordering::Greater },
        (Some(_), None) => if none_first { Ordering::Greater } else { Ordering::Less },
        (Some(x), Some(y)) => x.cmp(y),
    }
}

pub(super) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    // A dev release of a final release sorts before its pre-releases.
    let pre_key = |v: &Version| match (v.pre, v.post, v.dev) {
        (None, None, Some(_)) => Some(None),
        (None, _, _) => None,
        (Some(p), _, _) => Some(Some(p)),
    };
    let o = a
        .epoch
        .cmp(&b.epoch)
        .then_with(|| {
            let n = a.release.len().max(b.release.len());
            let at = (0..n).map(|k| a.release.get(k).copied().unwrap_or(0));
            at.cmp((0..n).map(|k| b.release.get(k).copied().unwrap_or(0)))
        })
        .then_with(|| opt(&pre_key(&a), &pre_key(&b), false))
        .then_with(|| opt(&a.post, &b.post, true))
        .then_with(|| opt(&a.dev, &b.dev, false))
        .then_with(|| a.local.cmp(&b.local));
    Some(o)
}
