//! The pages, each a function from what the registry answered to HTML. Nothing here reads the
//! registry or the request: `ui/mod.rs` does, and hands over the data and the [`Viewer`].

use blobs::human_size;
use http::StatusCode;
use meta::{Component, GateState, ImageMatch, ImageVulnerability, Listing};
use oci::{Descriptor, Digest, ManifestKind, RepoName};
use registry::{ManifestView, TagRow};
use serde_json::Value;

use super::html::Html;
use crate::v2::encode_query_value;

/// The most rows of one kind of finding a manifest page lists; the API has them all.
const MAX_ROWS: usize = 500;
/// The most packages it lists (folded away until asked for).
const MAX_PACKAGES: usize = 2000;

/// Who is looking, and where the registry is as they reach it.
pub(crate) struct Viewer {
    /// `None`: anonymous (or authentication is off).
    pub(crate) name: Option<String>,
    /// Authentication is on and the viewer has not logged in: offer the login.
    pub(crate) may_log_in: bool,
    /// The `Host` the browser used, for the pull commands shown.
    pub(crate) host: String,
}

/// The search the viewer asked for (`/ui/search`).
#[derive(Default)]
pub(crate) struct SearchForm {
    pub(crate) package: String,
    pub(crate) version: String,
    pub(crate) vulnerability: String,
}

pub(crate) enum Found {
    Nothing,
    Packages(Vec<ImageMatch<Component>>),
    Vulnerabilities(Vec<ImageMatch<ImageVulnerability>>),
}

/// `/ui/`: the repositories the viewer may pull, a page at a time.
pub(crate) fn home(viewer: &Viewer, repos: &Listing<RepoName>) -> String {
    let mut h = Html::new();
    open(&mut h, viewer, "Repositories");
    h.tag("<h1>Repositories</h1>");
    search_form(&mut h, &SearchForm::default());
    if repos.entries.is_empty() {
        h.tag("<p class=\"empty\">");
        if viewer.may_log_in {
            h.tag("No repositories are open to anonymous users. ").link("/ui/login", "Log in").tag(" to see yours.");
        } else {
            h.tag("No repositories yet: push an image to create one.");
        }
        h.tag("</p>");
    } else {
        h.tag("<ul class=\"repositories\">");
        for repo in &repos.entries {
            h.tag("<li>").link(&repo_href(repo), repo.as_str()).tag("</li>");
        }
        h.tag("</ul>");
    }
    if let (true, Some(last)) = (repos.more, repos.entries.last()) {
        next_link(&mut h, &format!("/ui/?last={}", encode_query_value(last.as_str())));
    }
    close(h)
}

/// `/ui/r/<name>`: a page of a repository's tags with what each points at.
pub(crate) fn repository(viewer: &Viewer, repo: &RepoName, rows: &Listing<TagRow>) -> String {
    let mut h = Html::new();
    open(&mut h, viewer, repo.as_str());
    h.tag("<h1>").text(repo.as_str()).tag("</h1>");
    h.tag("<p>Pull: <code class=\"pull\">").text(&format!("{}/{}:<tag>", viewer.host, repo)).tag("</code></p>");
    if rows.entries.is_empty() {
        h.tag("<p class=\"empty\">No tags.</p>");
    } else {
        h.tag("<table class=\"tags\"><thead><tr><th>Tag</th><th>Digest</th><th>Kind</th><th>Size</th><th>Gate</th></tr></thead><tbody>");
        for row in &rows.entries {
            h.tag("<tr><td class=\"tag\">").text(row.tag.as_str()).tag("</td><td>");
            digest_link(&mut h, repo, &row.digest);
            h.tag("</td><td>").text(kind(row.kind, &row.media_type)).tag("</td><td>").text(&human_size(row.size)).tag("</td><td>");
            gate_badge(&mut h, &row.gate);
            h.tag("</td></tr>");
        }
        h.tag("</tbody></table>");
    }
    if let (true, Some(last)) = (rows.more, rows.entries.last()) {
        next_link(&mut h, &format!("{}?last={}", repo_href(repo), encode_query_value(last.tag.as_str())));
    }
    close(h)
}

/// `/ui/r/<name>/manifests/<digest>`: one manifest, what it holds, and what inspection found.
pub(crate) fn manifest(viewer: &Viewer, repo: &RepoName, view: &ManifestView) -> String {
    let digest = &view.content.digest;
    let m = &view.manifest;
    let mut h = Html::new();
    open(&mut h, viewer, &format!("{repo}@{}", short(digest)));
    h.tag("<p class=\"crumbs\">").link(&repo_href(repo), repo.as_str()).tag("</p>");
    h.tag("<h1 class=\"digest\">").text(&digest.to_string()).tag("</h1>");
    h.tag("<dl class=\"facts\">");
    fact(&mut h, "Pull", |h| {
        h.tag("<code class=\"pull\">").text(&format!("{}/{repo}@{digest}", viewer.host)).tag("</code>");
    });
    fact(&mut h, "Tags", |h| {
        if view.tags.is_empty() {
            h.tag("<span class=\"none\">untagged</span>");
        }
        for tag in &view.tags {
            h.tag("<span class=\"tag\">").text(tag).tag("</span> ");
        }
    });
    fact(&mut h, "Media type", |h| {
        h.text(&view.content.media_type);
    });
    if let Some(artifact_type) = m.effective_artifact_type().filter(|_| m.kind == ManifestKind::Image && !view.is_image) {
        fact(&mut h, "Artifact type", |h| {
            h.text(artifact_type);
        });
    }
    let blobs: u64 = m.blobs().map(|d| d.size).sum();
    fact(&mut h, "Size", |h| {
        h.text(&human_size(view.content.bytes.len() as u64 + blobs));
    });
    if let Some(by) = &view.pushed_by {
        fact(&mut h, "Pushed by", |h| {
            h.text(by);
        });
    }
    if let Some(subject) = &m.subject {
        fact(&mut h, "Subject", |h| {
            digest_link(h, repo, &subject.digest);
        });
    }
    fact(&mut h, "Gate", |h| {
        gate_badge(h, &view.gate);
    });
    h.tag("</dl>");
    gate_detail(&mut h, &view.gate);

    match m.kind {
        ManifestKind::Index => {
            h.tag("<h2>Platforms</h2><table class=\"children\"><thead><tr><th>Platform</th><th>Manifest</th><th>Media type</th><th>Size</th></tr></thead><tbody>");
            for (i, child) in m.manifests.iter().enumerate() {
                let platform = view.platforms.get(i).cloned().flatten();
                h.tag("<tr><td>").text(platform.as_deref().unwrap_or("—")).tag("</td><td>");
                digest_link(&mut h, repo, &child.digest);
                h.tag("</td><td>").text(&child.media_type).tag("</td><td>").text(&human_size(child.size)).tag("</td></tr>");
            }
            h.tag("</tbody></table>");
        }
        ManifestKind::Image => {
            h.tag("<h2>Layers</h2><table class=\"layers\"><thead><tr><th>#</th><th>Digest</th><th>Media type</th><th>Size</th></tr></thead><tbody>");
            if let Some(config) = &m.config {
                descriptor_row(&mut h, "config", config);
            }
            for (i, layer) in m.layers.iter().enumerate() {
                descriptor_row(&mut h, &(i + 1).to_string(), layer);
            }
            h.tag("</tbody></table>");
        }
    }

    if !view.referrers.is_empty() {
        h.tag("<h2>Referrers</h2><table class=\"referrers\"><thead><tr><th>Artifact type</th><th>Manifest</th><th>Size</th></tr></thead><tbody>");
        for r in &view.referrers {
            h.tag("<tr><td>").text(r.artifact_type.as_deref().unwrap_or(&r.media_type)).tag("</td><td>");
            digest_link(&mut h, repo, &r.digest);
            h.tag("</td><td>").text(&human_size(r.size)).tag("</td></tr>");
        }
        h.tag("</tbody></table>");
    }

    match &view.report {
        Some(report) => inspection(&mut h, report),
        None if view.is_image => {
            h.tag("<h2>Inspection</h2><p class=\"empty\">Not inspected yet.</p>");
        }
        None => {}
    }
    close(h)
}

/// `/ui/search`: the images holding a package (`?package=&version=`) or a vulnerability.
pub(crate) fn search(viewer: &Viewer, form: &SearchForm, found: &Found) -> String {
    let mut h = Html::new();
    open(&mut h, viewer, "Search");
    h.tag("<h1>Search</h1>");
    search_form(&mut h, form);
    let matches_table = |h: &mut Html, head: &'static str| {
        h.tag("<table class=\"matches\"><thead><tr><th>Repository</th><th>Manifest</th><th>Tags</th>").tag(head).tag("</tr></thead><tbody>");
    };
    let image_cells = |h: &mut Html, repo: &RepoName, digest: &Digest, tags: &[String]| {
        h.tag("<tr><td>").link(&repo_href(repo), repo.as_str()).tag("</td><td>");
        digest_link(h, repo, digest);
        h.tag("</td><td>").text(&tags.join(", ")).tag("</td>");
    };
    match found {
        Found::Nothing => {}
        Found::Packages(images) => {
            h.tag("<p class=\"count\">").show(images.len()).tag(" images hold ").text(&form.package);
            if !form.version.is_empty() {
                h.tag(" ").text(&form.version);
            }
            h.tag(".</p>");
            if !images.is_empty() {
                matches_table(&mut h, "<th>Package</th><th>Version</th><th>Ecosystem</th>");
                for m in images {
                    image_cells(&mut h, &m.repo, &m.digest, &m.tags);
                    let c = &m.found;
                    h.tag("<td>").text(&c.name).tag("</td><td>").text(&c.version).tag("</td><td>").text(&c.ecosystem).tag("</td></tr>");
                }
                h.tag("</tbody></table>");
            }
        }
        Found::Vulnerabilities(images) => {
            h.tag("<p class=\"count\">").show(images.len()).tag(" images are affected by ").text(&form.vulnerability).tag(".</p>");
            if !images.is_empty() {
                matches_table(&mut h, "<th>Severity</th><th>Package</th><th>Installed</th><th>Fixed in</th>");
                for m in images {
                    image_cells(&mut h, &m.repo, &m.digest, &m.tags);
                    let v = &m.found;
                    h.tag("<td>");
                    severity(&mut h, &v.severity);
                    h.tag("</td><td>").text(&v.package).tag("</td><td>").text(&v.version).tag("</td><td>");
                    h.text(v.fixed.as_deref().unwrap_or("no fix yet")).tag("</td></tr>");
                }
                h.tag("</tbody></table>");
            }
        }
    }
    close(h)
}

/// Any error, for a person.
pub(crate) fn error(status: StatusCode, message: &str) -> String {
    let mut h = Html::new();
    let title = status.canonical_reason().unwrap_or("Error");
    let viewer = Viewer { name: None, may_log_in: false, host: String::new() };
    open(&mut h, &viewer, title);
    h.tag("<h1>").show(status.as_u16()).tag(" ").text(title).tag("</h1><p class=\"error\">").text(message).tag("</p>");
    h.tag("<p>").link("/ui/", "All repositories").tag("</p>");
    close(h)
}

pub(crate) fn repo_href(repo: &RepoName) -> String {
    format!("/ui/r/{repo}")
}

fn manifest_href(repo: &RepoName, digest: &Digest) -> String {
    format!("/ui/r/{repo}/manifests/{digest}")
}

fn open(h: &mut Html, viewer: &Viewer, title: &str) {
    h.tag("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.tag("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>").text(title);
    h.tag(" · customs</title><link rel=\"stylesheet\" href=\"/ui/style.css\"></head><body><header><a class=\"brand\" href=\"/ui/\">customs</a>");
    h.tag("<nav>").link("/ui/", "Repositories").tag(" ").link("/ui/search", "Search").tag("</nav><span class=\"viewer\">");
    match (&viewer.name, viewer.may_log_in) {
        (Some(name), _) => {
            h.tag("Logged in as <b>").text(name).tag("</b>");
        }
        (None, true) => {
            h.link("/ui/login", "Log in");
        }
        (None, false) => {}
    }
    h.tag("</span></header><main>");
}

fn close(mut h: Html) -> String {
    h.tag("</main></body></html>");
    h.into_string()
}

fn search_form(h: &mut Html, form: &SearchForm) {
    h.tag("<form class=\"search\" method=\"get\" action=\"/ui/search\"><label>Package <input name=\"package\"");
    h.attr("value", &form.package).tag(" placeholder=\"log4j-core\"></label> <label>Version <input name=\"version\"");
    h.attr("value", &form.version).tag(" placeholder=\"2.14\"></label> <button type=\"submit\">Find images</button></form>");
    h.tag("<form class=\"search\" method=\"get\" action=\"/ui/search\"><label>Vulnerability <input name=\"vulnerability\"");
    h.attr("value", &form.vulnerability).tag(" placeholder=\"CVE-2021-44228\"></label> <button type=\"submit\">Find images</button></form>");
}

fn next_link(h: &mut Html, href: &str) {
    h.tag("<p class=\"next\">").link(href, "Next page").tag("</p>");
}

fn fact(h: &mut Html, name: &'static str, value: impl FnOnce(&mut Html)) {
    h.tag("<dt>").tag(name).tag("</dt><dd>");
    value(h);
    h.tag("</dd>");
}

fn short(digest: &Digest) -> String {
    let s = digest.to_string();
    match s.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => s,
    }
}

fn digest_link(h: &mut Html, repo: &RepoName, digest: &Digest) {
    h.tag("<a class=\"digest\"").attr("href", &manifest_href(repo, digest)).attr("title", &digest.to_string()).tag(">");
    h.text(&short(digest)).tag("</a>");
}

fn descriptor_row(h: &mut Html, position: &str, d: &Descriptor) {
    h.tag("<tr><td>").text(position).tag("</td><td><code").attr("title", &d.digest.to_string()).tag(">").text(&short(&d.digest));
    h.tag("</code></td><td>").text(&d.media_type).tag("</td><td>").text(&human_size(d.size)).tag("</td></tr>");
}

fn kind(kind: ManifestKind, media_type: &str) -> &'static str {
    match kind {
        ManifestKind::Index => "index",
        ManifestKind::Image if media_type.contains("docker") => "image (Docker)",
        ManifestKind::Image => "image",
    }
}

fn gate_badge(h: &mut Html, gate: &GateState) {
    let (class, text): (&'static str, &'static str) = match gate {
        GateState::Unjudged => ("badge unjudged", "not inspected"),
        GateState::Pending => ("badge pending", "pending"),
        GateState::Allowed => ("badge allowed", "allowed"),
        GateState::Blocked { .. } => ("badge blocked", "blocked"),
        GateState::Failed(_) => ("badge failed", "inspection failed"),
    };
    h.tag("<span").attr("class", class).tag(">").tag(text).tag("</span>");
}

fn gate_detail(h: &mut Html, gate: &GateState) {
    match gate {
        GateState::Blocked { policy, reasons } => {
            h.tag("<div class=\"refusal\"><p>Pulls are refused by policy <b>").text(policy).tag("</b>:</p><ul>");
            for reason in reasons {
                h.tag("<li>").text(reason).tag("</li>");
            }
            h.tag("</ul></div>");
        }
        GateState::Failed(error) => {
            h.tag("<div class=\"refusal\"><p>Inspection failed: ").text(error).tag("</p></div>");
        }
        GateState::Unjudged | GateState::Pending | GateState::Allowed => {}
    }
}

fn severity(h: &mut Html, severity: &str) {
    let class = match severity {
        "CRITICAL" => "sev critical",
        "HIGH" => "sev high",
        "MEDIUM" => "sev medium",
        "LOW" => "sev low",
        _ => "sev other",
    };
    h.tag("<span").attr("class", class).tag(">").text(severity).tag("</span>");
}

/// The report's summary, the verdict, and a table per kind of finding.
fn inspection(h: &mut Html, image: &registry::ImageReport) {
    let report = &image.report;
    let list = |key: &str| report[key].as_array().map(Vec::as_slice).unwrap_or_default();
    let str_of = |v: &Value, key: &str| v[key].as_str().unwrap_or("").to_owned();
    let (packages, vulnerabilities, secrets, malware, misconfigurations) =
        (list("packages"), list("vulnerabilities"), list("secrets"), list("malware"), list("misconfigurations"));

    h.tag("<h2>Inspection</h2><dl class=\"facts\">");
    fact(h, "Inspected", |h| {
        h.text(&oci::rfc3339((image.inspected_at_ms / 1000).max(0) as u64)).tag(" in ").show(image.millis).tag(" ms");
    });
    if let Some(os) = report["os"]["pretty_name"].as_str().or(report["os"]["id"].as_str()) {
        fact(h, "Operating system", |h| {
            h.text(os);
        });
    }
    fact(h, "Findings", |h| {
        h.tag("<span class=\"summary\">").show(packages.len()).tag(" packages, ").show(vulnerabilities.len()).tag(" vulnerabilities");
        for level in ["CRITICAL", "HIGH", "MEDIUM", "LOW"] {
            let n = vulnerabilities.iter().filter(|v| v["severity"] == level).count();
            if n > 0 {
                h.tag(" (").show(n).tag(" ").text(&level.to_lowercase()).tag(")");
            }
        }
        h.tag(", ").show(secrets.len()).tag(" secrets, ").show(malware.len()).tag(" malware, ").show(misconfigurations.len());
        h.tag(" misconfigurations</span>");
    });
    if let Some(v) = &image.verdict {
        fact(h, "Verdict", |h| {
            let (class, text) = match (v.allowed, v.enforced) {
                (true, _) => ("badge allowed", "allowed"),
                (false, true) => ("badge blocked", "refused"),
                (false, false) => ("badge pending", "fails policy (audit only: served)"),
            };
            h.tag("<span").attr("class", class).tag(">").tag(text).tag("</span> by ").text(&v.policy);
            if !v.reasons.is_empty() || !v.warnings.is_empty() {
                h.tag("<ul class=\"reasons\">");
                for reason in &v.reasons {
                    h.tag("<li>").text(reason).tag("</li>");
                }
                for warning in &v.warnings {
                    h.tag("<li class=\"warning\">").text(warning).tag("</li>");
                }
                h.tag("</ul>");
            }
        });
    }
    h.tag("</dl>");

    findings_table(h, "<h3>Vulnerabilities</h3>", "<th>Id</th><th>Severity</th><th>Package</th><th>Installed</th><th>Fixed in</th><th>Title</th>", vulnerabilities, |h, v| {
        let id = str_of(v, "id");
        h.tag("<td>").link(&format!("/ui/search?vulnerability={}", encode_query_value(&id)), &id).tag("</td><td>");
        severity(h, &str_of(v, "severity"));
        h.tag("</td><td>").text(&str_of(v, "package")).tag("</td><td>").text(&str_of(v, "installed_version")).tag("</td><td>");
        h.text(v["fixed_version"].as_str().unwrap_or("no fix yet")).tag("</td><td>").text(&str_of(v, "title")).tag("</td>");
    });
    findings_table(h, "<h3>Secrets</h3>", "<th>Rule</th><th>Severity</th><th>Where</th><th>Redacted</th>", secrets, |h, s| {
        h.tag("<td>").text(&str_of(s, "title")).tag("</td><td>");
        severity(h, &str_of(s, "severity"));
        h.tag("</td><td>").text(&str_of(s, "path"));
        if let Some(line) = s["line"].as_u64() {
            h.tag(":").show(line);
        }
        h.tag("</td><td><code>").text(&str_of(s, "redacted")).tag("</code></td>");
    });
    findings_table(h, "<h3>Malware</h3>", "<th>Rule</th><th>Severity</th><th>Path</th><th>Engine</th>", malware, |h, m| {
        h.tag("<td>").text(&str_of(m, "rule")).tag("</td><td>");
        severity(h, &str_of(m, "severity"));
        h.tag("</td><td>").text(&str_of(m, "path")).tag("</td><td>").text(&str_of(m, "engine")).tag("</td>");
    });
    findings_table(h, "<h3>Misconfigurations</h3>", "<th>Check</th><th>Severity</th><th>Detail</th><th>Fix</th>", misconfigurations, |h, m| {
        h.tag("<td>").text(&str_of(m, "title")).tag("</td><td>");
        severity(h, &str_of(m, "severity"));
        h.tag("</td><td>").text(&str_of(m, "detail")).tag("</td><td>").text(&str_of(m, "fix")).tag("</td>");
    });
    if !packages.is_empty() {
        h.tag("<details><summary>").show(packages.len()).tag(" packages</summary><table class=\"packages\"><thead><tr><th>Name</th><th>Version</th><th>Ecosystem</th><th>Found in</th></tr></thead><tbody>");
        for p in packages.iter().take(MAX_PACKAGES) {
            let name = str_of(p, "name");
            let href = format!("/ui/search?package={}&version={}", encode_query_value(&name), encode_query_value(&str_of(p, "version")));
            h.tag("<tr><td>").link(&href, &name).tag("</td><td>").text(&str_of(p, "version")).tag("</td><td>").text(&str_of(p, "ecosystem"));
            h.tag("</td><td>").text(&str_of(p, "path")).tag("</td></tr>");
        }
        h.tag("</tbody></table></details>");
        more_rows(h, packages.len(), MAX_PACKAGES);
    }
}

/// `title` and a table of the first [`MAX_ROWS`] of `rows`, each row's cells written by `cells`;
/// nothing when there are none.
fn findings_table(h: &mut Html, title: &'static str, head: &'static str, rows: &[Value], cells: impl Fn(&mut Html, &Value)) {
    if rows.is_empty() {
        return;
    }
    h.tag(title).tag("<table><thead><tr>").tag(head).tag("</tr></thead><tbody>");
    for row in rows.iter().take(MAX_ROWS) {
        h.tag("<tr>");
        cells(h, row);
        h.tag("</tr>");
    }
    h.tag("</tbody></table>");
    more_rows(h, rows.len(), MAX_ROWS);
}

/// Says how many of `total` rows were left out after the first `shown`.
fn more_rows(h: &mut Html, total: usize, shown: usize) {
    if total > shown {
        h.tag("<p class=\"more\">").show(total - shown).tag(" more in the report (").tag("<code>/api/v1/images/…/report</code>").tag(").</p>");
    }
}
