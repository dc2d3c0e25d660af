//! HTML written so that only literals in this crate are markup: [`Html::tag`] takes a
//! `&'static str`, and everything else — names, tags, annotations, findings, a query the user
//! typed — goes through [`Html::text`] or [`Html::attr`], which escape it.
//!
//! Architecture Invariant: no page builds markup with `format!` or from request or stored data.

use std::fmt::Write;

pub(crate) struct Html(String);

impl Html {
    pub(crate) fn new() -> Html {
        Html(String::with_capacity(8 * 1024))
    }

    /// Markup written here: a literal, never data.
    pub(crate) fn tag(&mut self, markup: &'static str) -> &mut Html {
        self.0.push_str(markup);
        self
    }

    /// Text, escaped for an element's content.
    pub(crate) fn text(&mut self, text: &str) -> &mut Html {
        escape_into(&mut self.0, text);
        self
    }

    /// A number or anything else whose `Display` is data.
    pub(crate) fn show(&mut self, value: impl std::fmt::Display) -> &mut Html {
        let mut s = String::new();
        let _ = write!(s, "{value}");
        self.text(&s)
    }

    /// ` name="value"`, the value escaped for a quoted attribute.
    pub(crate) fn attr(&mut self, name: &'static str, value: &str) -> &mut Html {
        self.0.push(' ');
        self.0.push_str(name);
        self.0.push_str("=\"");
        escape_into(&mut self.0, value);
        self.0.push('"');
        self
    }

    /// `<a href="href">text</a>`.
    pub(crate) fn link(&mut self, href: &str, text: &str) -> &mut Html {
        self.tag("<a").attr("href", href).tag(">").text(text).tag("</a>")
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_escaped_in_text_and_attributes() {
        let mut h = Html::new();
        h.tag("<p").attr("title", "a\"><script>x</script>").tag(">").text("<img src=x onerror='y'> & co").tag("</p>");
        assert_eq!(
            h.into_string(),
            "<p title=\"a&quot;&gt;&lt;script&gt;x&lt;/script&gt;\">&lt;img src=x onerror=&#39;y&#39;&gt; &amp; co</p>"
        );
    }

    #[test]
    fn links_escape_their_target_and_text() {
        let mut h = Html::new();
        h.link("/ui/search?package=a&version=\"1\"", "log4j <2.15>");
        assert_eq!(h.into_string(), "<a href=\"/ui/search?package=a&amp;version=&quot;1&quot;\">log4j &lt;2.15&gt;</a>");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(crate::v2::encode_query_value("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
