//! Package URLs (github.com/package-url/purl-spec): `pkg:type/namespace/name@version?qualifiers`,
//! each component percent-encoded except the unreserved characters and `:`, which the spec says
//! is never encoded.

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds a purl. `namespace` may hold several `/`-separated segments (Go module paths).
pub fn purl(kind: &str, namespace: Option<&str>, name: &str, version: &str, qualifiers: &[(&str, &str)]) -> String {
    let mut out = format!("pkg:{kind}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        out.push_str(&ns.split('/').map(|seg| encode(seg, false)).collect::<Vec<_>>().join("/"));
        out.push('/');
    }
    out.push_str(&encode(name, false));
    if !version.is_empty() {
        out.push('@');
        out.push_str(&encode(version, false));
    }
    let mut q: Vec<_> = qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    q.sort();
    for (i, (k, v)) in q.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v, false));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::purl;

    #[test]
    fn purls_as_the_spec_writes_them() {
        assert_eq!(
            purl("deb", Some("debian"), "libc6", "2.36-9+deb12u3", &[("arch", "amd64"), ("distro", "debian-12")]),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64&distro=debian-12"
        );
        assert_eq!(purl("npm", Some("@babel"), "core", "7.0.0", &[]), "pkg:npm/%40babel/core@7.0.0");
        assert_eq!(purl("golang", Some("golang.org/x"), "text", "v0.3.7", &[]), "pkg:golang/golang.org/x/text@v0.3.7");
        assert_eq!(purl("deb", Some("debian"), "zlib1g", "1:1.2.13.dfsg-1", &[]), "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1");
        assert_eq!(purl("rpm", Some("almalinux"), "openssl", "3.0.1-43.el9_0", &[("epoch", "1")]), "pkg:rpm/almalinux/openssl@3.0.1-43.el9_0?epoch=1");
        assert_eq!(purl("maven", Some("org.apache.logging.log4j"), "log4j-core", "2.14.1", &[]), "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1");
    }
}
