//! apk-tools' ordering: `digits{.digits}[letter]{_suffix[digits]}[-rN]`. Pre-release suffixes
//! (`_alpha`, `_beta`, `_pre`, `_rc`) sort before the bare version, the others (`_cvs`, `_svn`,
//! `_git`, `_hg`, `_p`) after it; when one version runs out of parts first, the longer one is newer
//! unless its next part is a pre-release suffix.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Digit(String),
    Letter(u8),
    Suffix(i32, String),
    Revision(String),
}

impl Token {
    /// apk's token order: a later kind sorts lower when the two sides differ in kind.
    fn kind(&self) -> u8 {
        match self {
            Token::Digit(_) => 1,
            Token::Letter(_) => 2,
            Token::Suffix(..) => 3,
            Token::Revision(_) => 5,
        }
    }
}

const SUFFIXES: [(&str, i32); 9] =
    [("alpha", -4), ("beta", -3), ("pre", -2), ("rc", -1), ("cvs", 1), ("svn", 2), ("git", 3), ("hg", 4), ("p", 5)];

fn tokens(v: &str) -> Option<Vec<Token>> {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        v[s..*i].to_owned()
    };
    if b.first().is_none_or(|c| !c.is_ascii_digit()) {
        return None;
    }
    out.push(Token::Digit(digits(&mut i)));
    while i < b.len() && b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        out.push(Token::Digit(digits(&mut i)));
    }
    if i < b.len() && b[i].is_ascii_lowercase() {
        out.push(Token::Letter(b[i]));
        i += 1;
    }
    while i < b.len() && b[i] == b'_' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_lowercase() {
            i += 1;
        }
        let rank = SUFFIXES.iter().find(|(n, _)| *n == &v[s..i])?.1;
        out.push(Token::Suffix(rank, digits(&mut i)));
    }
    if v[i..].starts_with("-r") {
        i += 2;
        let r = digits(&mut i);
        if r.is_empty() {
            return None;
        }
        out.push(Token::Revision(r));
    }
    (i == b.len()).then_some(out)
}

pub(super) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (ta, tb) = (tokens(a)?, tokens(b)?);
    for k in 0..ta.len().max(tb.len()) {
        match (ta.get(k), tb.get(k)) {
            (Some(x), Some(y)) if x.kind() == y.kind() => {
                let o = match (x, y) {
                    (Token::Digit(x), Token::Digit(y)) | (Token::Revision(x), Token::Revision(y)) => {
                        super::cmp_digits(x, y)
                    }
                    (Token::Letter(x), Token::Letter(y)) => x.cmp(y),
                    (Token::Suffix(rx, nx), Token::Suffix(ry, ny)) => {
                        rx.cmp(ry).then_with(|| super::cmp_digits(nx, ny))
                    }
                    _ => unreachable!("same kind"),
                };
                if o != Ordering::Equal {
                    return Some(o);
                }
            }
            (x, y) => {
                // Different kinds, or one side has ended (kind 6).
                let pre = |t: Option<&Token>| matches!(t, Some(Token::Suffix(r, _)) if *r < 0);
                if pre(x) {
                    return Some(Ordering::Less);
                }
                if pre(y) {
                    return Some(Ordering::Greater);
                }
                let kx = x.map_or(6, Token::kind);
                let ky = y.map_or(6, Token::kind);
                return Some(ky.cmp(&kx));
            }
        }
    }
    Some(Ordering::Equal)
}
