//! The web UI through the router: what each page shows of stored images and their inspection,
//! that data is escaped and never markup, the access rules (lists filtered, pages refused with a
//! Basic challenge a browser can answer), paging, and errors as HTML pages.

use http::{Method, StatusCode};
use meta::{StoredReport, Verdict};
use oci::{Digest, RepoName};
use serde_json::json;
use test_support::{ImageBuilder, Index, TestRegistry, TestResponse, basic};

/// A package name and a reason no page may ever turn into markup.
const HOSTILE: &str = "<script>alert('x')</script>";

fn html(r: &TestResponse) -> &str {
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{:?}", r.headers);
    std::str::from_utf8(&r.body).expect("utf-8 page")
}

/// Stores a report of `digest` with a vulnerability, a secret, a misconfiguration and a hostile
/// package, and a verdict from a policy that refuses it.
async fn inspected(reg: &TestRegistry, repo: &str, digest: &Digest) {
    let report = json!({
        "schema": "customs.report/v1",
        "target": { "kind": "registry", "name": repo, "digest": digest.to_string() },
        "db": { "version": "sha256:db" },
        "os": { "id": "debian", "version": "12", "pretty_name": "Debian GNU/Linux 12 (bookworm)" },
        "layers": [],
        "packages": [
            { "name": "log4j-core", "version": "2.14.1", "ecosystem": "maven", "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1", "path": "app.jar" },
            { "name": HOSTILE, "version": "1.0", "ecosystem": "npm", "purl": "pkg:npm/x@1.0", "path": "node_modules/x/package.json" },
        ],
        "vulnerabilities": [{
            "id": "CVE-2021-44228", "aliases": ["GHSA-jfh8-c2jp-5v3q"], "package": "log4j-core", "ecosystem": "Maven",
            "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1", "installed_version": "2.14.1",
            "fixed_version": "2.15.0", "severity": "CRITICAL", "title": "Remote code injection in Log4j",
        }],
        "problems": [],
        "secrets": [{ "rule": "github-pat", "title": "GitHub personal access token", "severity": "HIGH", "path": "app/.env", "line": 3,
                      "redacted": "ghp_****", "fingerprint": "sha256:f" }],
        "malware": [],
        "misconfigurations": [{ "id": "root-user", "title": "Runs as root", "severity": "MEDIUM", "detail": "no USER", "fix": "add a USER" }],
    });
    let stored = StoredReport::from_report(digest, &report, "sha256:db", registry::now_ms(), 42);
    let verdict = Verdict {
        repo: repo.parse::<RepoName>().unwrap(),
        digest: digest.clone(),
        allowed: false,
        enforced: true,
        policy: "paved-road".into(),
        reasons: vec!["CVE-2021-44228 (CRITICAL) in log4j-core 2.14.1 is fixed in 2.15.0".into(), format!("a reason with {HOSTILE}")],
        warnings: vec![],
        basis: "basis".into(),
        judged_at_ms: registry::now_ms(),
    };
    reg.registry.record_verdict(Some((&stored, &registry::report_index(&report))), &verdict).await.expect("verdict");
}

#[tokio::test]
async fn pages_show_repositories_tags_manifests_and_what_inspection_found() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(1).layer(2, 300).layer(1, 100).build();
    assert_eq!(reg.push_image("team/app", &image, "v1").await.status, StatusCode::CREATED);
    assert_eq!(reg.push_image("team/app", &image, "stable").await.status, StatusCode::CREATED);
    let amd = ImageBuilder::new(2).layer(1, 50).arch("amd64").build();
    let arm = ImageBuilder::new(3).layer(1, 50).arch("arm64").build();
    let index = Index::new(vec![amd.clone(), arm.clone()]);
    for child in [&amd, &arm] {
        assert_eq!(reg.push_image("team/multi", child, &child.digest.to_string()).await.status, StatusCode::CREATED);
    }
    assert_eq!(reg.put_manifest("team/multi", "latest", &index.media_type, index.manifest.clone()).await.status, StatusCode::CREATED);
    // A referrer of the image: an SBOM-like artifact.
    let empty = reg.push_blob("team/app", b"{}").await;
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": "application/spdx+json",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2 },
        "layers": [{ "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2 }],
        "subject": { "mediaType": image.media_type, "digest": image.digest.to_string(), "size": image.manifest.len() },
    }))
    .unwrap();
    let artifact_digest = Digest::sha256_of(&artifact);
    let r = reg.put_manifest("team/app", &artifact_digest.to_string(), "application/vnd.oci.image.manifest.v1+json", artifact.into()).await;
    assert_eq!(r.status, StatusCode::CREATED);

    // Before inspection: pending.
    let page = reg.get("/ui/r/team/app").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(html(&page).contains("<span class=\"badge pending\">pending</span>"), "{}", html(&page));
    let page = reg.get(&format!("/ui/r/team/app/manifests/{}", image.digest)).await;
    assert!(html(&page).contains("<h2>Inspection</h2><p class=\"empty\">Not inspected yet.</p>"), "{}", html(&page));
    inspected(&reg, "team/app", &image.digest).await;

    let r = reg.get("/ui").await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/ui/")));
    let home = reg.get("/ui/").await;
    assert_eq!(home.status, StatusCode::OK);
    let body = html(&home);
    for repo in ["team/app", "team/multi"] {
        assert!(body.contains(&format!("<a href=\"/ui/r/{repo}\">{repo}</a>")), "{repo} listed: {body}");
    }
    let csp = home.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "no script may run: {csp}");
    assert_eq!(home.header("cache-control"), Some("no-store"));
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    let css = reg.get("/ui/style.css").await;
    assert_eq!((css.status, css.header("content-type")), (StatusCode::OK, Some("text/css; charset=utf-8")));

    // The repository: both tags, the image's digest, size and gate state.
    let page = reg.get("/ui/r/team/app").await;
    let body = html(&page);
    let href = format!("/ui/r/team/app/manifests/{}", image.digest);
    for tag in ["v1", "stable"] {
        assert!(body.contains(&format!("<td class=\"tag\">{tag}</td>")), "tag {tag}: {body}");
    }
    assert_eq!(body.matches(&format!("href=\"{href}\"")).count(), 2, "both tags link to the manifest: {body}");
    let size = image.manifest.len() as u64 + image.blobs().map(|b| b.bytes.len() as u64).sum::<u64>();
    assert!(body.contains(&blobs::human_size(size)), "size {size}: {body}");
    assert!(body.contains("<span class=\"badge blocked\">blocked</span>"), "{body}");

    // The manifest: tags, layers, the referrer, the refusal with its reasons, and the findings.
    let page = reg.get(&href).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = html(&page);
    assert!(body.contains(&format!("<h1 class=\"digest\">{}</h1>", image.digest)), "{body}");
    assert!(body.contains(&format!("localhost/team/app@{}", image.digest)), "the pull command: {body}");
    for layer in &image.layers {
        let d = layer.digest.to_string();
        assert!(body.contains(&format!("title=\"{d}\">{}</code>", &d[..19])), "layer {d}: {body}");
    }
    assert!(body.contains(&format!("/ui/r/team/app/manifests/{artifact_digest}")), "referrer linked: {body}");
    assert!(body.contains("<td>application/spdx+json</td>"), "{body}");
    assert!(body.contains("Pulls are refused by policy <b>paved-road</b>"), "{body}");
    assert!(body.contains("<li>CVE-2021-44228 (CRITICAL) in log4j-core 2.14.1 is fixed in 2.15.0</li>"), "{body}");
    assert!(body.contains("<a href=\"/ui/search?vulnerability=CVE-2021-44228\">CVE-2021-44228</a>"), "{body}");
    assert!(body.contains("<span class=\"sev critical\">CRITICAL</span>"), "{body}");
    assert!(body.contains("Debian GNU/Linux 12 (bookworm)"), "{body}");
    assert!(body.contains("<code>ghp_****</code>") && body.contains("app/.env:3"), "the secret, redacted: {body}");
    assert!(body.contains("Runs as root") && body.contains("add a USER"), "{body}");
    assert!(body.contains("2 packages, 1 vulnerabilities (1 critical), 1 secrets, 0 malware, 1 misconfigurations"), "{body}");
    assert!(body.contains("/ui/search?package=log4j-core&amp;version=2.14.1"), "{body}");
    // Stored data is text, never markup: in the packages, the reasons and the search form.
    assert!(!body.contains("<script"), "{body}");
    assert_eq!(body.matches("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;").count(), 3, "{body}");

    // The artifact's page names its subject and is not an image to inspect.
    let body = html(&reg.get(&format!("/ui/r/team/app/manifests/{artifact_digest}")).await).to_owned();
    assert!(body.contains(&format!("href=\"{href}\"")), "subject linked: {body}");
    assert!(body.contains("<dt>Artifact type</dt><dd>application/spdx+json</dd>") && !body.contains("Not inspected yet"), "{body}");

    // The index: its platforms, each linked.
    let page = reg.get(&format!("/ui/r/team/multi/manifests/{}", index.digest)).await;
    let body = html(&page);
    for (platform, child) in [("linux/amd64", &amd), ("linux/arm64", &arm)] {
        let row = format!("<tr><td>{platform}</td><td><a class=\"digest\" href=\"/ui/r/team/multi/manifests/{}\"", child.digest);
        assert!(body.contains(&row), "{platform}: {body}");
    }
    assert!(body.contains("<span class=\"tag\">latest</span>"), "{body}");

    // "Which of our images contain log4j-core 2.14?"
    let page = reg.get("/ui/search?package=log4j-core&version=2.14").await;
    let body = html(&page);
    assert!(body.contains("1 images hold log4j-core 2.14."), "{body}");
    assert!(body.contains(&format!("href=\"{href}\"")) && (body.contains("<td>v1, stable</td>") || body.contains("<td>stable, v1</td>")), "{body}");
    assert!(html(&reg.get("/ui/search?package=log4j-core&version=2.17").await).contains("0 images hold log4j-core 2.17."));
    let body = html(&reg.get("/ui/search?vulnerability=CVE-2021-44228").await).to_owned();
    assert!(body.contains("1 images are affected by CVE-2021-44228.") && body.contains("<td>2.15.0</td>"), "{body}");
    // An alias finds it too; what the user typed comes back escaped.
    assert!(html(&reg.get("/ui/search?vulnerability=GHSA-jfh8-c2jp-5v3q").await).contains("1 images are affected"));
    let typed = format!("/ui/search?package={}", query_value(HOSTILE));
    let body = html(&reg.get(&typed).await).to_owned();
    assert!(!body.contains("<script") && body.contains("value=\"&lt;script&gt;"), "{body}");
}

fn query_value(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_owned()
}

#[tokio::test]
async fn tags_come_a_page_at_a_time() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(4).layer(1, 10).build();
    for i in 0..53 {
        assert_eq!(reg.push_image("paged/app", &image, &format!("t{i:02}")).await.status, StatusCode::CREATED);
    }
    let first = reg.get("/ui/r/paged/app").await;
    let body = html(&first);
    assert_eq!(body.matches("<td class=\"tag\">").count(), 50, "{body}");
    assert!(body.contains("<p class=\"next\"><a href=\"/ui/r/paged/app?last=t49\">Next page</a></p>"), "{body}");
    let second = reg.get("/ui/r/paged/app?last=t49").await;
    let body = html(&second);
    let tags: Vec<&str> = body.split("<td class=\"tag\">").skip(1).map(|s| &s[..3]).collect();
    assert_eq!(tags, ["t50", "t51", "t52"]);
    assert!(!body.contains("Next page"), "{body}");
}

#[tokio::test]
async fn bad_requests_and_unknown_things_are_html_errors() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(5).layer(1, 10).build();
    reg.push_image("team/app", &image, "v1").await;
    let unknown = Digest::sha256_of(b"nothing");
    for (method, path, status, says) in [
        (Method::GET, "/ui/r/Team/App".to_owned(), StatusCode::BAD_REQUEST, "does not match the spec&#39;s grammar"),
        (Method::GET, "/ui/r/team/app/manifests/sha256:zz".to_owned(), StatusCode::BAD_REQUEST, "digest"),
        (Method::GET, format!("/ui/r/team/app/manifests/{unknown}"), StatusCode::NOT_FOUND, "is not in this repository"),
        (Method::GET, "/ui/r/team/nothing".to_owned(), StatusCode::NOT_FOUND, "repository team/nothing is not known"),
        (Method::GET, "/ui/elsewhere".to_owned(), StatusCode::NOT_FOUND, "there is no page /ui/elsewhere"),
        (Method::GET, "/ui/?n=lots&last=%ZZ".to_owned(), StatusCode::OK, "<h1>repositories</h1>"),
        (Method::POST, "/ui/".to_owned(), StatusCode::METHOD_NOT_ALLOWED, "not allowed"),
        (Method::DELETE, format!("/ui/r/team/app/manifests/{}", image.digest), StatusCode::METHOD_NOT_ALLOWED, "not allowed"),
    ] {
        let r = reg.call(method.clone(), &path, &[], "").await;
        assert_eq!(r.status, status, "{method} {path}: {:?}", r.body);
        let body = html(&r);
        assert!(body.to_lowercase().contains(says), "{method} {path}: {body}");
        assert!(r.header("content-security-policy").is_some(), "{method} {path}");
    }
    // Nothing was deleted by the refused DELETE.
    assert_eq!(reg.get(&format!("/v2/team/app/manifests/{}", image.digest)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn with_authentication_pages_show_what_the_viewer_may_pull() {
    let reg = TestRegistry::with_auth(api::HttpLimits::default(), api::RateLimit { per_second: 0.0, burst: 0 }).await;
    let admin = basic("admin", &reg.admin_password);
    let reader_password = format!("rita-{}", auth::password::new_robot_secret());
    let json_headers = [("authorization", admin.as_str()), ("content-type", "application/json")];
    let r = reg.call(Method::POST, "/api/v1/users", &json_headers, json!({ "name": "rita", "password": reader_password }).to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let grant = json!({ "principal": "rita", "role": "reader", "namespace": "team/**" });
    assert_eq!(reg.call(Method::POST, "/api/v1/roles", &json_headers, grant.to_string()).await.status, StatusCode::NO_CONTENT);
    let rita = basic("rita", &reader_password);
    let image = ImageBuilder::new(6).layer(1, 10).build();
    for repo in ["team/app", "other/app"] {
        for blob in image.blobs() {
            let r = reg.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={}", blob.digest), &[("authorization", &admin)], blob.bytes.clone()).await;
            assert_eq!(r.status, StatusCode::CREATED);
        }
        let headers = [("authorization", admin.as_str()), ("content-type", image.media_type.as_str())];
        assert_eq!(reg.call(Method::PUT, &format!("/v2/{repo}/manifests/v1"), &headers, image.manifest.clone()).await.status, StatusCode::CREATED);
        inspected(&reg, repo, &image.digest).await;
    }
    let as_ = |auth: &str| if auth.is_empty() { vec![] } else { vec![("authorization", auth.to_owned())] };
    let get = async |path: &str, auth: &str| {
        let headers = as_(auth);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        reg.call(Method::GET, path, &headers, "").await
    };

    // Anonymous: nothing listed, a way to log in; the login asks the browser for credentials.
    let body = html(&get("/ui/", "").await).to_owned();
    assert!(!body.contains("/ui/r/") && body.contains("<a href=\"/ui/login\">Log in</a>"), "{body}");
    let r = get("/ui/login", "").await;
    assert_eq!((r.status, r.header("www-authenticate")), (StatusCode::UNAUTHORIZED, Some("Basic realm=\"customs\"")));
    assert!(html(&r).contains("log in"), "{:?}", r.body);
    let r = get("/ui/login", &rita).await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/ui/")));
    // A repository page asks an anonymous browser for Basic credentials, not for a token.
    let r = get("/ui/r/team/app", "").await;
    assert_eq!((r.status, r.header("www-authenticate")), (StatusCode::UNAUTHORIZED, Some("Basic realm=\"customs\"")));
    let r = get("/ui/", &basic("rita", "wrong")).await;
    assert_eq!((r.status, r.header("www-authenticate")), (StatusCode::UNAUTHORIZED, Some("Basic realm=\"customs\"")));

    // A reader of team/**: team/app only, everywhere.
    let body = html(&get("/ui/", &rita).await).to_owned();
    assert!(body.contains("/ui/r/team/app") && !body.contains("other/app"), "{body}");
    assert!(body.contains("Logged in as <b>rita</b>"), "{body}");
    assert_eq!(get(&format!("/ui/r/team/app/manifests/{}", image.digest), &rita).await.status, StatusCode::OK);
    for path in ["/ui/r/other/app".to_owned(), format!("/ui/r/other/app/manifests/{}", image.digest)] {
        let r = get(&path, &rita).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(html(&r).contains("rita may not do this"), "{path}");
    }
    let body = html(&get("/ui/search?package=log4j-core", &rita).await).to_owned();
    assert!(body.contains("1 images hold log4j-core.") && !body.contains("other/app"), "{body}");
    // The admin sees both.
    let body = html(&get("/ui/search?vulnerability=CVE-2021-44228", &admin).await).to_owned();
    assert!(body.contains("2 images are affected") && body.contains("other/app") && body.contains("team/app"), "{body}");
}
