//! What can go wrong in the registry core, named for what the caller does about it.

use oci::{Digest, Reference, RepoName, Tag};

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error("blob {0} is not in this repository")]
    BlobUnknown(Digest),
    #[error("repository {0} is not known")]
    NameUnknown(RepoName),
    #[error("manifest {0} is not in this repository")]
    ManifestUnknown(Reference),
    #[error("the manifest references {0}, which is not in this repository")]
    ManifestBlobUnknown(Digest),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest is larger than the limit of {limit} bytes")]
    ManifestTooLarge { limit: usize },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    NameInvalid(String),
    #[error("upload session is not known in this repository")]
    UploadUnknown,
    #[error("{0}")]
    UploadInvalid(String),
    /// A chunk did not start where the session is, or another chunk is being written: the
    /// session is intact at `received` bytes.
    #[error("chunk does not start at the session's offset {received}")]
    UploadOutOfOrder { received: u64 },
    #[error("range is not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    DigestInvalid(String),
    #[error("content digest is {actual}, not the {expected} given")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("{0}")]
    SizeInvalid(String),
    #[error("too many open upload sessions (limit {limit}); retry later")]
    TooManyUploads { limit: u64 },
    /// The image is still being inspected; it is served once judged.
    #[error("the image is being inspected; retry in {retry_after_secs} s")]
    Pending { retry_after_secs: u64 },
    /// A mirror's upstream failed, or does not answer, and nothing cached can stand in.
    #[error("{0}")]
    Upstream(String),
    /// A mirror's upstream asks us to wait, or its budget of requests is spent.
    #[error("{message}")]
    UpstreamBusy { message: String, retry_after_secs: u64 },
    /// The policy refused the image.
    #[error("{0}")]
    Blocked(String),
    /// Storage or records failed; nothing was made visible. Retrying may work.
    #[error("{0}")]
    Unavailable(String),
    /// The storage is at its reserve of free space, or full: nothing more is taken until space is
    /// freed. Retrying soon will not work.
    #[error("{0}")]
    InsufficientStorage(String),
    /// The namespace's storage quota would be exceeded; nothing was stored.
    #[error("{0}")]
    OverQuota(String),
    /// No credentials, or credentials that do not hold: say who you are.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known, but not allowed to do this.
    #[error("{0}")]
    Denied(String),
    /// Too many failed logins for this name or from this client.
    #[error("too many failed logins; retry after {retry_after_secs} s")]
    LoginsLocked { retry_after_secs: u64 },
    /// A user, robot or grant that is not there.
    #[error("{0}")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    /// A request the caller must change: a bad name, role, glob or password.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An immutable tag (see `immutable.rs`) would move away from `digest`, or go.
    pub(crate) fn immutable(tag: &Tag, digest: &Digest) -> Error {
        Error::Denied(format!("tag {tag} is immutable here: it stays on {digest}"))
    }
}

impl From<blobs::Error> for Error {
    fn from(e: blobs::Error) -> Error {
        match e {
            blobs::Error::NotFound(d) => Error::BlobUnknown(d),
            blobs::Error::UploadNotFound(_) => Error::UploadUnknown,
            blobs::Error::Body(e) => Error::UploadInvalid(format!("request body ended early: {e}")),
            blobs::Error::Storage(msg) => Error::Unavailable(msg),
            blobs::Error::NoSpace(msg) => Error::InsufficientStorage(msg),
        }
    }
}

impl From<meta::Error> for Error {
    fn from(e: meta::Error) -> Error {
        match e {
            meta::Error::MissingReference(d) => Error::ManifestBlobUnknown(d),
            e @ meta::Error::SizeMismatch { .. } => Error::ManifestInvalid(e.to_string()),
            meta::Error::Exists(name) => Error::Exists(name),
            meta::Error::TagImmutable { tag, digest } => Error::immutable(&tag, &digest),
            e @ meta::Error::NoSpace(_) => Error::InsufficientStorage(e.to_string()),
            e @ (meta::Error::UploadExists(_) | meta::Error::Unavailable(_) | meta::Error::Corrupt(_) | meta::Error::Refused(_)) => {
                Error::Unavailable(e.to_string())
            }
        }
    }
}
