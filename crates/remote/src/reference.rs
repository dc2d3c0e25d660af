//! Image references as docker reads them: `[registry/]repository[:tag][@digest]`, Docker Hub and
//! `library/` by default.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]`; `registry-1.docker.io` for Docker Hub.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an image reference")]
pub struct ReferenceError(pub String);

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, ReferenceError> {
        let bad = || ReferenceError(s.to_owned());
        let s = s.strip_prefix("docker://").unwrap_or(s);
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) if d.contains(':') => (r, Some(d.to_owned())),
            Some(_) => return Err(bad()),
            None => (s, None),
        };
        let (first, remainder) = rest.split_once('/').unwrap_or(("", rest));
        let is_host = !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
        let (registry, path) = if is_host { (first.to_owned(), remainder.to_owned()) } else { ("docker.io".to_owned(), rest.to_owned()) };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_owned(), Some(t.to_owned())),
            _ => (path, None),
        };
        if repository.is_empty() || repository.split('/').any(str::is_empty) {
            return Err(bad());
        }
        let (registry, repository) = if registry == "docker.io" || registry == "index.docker.io" {
            let repo = if repository.contains('/') { repository } else { format!("library/{repository}") };
            ("registry-1.docker.io".to_owned(), repo)
        } else {
            (registry, repository)
        };
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_owned()) } else { tag };
        Ok(ImageRef { registry, repository, tag, digest })
    }

    /// The digest if pinned, else the tag.
    pub fn reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    pub fn is_loopback(&self) -> bool {
        let host = self.registry.rsplit_once(':').map_or(self.registry.as_str(), |(h, p)| if p.bytes().all(|c| c.is_ascii_digit()) { h } else { self.registry.as_str() });
        matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.starts_with("127.")
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ImageRef;

    #[test]
    fn references_as_docker_reads_them() {
        let r = ImageRef::parse("alpine").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.reference()), ("registry-1.docker.io", "library/alpine", "latest"));
        let r = ImageRef::parse("localhost:5000/team/app:1.2").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.reference()), ("localhost:5000", "team/app", "1.2"));
        assert!(r.is_loopback());
        let r = ImageRef::parse("ghcr.io/o/i@sha256:abc").unwrap();
        assert_eq!((r.tag.as_deref(), r.reference()), (None, "sha256:abc"));
        let r = ImageRef::parse("127.0.0.1:5000/x:t@sha256:00").unwrap();
        assert_eq!(r.reference(), "sha256:00");
        assert!(ImageRef::parse("").is_err() && ImageRef::parse("a//b").is_err() && ImageRef::parse("x@y").is_err());
    }
}
