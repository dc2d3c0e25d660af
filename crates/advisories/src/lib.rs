//! The advisory DB: imports OSV records (a directory, a file, or OSV's per-ecosystem zips), Alpine's
//! secdb and the Debian security tracker's DSA/DLA lists into one compact, versioned file; orders
//! versions per ecosystem; matches packages against the records; rates severity from CVSS.
//!
//! Pure: no network IO. Reading files happens only where a path is given (import, load, save).

mod db;
mod debian;
pub mod ecosystem;
mod matcher;
mod model;
mod osv;
mod secdb;
pub mod version;

pub use db::{Changes, Db, Error, ImportReport, Source, Status, FORMAT};
pub use matcher::{Hit, Vulnerability};
pub use model::{Advisory, Affected, Event, Range, Rating, Severity};
pub use osv::score_vector;
pub use version::Scheme;
