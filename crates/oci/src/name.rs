//! Repository names, tags and references, by the distribution spec's grammars.

use std::fmt;
use std::str::FromStr;

use crate::Digest;

/// Longest repository name accepted, as in Distribution (the spec bounds host plus name by 255).
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// What a manifest path names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name {0:?} does not match the spec's grammar")]
    BadRepoName(String),
    #[error("repository name is longer than {MAX_NAME_LEN} characters")]
    RepoNameTooLong,
    #[error("tag {0:?} does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    BadTag(String),
}

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<RepoName, NameError> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::RepoNameTooLong);
        }
        if s.split('/').all(is_path_component) {
            Ok(RepoName(s.to_owned()))
        } else {
            Err(NameError::BadRepoName(s.to_owned()))
        }
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-", always followed by alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Tag, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..].iter().all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
        if ok { Ok(Tag(s.to_owned())) } else { Err(NameError::BadTag(s.to_owned())) }
    }
}

impl Reference {
    /// A reference from a manifest path: a digest if it contains `:`, else a tag.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

/// Why a manifest reference is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Digest(#[from] crate::DigestError),
    #[error(transparent)]
    Tag(#[from] NameError),
}


macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(&self.0) }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { fmt::Debug::fmt(&self.0, f) }
        }
    )*};
}
display_as_str!(RepoName, Tag);

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// An upload session's identity: URL-safe, no `/` (it appears in a Location and as a file name).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// `id` must be 1..=64 characters of `[A-Za-z0-9-]`: it becomes a file or object name.
    pub fn new(id: &str) -> Option<UploadId> {
        let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| UploadId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        let good = [
            "a", "library/ubuntu", "a0/b-c/d.e/f_g/h__i/j---k", "dockerhub/library/nginx", "x1.y2",
            "blobs/uploads/manifests",
        ];
        for n in good {
            assert_eq!(n.parse::<RepoName>().unwrap().as_str(), n, "{n}");
        }
        let bad = [
            "", "/", "a/", "/a", "a//b", "A", "a.", ".a", "a..b", "a___b", "a_-b", "a-", "-a", "a b",
            "a/../b", "a/./b", "ä", "a:b", "a@b",
        ];
        for n in bad {
            assert!(n.parse::<RepoName>().is_err(), "{n:?} should be refused");
        }
        assert_eq!("a".repeat(256).parse::<RepoName>(), Err(NameError::RepoNameTooLong));
        assert!("a".repeat(255).parse::<RepoName>().is_ok());
    }

    #[test]
    fn upload_ids() {
        assert!(UploadId::new("0b3c-9f").is_some());
        for bad in ["", "a/b", "..", "a.b", &"x".repeat(65)] {
            assert!(UploadId::new(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn tags_and_references() {
        for t in ["latest", "_x", "1.0.0-rc.1", "A_b.C-d", &"x".repeat(128)] {
            assert!(t.parse::<Tag>().is_ok(), "{t}");
        }
        for t in ["", ".x", "-x", "a/b", "a:b", "a+b", &"x".repeat(129)] {
            assert!(t.parse::<Tag>().is_err(), "{t:?}");
        }
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        assert!(matches!(Reference::parse(&Digest::sha256_of(b"").to_string()), Ok(Reference::Digest(_))));
        assert!(Reference::parse("sha256:nothex").is_err());
    }
}
