//! Every `/v2` request parsed into one typed [`Endpoint`].
//!
//! Repository names contain `/`, so a path is read from its end: the last segments say which
//! endpoint it is and what is left in front is the name.

use http::Method;
use oci::{Digest, Reference, RepoName, UploadId};

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v2/`
    Base,
    /// `GET /v2/_catalog`
    Catalog,
    /// `GET /v2/<name>/tags/list`
    Tags { repo: RepoName },
    /// `GET|HEAD /v2/<name>/manifests/<reference>`
    GetManifest { repo: RepoName, reference: Reference, head: bool },
    /// `PUT /v2/<name>/manifests/<reference>`
    PutManifest { repo: RepoName, reference: Reference },
    /// `DELETE /v2/<name>/manifests/<reference>`
    DeleteManifest { repo: RepoName, reference: Reference },
    /// `GET /v2/<name>/referrers/<digest>`
    Referrers { repo: RepoName, digest: Digest },
    /// `GET|HEAD /v2/<name>/blobs/<digest>`
    GetBlob { repo: RepoName, digest: Digest, head: bool },
    /// `DELETE /v2/<name>/blobs/<digest>`
    DeleteBlob { repo: RepoName, digest: Digest },
    /// `POST /v2/<name>/blobs/uploads/` (with `?digest=`, `?mount=&from=`, or neither)
    StartUpload { repo: RepoName },
    /// `GET /v2/<name>/blobs/uploads/<id>`
    UploadStatus { repo: RepoName, id: UploadId },
    /// `PATCH /v2/<name>/blobs/uploads/<id>`
    PatchUpload { repo: RepoName, id: UploadId },
    /// `PUT /v2/<name>/blobs/uploads/<id>?digest=`
    FinishUpload { repo: RepoName, id: UploadId },
    /// `DELETE /v2/<name>/blobs/uploads/<id>`
    CancelUpload { repo: RepoName, id: UploadId },
}

impl Endpoint {
    /// Whether it changes what is stored (every method but GET and HEAD).
    pub(crate) fn writes(&self) -> bool {
        match self {
            Endpoint::Base
            | Endpoint::Catalog
            | Endpoint::Tags { .. }
            | Endpoint::GetManifest { .. }
            | Endpoint::Referrers { .. }
            | Endpoint::GetBlob { .. }
            | Endpoint::UploadStatus { .. } => false,
            Endpoint::PutManifest { .. }
            | Endpoint::DeleteManifest { .. }
            | Endpoint::DeleteBlob { .. }
            | Endpoint::StartUpload { .. }
            | Endpoint::PatchUpload { .. }
            | Endpoint::FinishUpload { .. }
            | Endpoint::CancelUpload { .. } => true,
        }
    }

    /// The repository of a pull (manifest and blob reads, tags, referrers): what a mirror's
    /// `?ns=` routing renames.
    pub(crate) fn pulled_repo_mut(&mut self) -> Option<&mut RepoName> {
        match self {
            Endpoint::Tags { repo } | Endpoint::GetManifest { repo, .. } | Endpoint::Referrers { repo, .. } | Endpoint::GetBlob { repo, .. } => Some(repo),
            _ => None,
        }
    }
}

/// What the path names, before the method is considered.
enum Target<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Referrers(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Uploads(&'a str),
    Upload(&'a str, &'a str),
}

impl Endpoint {
    /// Parses `path` (starting with `/v2`) and `method`.
    pub fn parse(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
        let rest = path.strip_prefix("/v2").ok_or(ApiError::NotFound)?;
        let target = target(rest).ok_or(ApiError::NotFound)?;
        let m = method.clone();
        let read = m == Method::GET || m == Method::HEAD;
        let head = m == Method::HEAD;
        Ok(match target {
            Target::Base if read => Endpoint::Base,
            Target::Catalog if read => Endpoint::Catalog,
            Target::Tags(name) if read => Endpoint::Tags { repo: repo(name)? },
            Target::Manifest(name, r) => {
                let (repo, reference) = (repo(name)?, reference(r)?);
                match m {
                    _ if read => Endpoint::GetManifest { repo, reference, head },
                    Method::PUT => Endpoint::PutManifest { repo, reference },
                    Method::DELETE => Endpoint::DeleteManifest { repo, reference },
                    _ => return Err(ApiError::MethodNotAllowed),
                }
            }
            Target::Referrers(name, d) if read => Endpoint::Referrers { repo: repo(name)?, digest: digest(d)? },
            Target::Blob(name, d) => {
                let (repo, digest) = (repo(name)?, digest(d)?);
                match m {
                    _ if read => Endpoint::GetBlob { repo, digest, head },
                    Method::DELETE => Endpoint::DeleteBlob { repo, digest },
                    _ => return Err(ApiError::MethodNotAllowed),
                }
            }
            Target::Uploads(name) if m == Method::POST => Endpoint::StartUpload { repo: repo(name)? },
            Target::Upload(name, id) => {
                let repo = repo(name)?;
                let id = UploadId::new(id).ok_or(ApiError::UploadUnknown)?;
                match m {
                    Method::GET | Method::HEAD => Endpoint::UploadStatus { repo, id },
                    Method::PATCH => Endpoint::PatchUpload { repo, id },
                    Method::PUT => Endpoint::FinishUpload { repo, id },
                    Method::DELETE => Endpoint::CancelUpload { repo, id },
                    _ => return Err(ApiError::MethodNotAllowed),
                }
            }
            _ => return Err(ApiError::MethodNotAllowed),
        })
    }

    /// The repository the endpoint acts on, if any.
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Tags { repo }
            | Endpoint::GetManifest { repo, .. }
            | Endpoint::PutManifest { repo, .. }
            | Endpoint::DeleteManifest { repo, .. }
            | Endpoint::Referrers { repo, .. }
            | Endpoint::GetBlob { repo, .. }
            | Endpoint::DeleteBlob { repo, .. }
            | Endpoint::StartUpload { repo }
            | Endpoint::UploadStatus { repo, .. }
            | Endpoint::PatchUpload { repo, .. }
            | Endpoint::FinishUpload { repo, .. }
            | Endpoint::CancelUpload { repo, .. } => Some(repo),
        }
    }
}

fn target(rest: &str) -> Option<Target<'_>> {
    if rest.is_empty() || rest == "/" {
        return Some(Target::Base);
    }
    let path = rest.strip_prefix('/')?;
    if path == "_catalog" {
        return Some(Target::Catalog);
    }
    // (name, the segments after it) for the suffixes the spec defines, longest first.
    let split = |suffix_segments: usize| -> Option<(&str, Vec<&str>)> {
        let mut cut = path.len();
        for _ in 0..suffix_segments {
            cut = path[..cut].rfind('/')?;
        }
        Some((&path[..cut], path[cut + 1..].split('/').collect()))
    };
    if let Some((name, tail)) = split(3)
        && tail[0] == "blobs"
        && tail[1] == "uploads"
    {
        return Some(if tail[2].is_empty() { Target::Uploads(name) } else { Target::Upload(name, tail[2]) });
    }
    let (name, tail) = split(2)?;
    match (tail[0], tail[1]) {
        ("tags", "list") => Some(Target::Tags(name)),
        ("manifests", r) => Some(Target::Manifest(name, r)),
        ("referrers", d) => Some(Target::Referrers(name, d)),
        ("blobs", "uploads") => Some(Target::Uploads(name)),
        ("blobs", d) => Some(Target::Blob(name, d)),
        _ => None,
    }
}

fn repo(name: &str) -> Result<RepoName, ApiError> {
    name.parse().map_err(|e: oci::NameError| ApiError::NameInvalid(e.to_string()))
}

fn digest(d: &str) -> Result<Digest, ApiError> {
    d.parse().map_err(|e: oci::DigestError| ApiError::DigestInvalid(e.to_string()))
}

fn reference(r: &str) -> Result<Reference, ApiError> {
    Reference::parse(r).map_err(|e| match e {
        oci::ReferenceError::Digest(e) => ApiError::DigestInvalid(e.to_string()),
        oci::ReferenceError::Tag(e) => ApiError::ManifestInvalid(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, path: &str) -> Result<Endpoint, ApiError> {
        Endpoint::parse(&method, path)
    }

    #[test]
    fn names_with_slashes_and_spec_words() {
        let d = Digest::sha256_of(b"x");
        let ok = [
            (Method::GET, "/v2/".to_owned(), Endpoint::Base),
            (Method::GET, "/v2".to_owned(), Endpoint::Base),
            (Method::GET, "/v2/_catalog".to_owned(), Endpoint::Catalog),
            (Method::GET, "/v2/a/b/c/tags/list".to_owned(), Endpoint::Tags { repo: "a/b/c".parse().unwrap() }),
            (
                Method::HEAD,
                "/v2/x/blobs/y/manifests/latest".to_owned(),
                Endpoint::GetManifest {
                    repo: "x/blobs/y".parse().unwrap(),
                    reference: Reference::parse("latest").unwrap(),
                    head: true,
                },
            ),
            (
                Method::GET,
                format!("/v2/manifests/blobs/{d}"),
                Endpoint::GetBlob { repo: "manifests".parse().unwrap(), digest: d.clone(), head: false },
            ),
            (Method::POST, "/v2/a/blobs/uploads/".to_owned(), Endpoint::StartUpload { repo: "a".parse().unwrap() }),
            (Method::POST, "/v2/a/blobs/uploads".to_owned(), Endpoint::StartUpload { repo: "a".parse().unwrap() }),
            (
                Method::PATCH,
                "/v2/uploads/blobs/uploads/abc-1".to_owned(),
                Endpoint::PatchUpload { repo: "uploads".parse().unwrap(), id: UploadId::new("abc-1").unwrap() },
            ),
            (
                Method::GET,
                format!("/v2/r/referrers/{d}"),
                Endpoint::Referrers { repo: "r".parse().unwrap(), digest: d.clone() },
            ),
        ];
        for (m, p, want) in ok {
            assert_eq!(parse(m, &p).unwrap(), want, "{p}");
        }
    }

    #[test]
    fn refusals() {
        let cases: &[(Method, &str, &str)] = &[
            (Method::GET, "/v2/UPPER/tags/list", "NameInvalid"),
            (Method::GET, "/v2/a//b/tags/list", "NameInvalid"),
            (Method::GET, "/v2/a/blobs/sha256:short", "DigestInvalid"),
            (Method::GET, "/v2/a/blobs/notadigest", "DigestInvalid"),
            (Method::GET, "/v2/a/manifests/sha256:zz", "DigestInvalid"),
            (Method::GET, "/v2/a/manifests/-bad", "ManifestInvalid"),
            (Method::GET, "/v2/a/referrers/latest", "DigestInvalid"),
            (Method::PATCH, "/v2/a/blobs/uploads/bad.id", "UploadUnknown"),
            (Method::GET, "/v2/a/unknown/thing", "NotFound"),
            (Method::GET, "/v3/", "NotFound"),
            (Method::POST, "/v2/a/manifests/latest", "MethodNotAllowed"),
            (Method::PUT, "/v2/a/tags/list", "MethodNotAllowed"),
            (Method::GET, "/v2/a/blobs/uploads/", "MethodNotAllowed"),
        ];
        for (m, p, want) in cases {
            let got = format!("{:?}", parse(m.clone(), p).unwrap_err());
            assert!(got.starts_with(want), "{m} {p}: {got}, want {want}");
        }
    }
}
