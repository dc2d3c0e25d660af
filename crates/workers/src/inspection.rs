//! The inspection worker: takes a queued image (enqueued with its manifest), reads its layers from
//! the blob store into the scanner on a blocking thread — a layer inspected before by the same
//! scanner and engines is applied from its record instead of being read — matches the inventory
//! against the advisory DB, stores the report, and attaches the SBOM (CycloneDX) and the report
//! to the image as OCI artifacts whose `subject` is the image, so the referrers API lists them.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use meta::{InspectionJob, Meta, StoredReport, Verdict};
use oci::{Digest, Manifest, Reference, RepoName};
use registry::Registry;

use crate::now_ms;
use registry::inspect::{self, Target};

/// Who pushed what the worker attaches, in the records.
pub const ATTACHED_BY: &str = "customs";

/// The annotation naming the advisory DB an attached report was matched against.
const DB_ANNOTATION: &str = "dev.customs.advisory-db";

/// The media types of what the worker attaches.
pub const SBOM_ARTIFACT: &str = "application/vnd.cyclonedx+json";
pub const REPORT_ARTIFACT: &str = "application/vnd.customs.report.v1+json";

#[derive(Clone, Debug)]
pub struct InspectionSettings {
    /// How long a taken job is ours before another worker may take it.
    pub lease: Duration,
    /// Attempts before a job is failed for good.
    pub max_attempts: u32,
    /// How often to look for work when there was none.
    pub poll: Duration,
    /// The advisory DB file, re-read when it changes; absent: packages only.
    pub advisory_db: PathBuf,
    pub limits: scanner::Limits,
    /// What identifies the engines (which ran, their rules): layer records are kept and found
    /// under it, with the scanner's version, the limits and external engines' signatures.
    pub engines: String,
    /// Stale verdicts judged again per page (one transaction each; a page is written while the
    /// next is judged). [`InspectionSettings::PAGE`] unless a test wants pages to break.
    pub page: usize,
}

impl InspectionSettings {
    pub const PAGE: usize = 500;
}

/// What one round of re-judging did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rejudged {
    /// Verdicts judged again by the policy.
    pub verdicts: usize,
    /// Of which changed (served or not, or other reasons).
    pub changed: usize,
    /// Time spent reading, re-matching and judging the pages of stale verdicts.
    pub judging: Duration,
    /// Of which reading the stored facts and matching them again.
    pub matching: Duration,
    /// Time spent storing reports and verdicts: a page is stored while the next is judged, so
    /// this overlaps `judging`.
    pub writing: Duration,
    /// Verdicts that stand unchanged on the new basis: the new DB changed nothing in their image's matches.
    pub carried: usize,
    /// Images none of whose packages the DB update touched ([`advisories::Db::changed_since`]):
    /// their matches stand without being matched again.
    pub untouched: usize,
}

/// What re-matching a stored report takes.
enum Scope {
    /// Matched against the DB `update` replaced, holding no package its changes touch: the
    /// matches stand without matching them again.
    Untouched,
    /// To be matched; the inventory when already parsed.
    Match(Option<inspect::StoredInventory>),
}

fn scope(facts: &meta::ReportFacts, update: Option<&Update>) -> Scope {
    let Some(update) = update.filter(|u| u.version == facts.db_version) else { return Scope::Match(None) };
    match inspect::StoredInventory::parse(&facts.facts) {
        Ok(i) if !inspect::touched(&i.packages, i.os.as_ref(), &update.changes) => Scope::Untouched,
        Ok(i) => Scope::Match(Some(i)),
        // Matching reports the error.
        Err(_) => Scope::Match(None),
    }
}

/// The report in hand while judging again, for every repository that holds its digest.
struct Current {
    digest: Digest,
    /// The whole report, once built.
    report: Option<Arc<serde_json::Value>>,
    /// Matched again with the same vulnerabilities: the report as restamped, to build the whole
    /// report from when a verdict must be judged anyway.
    restamped: Option<StoredReport>,
    unchanged: bool,
    /// Matched again with new vulnerabilities: the report to store.
    write: Option<(StoredReport, meta::ReportIndex)>,
    /// Untouched by the DB update, so not matched: the facts to match if a verdict must be
    /// judged anyway (its policy changed too).
    unmatched: Option<meta::ReportFacts>,
}

impl Current {
    /// The whole report, built from the restamped one if need be.
    fn whole(&mut self) -> Result<Arc<serde_json::Value>, String> {
        if self.report.is_none() {
            self.report = Some(Arc::new(self.restamped.as_ref().ok_or("no report in hand")?.to_json()?));
        }
        Ok(self.report.clone().expect("set above"))
    }
}

/// What a round of judging again carries from one page to the next.
struct Round<'a> {
    /// Against the current DB; remembers each package's answer for the round.
    matcher: Option<inspect::Matcher<'a>>,
    db_info: &'a str,
    update: Option<Update>,
    basis: &'a Arc<registry::Basis>,
    /// The digest in hand: verdicts come sorted by digest, and may span pages.
    current: Option<Current>,
    done: Rejudged,
}

/// A page of stale verdicts, matched and judged, to be written.
struct Page {
    stale: Vec<Verdict>,
    /// The verdicts judged again, each with the index in `stale` of the one it replaces.
    judged: Vec<(Verdict, usize)>,
    /// Reports matched again with new vulnerabilities.
    reports: HashMap<Digest, (StoredReport, meta::ReportIndex)>,
    /// Verdicts that stand on the new basis (indexes in `stale`).
    carried: Vec<usize>,
    /// Reports matched again with the same vulnerabilities: restamped with the DB.
    restamped: Vec<Digest>,
}

/// Judges images on tasks of their own, as many at once as there are cores (the policy's
/// evaluation is most of the work).
struct Judges {
    registry: Arc<Registry>,
    basis: Arc<registry::Basis>,
    at_once: Arc<tokio::sync::Semaphore>,
    now: i64,
}

impl Judges {
    fn new(registry: Arc<Registry>, basis: Arc<registry::Basis>) -> Judges {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Judges { registry, basis, at_once: Arc::new(tokio::sync::Semaphore::new(cores)), now: now_ms() }
    }

    /// Judges `old`'s image again on `report`.
    fn spawn(&self, old: &Verdict, report: Arc<serde_json::Value>) -> tokio::task::JoinHandle<Result<Verdict, String>> {
        let (registry, basis, at_once, now) = (self.registry.clone(), self.basis.clone(), self.at_once.clone(), self.now);
        let (repo, digest) = (old.repo.clone(), old.digest.clone());
        tokio::spawn(async move {
            let _turn = at_once.acquire().await.map_err(|e| e.to_string())?;
            registry.judge(&repo, &digest, &report, &basis, now).await.map_err(|e| e.to_string())
        })
    }
}

/// Stores a page: its new reports (each with the first verdict judged on it; none judged: it
/// stays stale and is matched again next round), verdicts, restamps, in one transaction.
/// Returns how many verdicts changed.
async fn write(registry: &Registry, mut page: Page, basis: &registry::Basis, db_info: &str) -> Result<usize, String> {
    let mut changed = 0;
    let mut reports = Vec::with_capacity(page.judged.len());
    for (verdict, at) in &page.judged {
        let old = &page.stale[*at];
        reports.push(page.reports.remove(&verdict.digest));
        if verdict.serves() != old.serves() || verdict.reasons != old.reasons {
            changed += 1;
            tracing::info!(repo = %verdict.repo, digest = %verdict.digest, allowed = verdict.allowed, reasons = ?verdict.reasons, "verdict changed");
        }
    }
    let writes: Vec<meta::VerdictWrite<'_>> =
        page.judged.iter().zip(&reports).map(|((verdict, _), report)| meta::VerdictWrite { report: report.as_ref().map(|(r, i)| (r, i)), verdict }).collect();
    let olds: Vec<&Verdict> = page.judged.iter().map(|(_, at)| &page.stale[*at]).collect();
    let carried: Vec<(&RepoName, &Digest)> = page.carried.iter().map(|at| (&page.stale[*at].repo, &page.stale[*at].digest)).collect();
    let restamped: Vec<&Digest> = page.restamped.iter().collect();
    let batch = meta::VerdictBatch {
        judged: &writes,
        carried: &carried,
        basis: &basis.fingerprint,
        restamped: &restamped,
        db_version: &basis.db_version,
        db: db_info,
        audit: &[],
    };
    registry.record_verdicts(batch, &olds).await.map_err(|e| e.to_string())?;
    Ok(changed)
}

struct LoadedDb {
    modified: Option<SystemTime>,
    db: Option<Arc<advisories::Db>>,
    /// The version of the DB `db` replaced, and what changed between the two (the old DB itself
    /// is not kept: a full DB is large).
    previous: Option<Update>,
}

/// Reports matched against `version` can skip matching the packages `changes` does not touch.
#[derive(Clone)]
struct Update {
    version: String,
    changes: Arc<advisories::Changes>,
}

pub struct InspectionWorker {
    registry: Arc<Registry>,
    meta: Meta,
    engines: scanner::Inspection,
    settings: InspectionSettings,
    db: Mutex<LoadedDb>,
    /// One re-judging at a time among this process's workers.
    rejudging: tokio::sync::Mutex<()>,
    /// The layer record key others were last pruned for.
    pruned_for: Mutex<String>,
}


/// A layer of the image being inspected: read from the store, or applied from its record.
enum Layer {
    Read(String, blobs::ByteStream),
    Recorded(scanner::LayerRecord),
}

/// A blob of the store as a blocking reader, for the scanner's thread.
struct BlobReader {
    rt: tokio::runtime::Handle,
    stream: blobs::ByteStream,
    buf: Bytes,
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(chunk) => self.buf = chunk?,
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        bytes::Buf::advance(&mut self.buf, n);
        Ok(n)
    }
}

impl InspectionWorker {
    pub fn new(registry: Arc<Registry>, meta: Meta, engines: scanner::Inspection, settings: InspectionSettings) -> InspectionWorker {
        InspectionWorker {
            registry,
            meta,
            engines,
            settings,
            db: Mutex::new(LoadedDb { modified: None, db: None, previous: None }),
            rejudging: tokio::sync::Mutex::new(()),
            pruned_for: Mutex::new(String::new()),
        }
    }

    /// Works until `stop` turns true, finishing the job in hand.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let worked = match self.run_once().await {
                Ok(worked) => worked,
                Err(e) => {
                    tracing::warn!(error = %e, "inspection queue unavailable");
                    false
                }
            };
            // Re-judging is done by one replica for all; jobs are claimed by every one.
            if !worked && self.meta.leads(meta::Task::Rejudging).await && let Err(e) = self.rejudge().await {
                tracing::warn!(error = %e, "re-judging stopped");
            }
            if !worked {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Takes and finishes one due job; `Ok(false)` when there was none.
    pub async fn run_once(&self) -> Result<bool, String> {
        let Some(job) = self.meta.claim_inspection(now_ms(), self.settings.lease.as_millis() as i64).await.map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let started = Instant::now();
        match self.inspect(&job).await {
            Ok(verdict) => {
                tracing::info!(repo = %job.repo, digest = %job.digest, millis = started.elapsed().as_millis() as u64, allowed = verdict.allowed, "inspected");
            }
            Err(e) => {
                tracing::warn!(repo = %job.repo, digest = %job.digest, attempts = job.attempts, error = %e, "inspection failed");
                self.tell_failure(&job, &e).await?;
            }
        }
        Ok(true)
    }

    /// Records that `job` failed, so that it is due again soon (or failed for good after its last
    /// attempt). What failed may be the records themselves (a database restarting, failing over):
    /// untold, the job would stay leased, and its image unjudged (held back by the pull gate),
    /// until the lease ran out (10 minutes by default). So the records are asked again, backing
    /// off, for up to half the lease.
    async fn tell_failure(&self, job: &InspectionJob, error: &str) -> Result<(), String> {
        let retry = (job.attempts < self.settings.max_attempts).then(|| now_ms() + 1000 * (1i64 << job.attempts.min(10)));
        let what = format!("the failed inspection of {}@{}", job.repo, job.digest);
        registry::until_recorded(&what, self.settings.lease / 2, || self.meta.fail_inspection(job.id, error, retry)).await.map_err(|e| e.to_string())
    }

    /// When what verdicts rest on changed (the advisory DB, a waiver; a signature arrived), judges
    /// the stored images again, no layer read: a report whose DB is outdated has its packages
    /// matched again (each distinct package once per round); when that changes its
    /// vulnerabilities, it is stored anew and its verdicts judged by the policy; when it does not,
    /// the report is only restamped with the DB, and verdicts that differ from the current basis
    /// in the DB alone stand as they are.
    ///
    /// The stale verdicts are taken a page at a time, each page after the last verdict of the one
    /// before; a page is written while the next is matched and judged.
    pub async fn rejudge(&self) -> Result<Rejudged, String> {
        let db = self.advisory_db();
        let db_version = db.as_ref().map(|d| d.version().to_owned()).unwrap_or_default();
        let basis = Arc::new(self.registry.basis(&db_version, now_ms()).await.map_err(|e| e.to_string())?);
        let _one = self.rejudging.lock().await;
        let update = db.as_ref().and_then(|db| self.update(db));
        let matcher = db.as_deref().map(inspect::Matcher::new);
        let db_info: Arc<str> = matcher.as_ref().map(|m| m.db_info()).unwrap_or_default().to_string().into();
        let mut round = Round {
            matcher,
            db_info: &db_info,
            update,
            basis: &basis,
            current: None,
            done: Rejudged::default(),
        };
        let mut after: Option<(Digest, RepoName)> = None;
        // The page being written, on a task of its own: it goes on while the next page is matched
        // and judged.
        let mut writing: Option<tokio::task::JoinHandle<Result<(usize, Duration), String>>> = None;
        let (mut changed, mut wrote) = (0, Duration::ZERO);
        loop {
            let next = match self.meta.stale_verdicts(&basis.fingerprint, after.as_ref().map(|(d, r)| (d, r)), self.settings.page.max(1)).await {
                Ok(stale) if stale.is_empty() => Ok(None),
                Ok(stale) => self.prepare(stale, &mut round).await.map(Some),
                Err(e) => Err(e.to_string()),
            };
            if let Some(task) = writing.take() {
                let (n, took) = task.await.map_err(|e| format!("writing stopped: {e}"))??;
                changed += n;
                wrote += took;
            }
            let Some(page) = next? else { break };
            after = page.stale.last().map(|v| (v.digest.clone(), v.repo.clone()));
            let (registry, basis, db_info) = (self.registry.clone(), basis.clone(), db_info.clone());
            writing = Some(tokio::spawn(async move {
                let started = Instant::now();
                let changed = write(&registry, page, &basis, &db_info).await?;
                Ok((changed, started.elapsed()))
            }));
        }
        let mut done = round.done;
        (done.changed, done.writing) = (changed, wrote);
        if done.verdicts + done.carried > 0 {
            tracing::info!(
                judged = done.verdicts,
                carried = done.carried,
                untouched = done.untouched,
                changed = done.changed,
                judging_ms = done.judging.as_millis() as u64,
                writing_ms = done.writing.as_millis() as u64,
                "judged again"
            );
        }
        Ok(done)
    }

    /// Matches and judges a page of stale verdicts (sorted by digest: the digest in hand may have
    /// verdicts on the page before). Each image is judged as soon as its report is ready, while
    /// the next is matched.
    async fn prepare(&self, stale: Vec<Verdict>, round: &mut Round<'_>) -> Result<Page, String> {
        let started = Instant::now();
        let mut wanted: Vec<Digest> = stale.iter().map(|v| v.digest.clone()).filter(|d| round.current.as_ref().is_none_or(|c| &c.digest != d)).collect();
        wanted.dedup();
        let mut facts: HashMap<Digest, meta::ReportFacts> = self.meta.report_facts(&wanted).await.map_err(|e| e.to_string())?.into_iter().map(|f| (f.digest.clone(), f)).collect();
        round.done.matching += started.elapsed();
        let mut page = Page { judged: Vec::new(), reports: HashMap::new(), carried: Vec::new(), restamped: Vec::new(), stale: Vec::new() };
        let judges = Judges::new(self.registry.clone(), round.basis.clone());
        let mut judging = Vec::new();
        for (at, old) in stale.iter().enumerate() {
            if round.current.as_ref().is_none_or(|c| c.digest != old.digest) {
                let matching = Instant::now();
                round.current = match facts.remove(&old.digest) {
                    // No report to judge on (it is being inspected): the job will judge it.
                    None => None,
                    Some(f) => match scope(&f, round.update.as_ref()) {
                        Scope::Untouched => {
                            round.done.untouched += 1;
                            let digest = f.digest.clone();
                            Some(Current { digest, report: None, restamped: None, unchanged: true, write: None, unmatched: Some(f) })
                        }
                        Scope::Match(inventory) => match self.matched(f, inventory, round.matcher.as_mut(), round.basis, round.db_info).await {
                            Ok(c) => Some(c),
                            Err(e) => {
                                // One bad record must not stop the others; it stays stale and is logged.
                                tracing::warn!(digest = %old.digest, error = %e, "cannot match again");
                                None
                            }
                        },
                    },
                };
                round.done.matching += matching.elapsed();
                // Matching is CPU work that never waits: let the runtime's other tasks (requests,
                // the page being written) in between images.
                tokio::task::yield_now().await;
                if let Some(c) = round.current.as_mut() {
                    if c.unchanged {
                        page.restamped.push(c.digest.clone());
                    } else if let Some(report) = c.write.take() {
                        page.reports.insert(c.digest.clone(), report);
                    }
                }
            }
            let Some(c) = round.current.as_mut() else { continue };
            if c.unchanged && round.basis.only_db_changed(&old.basis) {
                page.carried.push(at);
                continue;
            }
            if let Some(f) = c.unmatched.take() {
                // Judged anyway (more than the DB changed): matched after all, to build its report.
                let matching = Instant::now();
                match self.matched(f, None, round.matcher.as_mut(), round.basis, round.db_info).await {
                    Ok(mut fresh) => {
                        if let Some(report) = fresh.write.take() {
                            page.restamped.retain(|d| *d != fresh.digest);
                            page.reports.insert(fresh.digest.clone(), report);
                        }
                        *c = fresh;
                    }
                    Err(e) => tracing::warn!(digest = %old.digest, error = %e, "cannot match again"),
                }
                round.done.matching += matching.elapsed();
            }
            match c.whole() {
                Ok(report) => judging.push((at, judges.spawn(old, report))),
                Err(e) => tracing::warn!(digest = %old.digest, error = %e, "cannot build the report"),
            }
        }
        for (at, task) in judging {
            let old = &stale[at];
            match task.await.unwrap_or_else(|e| Err(format!("judging stopped: {e}"))) {
                Ok(verdict) => page.judged.push((verdict, at)),
                Err(e) => tracing::warn!(repo = %old.repo, digest = %old.digest, error = %e, "cannot judge again"),
            }
        }
        round.done.judging += started.elapsed();
        round.done.verdicts += page.judged.len();
        round.done.carried += page.carried.len();
        page.stale = stale;
        Ok(page)
    }

    /// The report of `facts` (`inventory`: their packages, when already parsed), matched again when its DB is not the basis's.
    async fn matched(&self, facts: meta::ReportFacts, inventory: Option<inspect::StoredInventory>, matcher: Option<&mut inspect::Matcher<'_>>, basis: &registry::Basis, db_info: &str) -> Result<Current, String> {
        if facts.db_version == basis.db_version {
            // Matched against this DB already (inspected since, or judged in another repository).
            let stored = self.meta.inspection_report(&facts.digest).await.map_err(|e| e.to_string())?.ok_or("the report is gone")?;
            return Ok(Current { digest: facts.digest, report: Some(Arc::new(stored.to_json()?)), restamped: None, unchanged: false, write: None, unmatched: None });
        }
        let inventory = match inventory {
            Some(i) => i,
            None => inspect::StoredInventory::parse(&facts.facts)?,
        };
        let vulnerabilities = matcher.map(|m| m.vulnerabilities(&inventory.packages, inventory.os.as_ref())).unwrap_or_default();
        let vulnerabilities = serde_json::to_string(&vulnerabilities).map_err(|e| e.to_string())?;
        let matches = meta::Matches::new(&basis.db_version, db_info.to_owned(), vulnerabilities);
        let unchanged = matches.digest == facts.matches_digest;
        let stored = StoredReport { digest: facts.digest.clone(), facts: facts.facts, matches, inspected_at_ms: facts.inspected_at_ms, millis: facts.millis };
        if unchanged {
            // Built into a report only if a verdict must be judged anyway.
            return Ok(Current { digest: facts.digest, report: None, restamped: Some(stored), unchanged, write: None, unmatched: None });
        }
        let report = stored.to_json()?;
        // The same packages, new vulnerability rows.
        let index = meta::ReportIndex { components: None, ..registry::report_index(&report) };
        Ok(Current { digest: facts.digest, report: Some(Arc::new(report)), restamped: None, unchanged, write: Some((stored, index)), unmatched: None })
    }

    /// The advisory DB, re-read when its file changed.
    fn advisory_db(&self) -> Option<Arc<advisories::Db>> {
        let modified = std::fs::metadata(&self.settings.advisory_db).and_then(|m| m.modified()).ok();
        let mut loaded = self.db.lock().unwrap();
        if loaded.modified != modified || (loaded.db.is_none() && modified.is_some()) {
            let replaced = loaded.db.take();
            loaded.db = match advisories::Db::load(&self.settings.advisory_db) {
                Ok(db) => Some(Arc::new(db)),
                Err(advisories::Error::Missing(_)) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "advisory DB unreadable; inspecting packages only");
                    None
                }
            };
            loaded.modified = modified;
            match (replaced, &loaded.db) {
                (Some(old), Some(new)) if old.version() != new.version() => {
                    loaded.previous = Some(Update { version: old.version().to_owned(), changes: Arc::new(new.changed_since(&old)) });
                }
                // The same records again: what changed before still holds.
                (Some(_), Some(_)) => {}
                _ => loaded.previous = None,
            }
        }
        loaded.db.clone()
    }

    /// What changed since the DB the current one replaced in this process (`None` after a
    /// restart, or before any update: every report is then matched whole).
    fn update(&self, db: &Arc<advisories::Db>) -> Option<Update> {
        let loaded = self.db.lock().unwrap();
        loaded.previous.clone().filter(|_| loaded.db.as_ref().is_some_and(|d| Arc::ptr_eq(d, db)))
    }

    async fn blob_stream(&self, repo: &RepoName, digest: &Digest) -> Result<blobs::ByteStream, String> {
        let read = self.registry.get_blob(repo, digest, None).await.map_err(|e| format!("blob {digest}: {e}"))?;
        match read.body {
            blobs::BlobBody::Stream { stream, .. } => Ok(stream),
            blobs::BlobBody::Redirect(_) => Err(format!("blob {digest} is only reachable by redirect")),
        }
    }

    /// Inspects (or reuses the report of the same bytes under the same DB), judges and records.
    async fn inspect(&self, job: &InspectionJob) -> Result<Verdict, String> {
        let db = self.advisory_db();
        let db_version = db.as_ref().map(|d| d.version().to_owned()).unwrap_or_default();
        let basis = self.registry.basis(&db_version, now_ms()).await.map_err(|e| e.to_string())?;
        let content = self.registry.get_manifest(&job.repo, &Reference::Digest(job.digest.clone())).await.map_err(|e| format!("manifest: {e}"))?;
        let subject = (content.media_type.as_str(), &job.digest, content.bytes.len());
        // The same bytes were inspected (in another repository, or before a restart) against this
        // DB: judge that report for this repository, and attach it here too.
        if let Some(existing) = self.meta.inspection_report(&job.digest).await.map_err(|e| e.to_string())?
            && existing.matches.db_version == db_version
        {
            let mut json = existing.to_json()?;
            json["target"]["name"] = serde_json::json!(format!("{}@{}", job.repo, job.digest));
            let report: inspect::Report = serde_json::from_value(json.clone()).map_err(|e| format!("stored report: {e}"))?;
            let verdict = self.registry.judge(&job.repo, &job.digest, &json, &basis, now_ms()).await.map_err(|e| e.to_string())?;
            self.attach_report(&job.repo, subject, &report, &json, &db_version).await?;
            self.registry.record_verdict(None, &verdict).await.map_err(|e| e.to_string())?;
            return Ok(verdict);
        }
        let manifest = Manifest::parse(Some(&content.media_type), &content.bytes).map_err(|e| format!("manifest: {e}"))?;
        let mut config = Vec::new();
        if let Some(c) = &manifest.config {
            let mut stream = self.blob_stream(&job.repo, &c.digest).await?;
            while let Some(chunk) = stream.next().await {
                config.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
                if config.len() > 8 << 20 {
                    return Err("image config larger than 8 MiB".into());
                }
            }
        }
        let records_key = self.records_key().await;
        if let Some(key) = &records_key {
            self.prune_layer_records(key).await;
        }
        let mut recorded = self.layer_records(records_key.as_deref(), &manifest.layers).await;
        let mut layers = Vec::new();
        let (mut read, mut reused) = (0, 0);
        for l in &manifest.layers {
            match recorded.remove(&l.digest) {
                Some(record) => {
                    reused += 1;
                    layers.push(Layer::Recorded(record));
                }
                None => {
                    read += 1;
                    layers.push(Layer::Read(l.digest.to_string(), self.blob_stream(&job.repo, &l.digest).await?));
                }
            }
        }
        let engines = self.engines.clone();
        let limits = self.settings.limits.clone();
        let rt = tokio::runtime::Handle::current();
        let started = Instant::now();
        let recording = records_key.is_some();
        let (inventory, records) = tokio::task::spawn_blocking(move || {
            let mut s = scanner::Scanner::new(limits).with_inspection(engines);
            if recording {
                s = s.recording();
            }
            for layer in layers {
                match layer {
                    Layer::Read(digest, stream) => s.add_layer(&digest, BlobReader { rt: rt.clone(), stream, buf: Bytes::new() }),
                    Layer::Recorded(record) => s.add_recorded_layer(record),
                }
            }
            if !config.is_empty() {
                s.add_config(&config);
            }
            let (inventory, records) = s.finish_recorded();
            let records: Vec<(String, Vec<u8>)> = records.iter().map(|r| (r.digest.clone(), r.to_bytes())).collect();
            (inventory, records)
        })
        .await
        .map_err(|e| format!("scan: {e}"))?;
        let millis = started.elapsed().as_millis() as i64;
        tracing::debug!(repo = %job.repo, digest = %job.digest, layers_read = read, layers_reused = reused, millis, "scanned");
        if let Some(key) = &records_key {
            let records: Vec<(Digest, Vec<u8>)> = records.into_iter().filter_map(|(d, r)| Some((d.parse().ok()?, r))).collect();
            // Losing them costs a read next time, nothing else.
            if let Err(e) = self.meta.save_layer_records(key, &records).await {
                tracing::warn!(error = %e, "cannot keep layer records");
            }
        }
        let now = now_ms();
        let target = Target { kind: "registry".into(), name: format!("{}@{}", job.repo, job.digest), digest: Some(job.digest.to_string()) };
        let report = inspect::report(inventory, db.as_deref(), target, (now / 1000) as u64);
        let json = report.to_json();
        let verdict = self.registry.judge(&job.repo, &job.digest, &json, &basis, now).await.map_err(|e| e.to_string())?;
        self.attach_report(&job.repo, subject, &report, &json, &db_version).await?;
        let stored = StoredReport::from_report(&job.digest, &json, &db_version, now, millis);
        self.registry.record_verdict(Some((&stored, &registry::report_index(&json))), &verdict).await.map_err(|e| e.to_string())?;
        Ok(verdict)
    }

    /// What layer records are kept and found under now: the scanner's version, its limits, the
    /// engines and their rules, and each external engine's current signatures. `None` when an
    /// external engine cannot say which it has: then every layer is read, and none recorded.
    async fn records_key(&self) -> Option<String> {
        let mut key = format!("{}\n{:?}\n{}", scanner::LayerRecord::VERSION, self.settings.limits, self.settings.engines);
        if !self.engines.external.is_empty() {
            // The engines answer over sockets: asked off the async threads.
            let external = self.engines.external.clone();
            let versions = tokio::task::spawn_blocking(move || external.iter().map(|e| (e.engine(), e.version())).collect::<Vec<_>>()).await.ok()?;
            for (engine, version) in versions {
                match version {
                    Ok(v) => key.push_str(&format!("\n{engine}={v}")),
                    Err(e) => {
                        tracing::warn!(engine, error = %e, "cannot tell the engine's signatures; layers are read again");
                        return None;
                    }
                }
            }
        }
        Some(Digest::sha256_of(key.as_bytes()).hex().to_owned())
    }

    /// Once per new key: forgets records kept under other keys, made over an hour ago (replicas
    /// of another version, during a rolling upgrade, keep theirs a while).
    async fn prune_layer_records(&self, key: &str) {
        if *self.pruned_for.lock().unwrap() == key {
            return;
        }
        *self.pruned_for.lock().unwrap() = key.to_owned();
        match self.meta.prune_layer_records(key, now_ms() - 3_600_000).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "forgot layer records of another scanner, rules or signatures"),
            Err(e) => tracing::warn!(error = %e, "cannot prune layer records"),
        }
    }

    /// The records of `layers` kept under `key`; a damaged one is left out (its layer is read).
    async fn layer_records(&self, key: Option<&str>, layers: &[oci::Descriptor]) -> std::collections::HashMap<Digest, scanner::LayerRecord> {
        let Some(key) = key else { return Default::default() };
        let digests: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
        let stored = match self.meta.layer_records(key, &digests).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up layer records; reading every layer");
                return Default::default();
            }
        };
        let mut out = std::collections::HashMap::new();
        for (digest, bytes) in stored {
            match scanner::LayerRecord::from_bytes(&bytes) {
                Ok(record) if record.digest == digest.to_string() => {
                    out.insert(digest, record);
                }
                Ok(_) => tracing::warn!(layer = %digest, "a layer record of another layer; reading the layer"),
                Err(e) => tracing::warn!(layer = %digest, error = %e, "damaged layer record; reading the layer"),
            }
        }
        out
    }

    /// Attaches the SBOM and the report (`json`) to the image in `repo`.
    async fn attach_report(&self, repo: &RepoName, subject: (&str, &Digest, usize), report: &inspect::Report, json: &serde_json::Value, db_version: &str) -> Result<(), String> {
        let sbom = serde_json::to_vec(&report.to_cyclonedx(&uuid::Uuid::new_v4().to_string())).map_err(|e| e.to_string())?;
        self.attach(repo, subject, SBOM_ARTIFACT, Bytes::from(sbom), db_version).await?;
        self.attach(repo, subject, REPORT_ARTIFACT, Bytes::from(json.to_string()), db_version).await
    }

    /// Pushes `bytes` as an artifact referring to the image, unless this worker attached one of
    /// the type, for the same advisory DB, already (a job taken again after a failure).
    async fn attach(&self, repo: &RepoName, subject: (&str, &Digest, usize), artifact_type: &str, bytes: Bytes, db_version: &str) -> Result<(), String> {
        let attached = self.meta.referrers(repo, subject.1, Some(artifact_type)).await.map_err(|e| e.to_string())?;
        let ours = |annotations: &Option<String>| {
            let a: serde_json::Value = annotations.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default();
            a[DB_ANNOTATION] == db_version
        };
        if attached.iter().any(|m| ours(&m.annotations)) {
            return Ok(());
        }
        let push = |data: Bytes| async move {
            self.registry.put_own_blob(repo, data).await.map_err(|e| format!("attaching {artifact_type}: {e}"))
        };
        let (config, config_len) = push(Bytes::from_static(b"{}")).await?;
        let (layer, layer_len) = push(bytes).await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::media_type::OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": { "mediaType": oci::media_type::OCI_EMPTY, "digest": config.to_string(), "size": config_len },
            "layers": [{ "mediaType": artifact_type, "digest": layer.to_string(), "size": layer_len }],
            "subject": { "mediaType": subject.0, "digest": subject.1.to_string(), "size": subject.2 },
            "annotations": {
                "org.opencontainers.image.created": oci::rfc3339((now_ms() / 1000) as u64),
                DB_ANNOTATION: db_version,
            },
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).map_err(|e| e.to_string())?);
        self.registry.put_own_manifest(repo, bytes, ATTACHED_BY).await.map_err(|e| format!("attaching {artifact_type}: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(bytes: Bytes) -> blobs::ByteStream {
        futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) }).boxed()
    }

    /// The records go away while a job is taken (PostgreSQL crashes, for longer than a connection
    /// is waited for) and its inspection fails: the failure is recorded once they are back, so
    /// the job is due again after its back-off, not at the end of its 10-minute lease (until
    /// which the pull gate would hold the image back).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_is_recorded_once_the_records_are_back() {
        let pg = test_support::Postgres::start();
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta(Arc::new(meta::SqlMeta::connect(&pg.durable_database()).await.unwrap()));
        let blobs = blobs::Blobs(Arc::new(blobs::FsBlobStore::open(dir.path()).unwrap()));
        let registry = Arc::new(Registry::new(blobs, meta.clone(), registry::RegistryConfig::default()));
        let repo: RepoName = "team/app".parse().unwrap();
        let layer = Bytes::from(test_support::layer_tar_gz(&[("etc/app", b"an app", 0o644)]));
        let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
        for blob in [&layer, &config] {
            registry.upload_whole(&repo, &Digest::sha256_of(blob), None, stream(blob.clone())).await.unwrap();
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": oci::media_type::OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256_of(&config).to_string(), "size": config.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": Digest::sha256_of(&layer).to_string(), "size": layer.len() }],
        });
        let manifest = Bytes::from(serde_json::to_vec(&manifest).unwrap());
        registry.put_manifest(&repo, &Reference::Tag("v1".parse().unwrap()), Some(oci::media_type::OCI_MANIFEST), manifest, None).await.unwrap();
        let settings = InspectionSettings {
            lease: Duration::from_secs(600),
            max_attempts: 5,
            poll: Duration::from_secs(1),
            advisory_db: dir.path().join("no-advisories.db"),
            limits: scanner::Limits::default(),
            engines: String::new(),
            page: InspectionSettings::PAGE,
        };
        let worker = InspectionWorker::new(registry, meta.clone(), scanner::Inspection::default(), settings);
        let job = meta.claim_inspection(now_ms(), 600_000).await.unwrap().expect("the push queued its inspection");
        let id = job.id;

        pg.crash();
        let telling = tokio::spawn(async move { worker.tell_failure(&job, "the records went away").await });
        tokio::time::sleep(Duration::from_secs(12)).await;
        pg.start_again();
        let told = tokio::time::timeout(Duration::from_secs(30), telling).await.expect("told within 30 s of the records' return");
        told.unwrap().expect("the failure is recorded");
        // Due again after the first attempt's back-off (2 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(again) = meta.claim_inspection(now_ms(), 600_000).await.unwrap() {
                assert_eq!((again.id, again.attempts), (id, 2), "the same job, a second time");
                break;
            }
            assert!(Instant::now() < deadline, "the job is due again within seconds");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
