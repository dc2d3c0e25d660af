//! Prometheus text exposition: the `# HELP`/`# TYPE` lines and the common series shapes, written
//! once for every family `/metrics` shows.

use std::fmt::{Display, Write as _};

use crate::admission::RouteClass;

/// The `# HELP` and `# TYPE` lines of a family.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family of one unlabelled series.
pub(crate) fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A family with one series per value of one label.
pub(crate) fn labelled<'a>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (&'a str, u64)>,
) {
    header(out, name, kind, help);
    for (value_of_label, value) in series {
        let _ = writeln!(out, "{name}{{{label}=\"{value_of_label}\"}} {value}");
    }
}

/// A family with one series per route class.
pub(crate) fn per_class(out: &mut String, name: &str, kind: &str, help: &str, value: impl Fn(RouteClass) -> u64) {
    labelled(out, name, kind, help, "class", RouteClass::ALL.into_iter().map(|c| (c.as_str(), value(c))));
}
