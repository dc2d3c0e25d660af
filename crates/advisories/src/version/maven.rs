//! Maven's `ComparableVersion` (Maven 3): a version is a list of items split at `.`, with `-` and
//! every digit/letter transition opening a nested list. Numbers compare numerically; qualifiers by
//! `alpha < beta < milestone < rc = cr < snapshot < (release = ga = final) < sp`, unknown qualifiers
//! after those, alphabetically; `a1`, `b1`, `m1` mean alpha, beta, milestone. Trailing "null"
//! items (0, release) are dropped, so `1.0.0 = 1 = 1-ga`.

use std::cmp::Ordering;

#[derive(Debug, Clone)]
enum Item {
    Int(String),
    Str(String),
    List(Vec<Item>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];

fn qualifier_key(q: &str) -> String {
    let q = match q {
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        q => q,
    };
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => i.to_string(),
        None => format!("{}-{q}", QUALIFIERS.len()),
    }
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Item::Int(n) => n.trim_start_matches('0').is_empty(),
            Item::Str(s) => qualifier_key(s) == qualifier_key(""),
            Item::List(l) => l.is_empty(),
        }
    }

    fn cmp_null(&self) -> Ordering {
        match self {
            Item::Int(n) => if n.trim_start_matches('0').is_empty() { Ordering::Equal } else { Ordering::Greater },
            Item::Str(s) => qualifier_key(s).cmp(&qualifier_key("")),
            Item::List(l) => l.first().map_or(Ordering::Equal, Item::cmp_null),
        }
    }

    fn cmp(&self, other: Option<&Item>) -> Ordering {
        let Some(other) = other else { return self.cmp_null() };
        match (self, other) {
            (Item::Int(a), Item::Int(b)) => super::cmp_digits(a, b),
            (Item::Int(_), _) => Ordering::Greater,
            (Item::Str(_), Item::Int(_)) => Ordering::Less,
            (Item::Str(a), Item::Str(b)) => qualifier_key(a).cmp(&qualifier_key(b)),
            (Item::Str(_), Item::List(_)) => Ordering::Less,
            (Item::List(_), Item::Int(_)) => Ordering::Less,
            (Item::List(_), Item::Str(_)) => Ordering::Greater,
            (Item::List(a), Item::List(b)) => cmp_lists(a, b),
        }
    }
}

fn cmp_lists(a: &[Item], b: &[Item]) -> Ordering {
    for k in 0..a.len().max(b.len()) {
        let o = match (a.get(k), b.get(k)) {
            (Some(x), y) => x.cmp(y),
            (None, Some(y)) => y.cmp_null().reverse(),
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn normalize(list: &mut Vec<Item>) {
    for item in list.iter_mut() {
        if let Item::List(l) = item {
            normalize(l);
        }
    }
    while let Some(last) = list.last() {
        if last.is_null() {
            list.pop();
        } else if matches!(last, Item::List(_)) {
            // Maven looks past a non-null nested list only to stop there.
            break;
        } else {
            break;
        }
    }
}

fn parse(v: &str) -> Vec<Item> {
    let v = v.trim().to_ascii_lowercase();
    // Stack of open lists; the last is where items go.
    let mut stack: Vec<Vec<Item>> = vec![Vec::new()];
    let chars: Vec<char> = v.chars().collect();
    let mut start = 0;
    let mut digit = false;
    let push_item = |stack: &mut Vec<Vec<Item>>, s: &str, digit: bool, next: Option<char>| {
        let item = if digit {
            Item::Int(s.to_owned())
        } else {
            let expanded = match (s, next) {
                ("a", Some(c)) if c.is_ascii_digit() => "alpha",
                ("b", Some(c)) if c.is_ascii_digit() => "beta",
                ("m", Some(c)) if c.is_ascii_digit() => "milestone",
                _ => s,
            };
            Item::Str(expanded.to_owned())
        };
        stack.last_mut().unwrap().push(item);
    };
    let open = |stack: &mut Vec<Vec<Item>>| stack.push(Vec::new());
    for (i, &c) in chars.iter().enumerate() {
        let token: String = chars[start..i].iter().collect();
        if c == '.' || c == '-' {
            if token.is_empty() {
                stack.last_mut().unwrap().push(Item::Int("0".into()));
            } else {
                push_item(&mut stack, &token, digit, Some(c));
            }
            start = i + 1;
            if c == '-' {
                open(&mut stack);
            }
        } else if c.is_ascii_digit() {
            if !digit && i > start {
                push_item(&mut stack, &token, false, Some(c));
                start = i;
                open(&mut stack);
            }
            digit = true;
        } else {
            if digit && i > start {
                push_item(&mut stack, &token, true, Some(c));
                start = i;
                open(&mut stack);
            }
            digit = false;
        }
    }
    let token: String = chars[start..].iter().collect();
    if !token.is_empty() {
        push_item(&mut stack, &token, digit, None);
    }
    // Close the nested lists from the innermost out.
    while stack.len() > 1 {
        let inner = stack.pop().unwrap();
        stack.last_mut().unwrap().push(Item::List(inner));
    }
    let mut top = stack.pop().unwrap();
    normalize(&mut top);
    top
}

pub(super) fn compare(a: &str, b: &str) -> Ordering {
    cmp_lists(&parse(a), &parse(b))
}
