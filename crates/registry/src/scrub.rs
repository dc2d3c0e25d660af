//! The scrub: every stored blob read back from the disk and hashed, so that bytes which rotted,
//! were truncated or were overwritten are found before a client pulls them.
//!
//! A blob that does not hash to its digest is moved out of sight ([`blobs::BlobStore::quarantine`],
//! its bytes kept for the operator) and then marked damaged in the records ([`meta::Integrity`]),
//! after which it reads as absent in every repository: HEAD and GET answer 404 `BLOB_UNKNOWN`
//! instead of handing out bytes that fail the client's digest check, and a client pushing the
//! image again uploads it, which repairs it everywhere. A read that finds a linked blob's bytes
//! missing marks it the same way ([`Registry::note_missing`]), as does a manifest whose bytes no
//! longer hash to its digest.
//!
//! A pass walks the store in digest order, a page at a time, and saves where it is after each
//! page, so a restart resumes it; reads are paced to `bytes_per_sec` so a pass does not crowd out
//! the pulls it protects.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures::StreamExt;
use meta::ScrubProgress;
use oci::{Digest, DigestHasher};
use tokio::time::Instant;

use crate::{Registry, Result, now_ms};

/// Blobs checked between saves of the pass's progress.
const PAGE: usize = 64;

/// What a stretch of scrubbing found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scrubbed {
    pub blobs: u64,
    pub bytes: u64,
    /// Blobs found damaged and quarantined.
    pub damaged: Vec<Damage>,
    /// Blobs that could not be read (an I/O error): not judged, tried again next pass.
    pub unreadable: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub digest: Digest,
    pub reason: String,
    /// Where its bytes were moved.
    pub kept_at: String,
}

/// Counts since the start, for `/metrics`.
#[derive(Default)]
pub(crate) struct ScrubStats {
    pub blobs: AtomicU64,
    pub bytes: AtomicU64,
    pub damaged: AtomicU64,
    pub unreadable: AtomicU64,
    pub passes: AtomicU64,
}

/// Keeps reads at or under a rate: sleeps once the bytes read are ahead of it.
struct Pace {
    bytes_per_sec: u64,
    started: Instant,
    bytes: u64,
}

impl Pace {
    async fn account(&mut self, n: usize) {
        self.bytes += n as u64;
        if self.bytes_per_sec == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(ahead).await;
        }
    }
}

impl Registry {
    /// Runs the scrub pass under way to its end, or a new one, reading at most `bytes_per_sec`
    /// (0: as fast as the disk goes). Progress is saved as it goes: a pass dropped half way (a
    /// shutdown) is resumed by the next call.
    pub async fn scrub(&self, bytes_per_sec: u64) -> Result<Scrubbed> {
        let mut progress = match self.meta.scrub_progress().await? {
            Some(p) if p.after.is_some() => p,
            earlier => ScrubProgress {
                after: None,
                pass_started_ms: now_ms(),
                last_pass_ended_ms: earlier.and_then(|p| p.last_pass_ended_ms),
            },
        };
        let mut pace = Pace { bytes_per_sec, started: Instant::now(), bytes: 0 };
        let mut found = Scrubbed::default();
        loop {
            let page = self.blobs.list(progress.after.as_ref(), PAGE).await?;
            for stored in &page {
                self.scrub_blob(&stored.digest, &mut pace, &mut found).await?;
            }
            match page.last() {
                Some(last) if page.len() == PAGE => {
                    progress.after = Some(last.digest.clone());
                    self.meta.save_scrub_progress(&progress).await?;
                }
                _ => break,
            }
        }
        progress.after = None;
        progress.last_pass_ended_ms = Some(now_ms());
        self.meta.save_scrub_progress(&progress).await?;
        self.meta.forget_unused_damage().await?;
        self.scrub_stats.passes.fetch_add(1, Relaxed);
        Ok(found)
    }

    /// How long until the next pass is due, `interval` after the last one ended: none if a pass
    /// was cut short. A store that never had a pass counts as scrubbed now, so its first pass
    /// comes `interval` after the first start.
    pub async fn scrub_due_in(&self, interval: Duration) -> Result<Duration> {
        let now = now_ms();
        let progress = match self.meta.scrub_progress().await? {
            Some(p) => p,
            None => {
                let fresh = ScrubProgress { after: None, pass_started_ms: now, last_pass_ended_ms: Some(now) };
                self.meta.save_scrub_progress(&fresh).await?;
                fresh
            }
        };
        match (progress.after, progress.last_pass_ended_ms) {
            (None, Some(ended)) => {
                let due = ended.saturating_add(interval.as_millis().min(i64::MAX as u128) as i64);
                Ok(Duration::from_millis(due.saturating_sub(now).max(0) as u64))
            }
            _ => Ok(Duration::ZERO),
        }
    }

    async fn scrub_blob(&self, digest: &Digest, pace: &mut Pace, found: &mut Scrubbed) -> Result<()> {
        let stats = &self.scrub_stats;
        let mut stream = match self.blobs.read_stored(digest).await {
            Ok(s) => s,
            // Deleted since the listing.
            Err(blobs::Error::NotFound(_)) => return Ok(()),
            Err(e) => return self.unreadable(digest, &e, found),
        };
        let mut hasher = DigestHasher::new(digest.algorithm());
        let mut read = 0u64;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    hasher.update(&bytes);
                    read += bytes.len() as u64;
                    pace.account(bytes.len()).await;
                }
                Err(e) => return self.unreadable(digest, &e, found),
            }
        }
        found.blobs += 1;
        found.bytes += read;
        stats.blobs.fetch_add(1, Relaxed);
        stats.bytes.fetch_add(read, Relaxed);
        let actual = hasher.finish();
        if actual != *digest {
            let reason = format!("its {read} bytes hash to {actual}");
            if let Some(damage) = self.quarantine(digest, &reason).await? {
                found.damaged.push(damage);
            }
        }
        Ok(())
    }

    /// A blob the store could not read (an I/O error): not judged, tried again next pass.
    fn unreadable(&self, digest: &Digest, error: &dyn std::fmt::Display, found: &mut Scrubbed) -> Result<()> {
        tracing::warn!(%digest, %error, "scrub: could not read a blob; it is checked again next pass");
        found.unreadable += 1;
        self.scrub_stats.unreadable.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Moves `digest`'s bytes aside and marks it damaged; `None` if its bytes were gone already
    /// (deleted as garbage meanwhile, or moved by another find), or are being made referenced
    /// right now (held, in this process or another replica: perhaps good bytes pushed again; the
    /// next pass reads them again). Under the exclusive side of [`Registry::hold_bytes`] and a
    /// claim on the digest in the records, so a mount or a commit of the same digest lands wholly
    /// before (and its link is then taken away by the mark) or wholly after (and its good bytes
    /// and link repair it).
    pub(crate) async fn quarantine(&self, digest: &Digest, reason: &str) -> Result<Option<Damage>> {
        if self.config.read_only {
            tracing::error!(%digest, reason, "a stored blob is damaged: left in place (read-only); it is not served");
            return Ok(None);
        }
        let _exclusive = self.digest_guards.exclude(digest).await;
        let Some(claim) = self.meta.claim_digest(digest).await? else {
            tracing::warn!(%digest, reason, "a stored blob looks damaged but is being linked right now; it is read again next pass");
            return Ok(None);
        };
        let moved = self.blobs.quarantine(digest).await;
        let marked = match &moved {
            Ok(Some(_)) => Some(self.meta.mark_damaged(digest, reason, now_ms()).await),
            _ => None,
        };
        claim.release().await;
        let Some(kept_at) = moved? else {
            return Ok(None);
        };
        marked.transpose()?;
        self.scrub_stats.damaged.fetch_add(1, Relaxed);
        tracing::error!(%digest, reason, kept_at, "a stored blob is damaged: moved aside; it reads as absent until pushed again");
        Ok(Some(Damage { digest: digest.clone(), reason: reason.to_owned(), kept_at }))
    }

    /// A read found no bytes for a digest the records hold: marks it damaged, so it reads as
    /// absent (HEAD no longer says it is there) and a push repairs it.
    pub(crate) async fn note_missing(&self, digest: &Digest) {
        if self.config.read_only {
            tracing::error!(%digest, "a stored blob's bytes are missing (read-only: not marked)");
            return;
        }
        tracing::error!(%digest, "a stored blob's bytes are missing; it reads as absent until pushed again");
        match self.meta.mark_damaged(digest, "missing", now_ms()).await {
            Ok(true) => {
                self.scrub_stats.damaged.fetch_add(1, Relaxed);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(%digest, error = %e, "could not mark a missing blob damaged"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Time is paused: sleeps advance it exactly, so this shows the pacing, not the machine.
    #[tokio::test(start_paused = true)]
    async fn reads_are_held_to_the_rate() {
        let start = Instant::now();
        let mut pace = Pace { bytes_per_sec: 1 << 20, started: start, bytes: 0 };
        for _ in 0..8 {
            pace.account(1 << 19).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(4), "4 MiB at 1 MiB/s");
        let mut unpaced = Pace { bytes_per_sec: 0, started: Instant::now(), bytes: 0 };
        let at = Instant::now();
        unpaced.account(1 << 30).await;
        assert_eq!(at.elapsed(), Duration::ZERO);
    }
}
