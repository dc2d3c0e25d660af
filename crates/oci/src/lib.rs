//! The OCI vocabulary customs speaks, validated once at the edge.
//!
//! - [`RepoName`], [`Tag`], [`Digest`] and [`Reference`] are parsed from strings by the
//!   distribution spec's grammars; after parsing, code passes these types, never `&str`.
//! - [`Manifest::parse`] validates an image manifest, an image index, a Docker schema 2 manifest
//!   or manifest list, and finds everything it references, while the caller keeps the exact bytes.
//! - [`ErrorCode`] names the spec's error codes.
//!
//! Architecture Invariant: no IO here, and no HTTP types: this crate is data and rules.

mod digest;
mod error_code;
mod manifest;
pub mod media_type;
mod name;
mod time;

pub use digest::{Algorithm, Digest, DigestError, DigestHasher};
pub use error_code::ErrorCode;
pub use manifest::{Descriptor, Manifest, ManifestError, ManifestKind};
pub use name::{NameError, Reference, ReferenceError, RepoName, Tag, UploadId};
pub use time::{parse_rfc3339, rfc3339};
