//! Access end to end through the router: who may do what, with Basic credentials and with bearer
//! tokens from `/token`; revocation, anonymous namespaces, failed-login limits, the audit log,
//! per-principal budgets, and a login flood that leaves manifest reads alone.

use std::collections::BTreeMap;

use axum::body::Body;
use base64::Engine;
use http::{Method, StatusCode};
use oci::Digest;
use serde_json::{Value, json};
use test_support::{ImageBuilder, TestRegistry, TestResponse, basic};

const REPOS: [&str; 2] = ["team/app", "other/app"];

/// A registry with one principal per role over `team/**`, and an image in each of [`REPOS`].
struct World {
    reg: TestRegistry,
    /// principal → Authorization header value (Basic).
    creds: BTreeMap<&'static str, String>,
}

async fn world(limits: api::HttpLimits) -> World {
    let reg = TestRegistry::with_auth(limits, api::RateLimit { per_second: 0.0, burst: 0 }).await;
    let admin = basic("admin", &reg.admin_password);
    let mut creds = BTreeMap::new();
    creds.insert("admin", admin.clone());
    for (name, role) in [("rita", "reader"), ("will", "writer"), ("mia", "maintainer")] {
        let password = format!("{name}-{}", auth::password::new_robot_secret());
        let r = api_call(&reg, &admin, Method::POST, "/api/v1/users", json!({ "name": name, "password": password })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let grant = json!({ "principal": name, "role": role, "namespace": "team/**" });
        assert_eq!(api_call(&reg, &admin, Method::POST, "/api/v1/roles", grant).await.status, StatusCode::NO_CONTENT);
        creds.insert(name, basic(name, &password));
    }
    let robot = json!({ "name": "ci", "namespaces": [{ "namespace": "team/**", "actions": "pull,push" }] });
    let r = api_call(&reg, &admin, Method::POST, "/api/v1/robots", robot).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let robot: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(robot["name"], "robot$ci");
    creds.insert("robot", basic("robot$ci", robot["secret"].as_str().unwrap()));
    for (i, repo) in REPOS.iter().enumerate() {
        let image = ImageBuilder::new(i as u64).layer(1, 500).build();
        for blob in image.blobs() {
            let d = blob.digest.clone();
            let r = reg.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={d}"), &[("authorization", &admin)], blob.bytes.clone()).await;
            assert_eq!(r.status, StatusCode::CREATED);
        }
        let headers = [("authorization", admin.as_str()), ("content-type", image.media_type.as_str())];
        let r = reg.call(Method::PUT, &format!("/v2/{repo}/manifests/v1"), &headers, image.manifest.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    World { reg, creds }
}

async fn api_call(reg: &TestRegistry, auth: &str, method: Method, path: &str, body: Value) -> TestResponse {
    let headers = [("authorization", auth), ("content-type", "application/json")];
    reg.call(method, path, &headers, body.to_string()).await
}

/// What a principal may do: (pull, push, delete, tags) inside `team/**` and outside, and the catalog.
struct Expect {
    inside: [bool; 4],
    outside: [bool; 4],
    catalog: Option<&'static [&'static str]>,
}

fn expectations() -> Vec<(&'static str, Expect)> {
    let none = [false; 4];
    let all = [true; 4];
    vec![
        ("anonymous", Expect { inside: none, outside: none, catalog: None }),
        ("rita", Expect { inside: [true, false, false, true], outside: none, catalog: Some(&["team/app"]) }),
        ("will", Expect { inside: [true, true, false, true], outside: none, catalog: Some(&["team/app"]) }),
        ("mia", Expect { inside: all, outside: none, catalog: Some(&["team/app"]) }),
        ("robot", Expect { inside: [true, true, false, true], outside: none, catalog: Some(&["team/app"]) }),
        ("admin", Expect { inside: all, outside: all, catalog: Some(&["other/app", "team/app"]) }),
    ]
}

/// Runs every cell with `auth` (None: anonymous) and asserts it. `refused` is the status a refusal
/// has for this kind of credential.
async fn check_matrix(reg: &TestRegistry, who: &str, auth: Option<&str>, expect: &Expect, refused: StatusCode) {
    let headers: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
    let absent = Digest::sha256_of(b"no such manifest");
    for (repo, row) in [("team/app", expect.inside), ("other/app", expect.outside)] {
        let cells = [
            ("pull", reg.call(Method::GET, &format!("/v2/{repo}/manifests/v1"), &headers, Body::empty()).await, StatusCode::OK),
            ("push", reg.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), &headers, Body::empty()).await, StatusCode::ACCEPTED),
            // Deleting a manifest that is not there: allowed means the registry looked (404).
            ("delete", reg.call(Method::DELETE, &format!("/v2/{repo}/manifests/{absent}"), &headers, Body::empty()).await, StatusCode::NOT_FOUND),
            ("tags", reg.call(Method::GET, &format!("/v2/{repo}/tags/list"), &headers, Body::empty()).await, StatusCode::OK),
        ];
        for ((action, r, ok), allowed) in cells.into_iter().zip(row) {
            let want = if allowed { ok } else { refused };
            assert_eq!(r.status, want, "{who} {action} {repo}: {:?}", String::from_utf8_lossy(&r.body));
            if r.status == StatusCode::UNAUTHORIZED {
                let challenge = r.header("www-authenticate").unwrap_or_default();
                assert!(challenge.starts_with("Bearer realm=\"http://"), "{who} {action}: {challenge}");
                assert!(challenge.contains(&format!("scope=\"repository:{repo}:")), "{who} {action}: {challenge}");
            }
        }
    }
    let r = reg.call(Method::GET, "/v2/_catalog", &headers, Body::empty()).await;
    match expect.catalog {
        None => assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{who} catalog"),
        Some(repos) => {
            assert_eq!(r.status, StatusCode::OK, "{who} catalog");
            let listed: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(listed["repositories"], json!(repos), "{who} catalog");
        }
    }
}

#[tokio::test]
async fn authorization_matrix_with_basic_credentials() {
    let w = world(api::HttpLimits::default()).await;
    for (who, expect) in expectations() {
        let auth = w.creds.get(who).map(String::as_str);
        let refused = if auth.is_some() { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
        check_matrix(&w.reg, who, auth, &expect, refused).await;
    }
}

#[tokio::test]
async fn authorization_matrix_with_bearer_tokens() {
    let w = world(api::HttpLimits::default()).await;
    let scopes: String = REPOS.iter().map(|r| format!("&scope=repository:{r}:pull,push,delete")).collect();
    for (who, expect) in expectations() {
        let headers: Vec<(&str, &str)> = w.creds.get(who).map(|a| vec![("authorization", a.as_str())]).unwrap_or_default();
        let r = w.reg.call(Method::GET, &format!("/token?service=customs{scopes}&scope=registry:catalog:*"), &headers, Body::empty()).await;
        assert_eq!(r.status, StatusCode::OK, "{who}: {:?}", r.body);
        let token: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(token["token"], token["access_token"]);
        assert!(token["expires_in"].as_u64().unwrap() > 0 && token["issued_at"].as_str().unwrap().ends_with('Z'));
        // The token holds exactly what the principal may do of what it asked for.
        let claims = claims(token["token"].as_str().unwrap());
        let granted: BTreeMap<String, Value> =
            claims["access"].as_array().unwrap().iter().map(|a| (a["name"].as_str().unwrap().to_owned(), a["actions"].clone())).collect();
        let actions = |row: [bool; 4]| {
            let names = ["pull", "push", "delete"];
            names.iter().zip(row).filter(|(_, ok)| *ok).map(|(n, _)| *n).collect::<Vec<_>>()
        };
        for (repo, row) in [("team/app", expect.inside), ("other/app", expect.outside)] {
            let want = actions(row);
            match granted.get(repo) {
                None => assert!(want.is_empty(), "{who} {repo}: no access granted, want {want:?}"),
                Some(got) => assert_eq!(got, &json!(want), "{who} {repo}"),
            }
        }
        let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
        let auth = if who == "anonymous" { None } else { Some(bearer.as_str()) };
        check_matrix(&w.reg, who, auth, &expect, StatusCode::UNAUTHORIZED).await;
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn bad_tokens_and_wrong_passwords_are_refused() {
    let w = world(api::HttpLimits::default()).await;
    let get = |auth: String| {
        let reg = &w.reg;
        async move { reg.call(Method::GET, "/v2/team/app/manifests/v1", &[("authorization", &auth)], Body::empty()).await }
    };
    // An expired token signed with the right key.
    let keys = auth::TokenKeys::from_pem(&w.reg.token_key).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let access = vec![auth::ResourceAccess { resource_type: "repository".into(), name: "team/app".into(), actions: vec!["pull".into()] }];
    let claims = |exp: u64| auth::Claims {
        iss: "customs".into(),
        sub: "admin".into(),
        aud: "customs".into(),
        exp,
        nbf: now - 1000,
        iat: now - 1000,
        jti: "t".into(),
        access: access.clone(),
        kind: "user".into(),
        // Issued after every change so far: only its expiry decides.
        ver: i64::MAX,
    };
    let r = get(format!("Bearer {}", keys.sign(&claims(now - 120)))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").unwrap().contains("error=\"invalid_token\""));
    assert!(String::from_utf8_lossy(&r.body).contains("expired"));
    assert_eq!(get(format!("Bearer {}", keys.sign(&claims(now + 300)))).await.status, StatusCode::OK, "the same, unexpired");
    // Signed by someone else.
    let stranger = auth::TokenKeys::from_pem(&auth::TokenKeys::generate_pem()).unwrap();
    assert_eq!(get(format!("Bearer {}", stranger.sign(&claims(now + 300)))).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get("Bearer not-a-jwt".into()).await.status, StatusCode::UNAUTHORIZED);
    // A wrong password is a 401, on /v2 and on /token, never an anonymous request.
    assert_eq!(get(basic("rita", "wrong-password")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(basic("nobody", "wrong-password")).await.status, StatusCode::UNAUTHORIZED);
    let r = w.reg.call(Method::GET, "/token?scope=repository:team/app:pull", &[("authorization", &basic("rita", "nope-nope"))], Body::empty()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = w.reg.call(Method::GET, "/token?service=elsewhere", &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Hostile or broken input: a clear error, never a token.
    for q in ["/token?scope=garbage", "/token?scope=repository::pull", "/token?scope=%ZZ"] {
        let r = w.reg.get(q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(!String::from_utf8_lossy(&r.body).contains("token\""), "{q}");
    }
    for header in ["Basic !!!", "Digest abc", "Bearer"] {
        let r = w.reg.call(Method::GET, "/v2/team/app/manifests/v1", &[("authorization", header)], Body::empty()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{header}");
    }
    let r = w.reg.call(Method::POST, "/token", &[("content-type", "application/x-www-form-urlencoded")], "grant_type=refresh_token&refresh_token=x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // OAuth2 password grant (containerd's first try).
    let password = w.creds["rita"].clone();
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&password[6..]).unwrap()).unwrap();
    let (_, secret) = decoded.split_once(':').unwrap();
    let form = format!("grant_type=password&username=rita&password={secret}&service=customs&scope=repository%3Ateam%2Fapp%3Apull");
    let r = w.reg.call(Method::POST, "/token", &[("content-type", "application/x-www-form-urlencoded")], form).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let token: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(get(format!("Bearer {}", token["access_token"].as_str().unwrap())).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_robot_loses_access_at_once_and_its_tokens_too() {
    let w = world(api::HttpLimits::default()).await;
    let robot = w.creds["robot"].clone();
    let pull = |auth: String| {
        let reg = &w.reg;
        async move { reg.call(Method::GET, "/v2/team/app/manifests/v1", &[("authorization", &auth)], Body::empty()).await.status }
    };
    let r = w.reg.call(Method::GET, "/token?scope=repository:team/app:pull", &[("authorization", &robot)], Body::empty()).await;
    let token: Value = serde_json::from_slice(&r.body).unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    assert_eq!(pull(robot.clone()).await, StatusCode::OK);
    assert_eq!(pull(bearer.clone()).await, StatusCode::OK);
    let r = api_call(&w.reg, &w.creds["admin"], Method::DELETE, "/api/v1/robots/robot$ci", Value::Null).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(pull(robot).await, StatusCode::UNAUTHORIZED, "the cached secret is forgotten");
    assert_eq!(pull(bearer).await, StatusCode::UNAUTHORIZED, "a token issued before the revocation is refused");
    // A role revoked: the user's cached credentials and earlier tokens lose it.
    let rita = w.creds["rita"].clone();
    assert_eq!(pull(rita.clone()).await, StatusCode::OK);
    let r = api_call(&w.reg, &w.creds["admin"], Method::DELETE, "/api/v1/roles?principal=rita&namespace=team/**", Value::Null).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(pull(rita).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn anonymous_pull_is_granted_per_namespace() {
    let w = world(api::HttpLimits::default()).await;
    let admin = w.creds["admin"].clone();
    let grant = json!({ "principal": "anonymous", "role": "reader", "namespace": "team/*" });
    assert_eq!(api_call(&w.reg, &admin, Method::POST, "/api/v1/roles", grant).await.status, StatusCode::NO_CONTENT);
    let too_much = json!({ "principal": "anonymous", "role": "writer", "namespace": "team/*" });
    assert_eq!(api_call(&w.reg, &admin, Method::POST, "/api/v1/roles", too_much).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(w.reg.get("/v2/team/app/manifests/v1").await.status, StatusCode::OK);
    assert_eq!(w.reg.get("/v2/other/app/manifests/v1").await.status, StatusCode::UNAUTHORIZED);
    let r = w.reg.call(Method::POST, "/v2/team/app/blobs/uploads/", &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "anonymous never pushes");
    // An anonymous token carries the anonymous grants.
    let r = w.reg.get("/token?service=customs&scope=repository:team/app:pull,push").await;
    let access = claims(serde_json::from_slice::<Value>(&r.body).unwrap()["token"].as_str().unwrap())["access"].clone();
    assert_eq!(access, json!([{ "type": "repository", "name": "team/app", "actions": ["pull"] }]));
    // `GET /v2/` still asks for credentials, so that clients log in when they have them.
    assert_eq!(w.reg.get("/v2/").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn failed_logins_lock_a_name_and_are_audited() {
    let reg = TestRegistry::with_auth(api::HttpLimits::default(), api::RateLimit { per_second: 1.0 / 60.0, burst: 3 }).await;
    let admin = basic("admin", &reg.admin_password);
    let r = api_call(&reg, &admin, Method::POST, "/api/v1/users", json!({ "name": "eve", "password": "eve-password-1" })).await;
    assert_eq!(r.status, StatusCode::CREATED);
    for _ in 0..3 {
        let r = reg.call(Method::GET, "/v2/", &[("authorization", &basic("eve", "guess-guess"))], Body::empty()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Locked now, even with the right password: no hash is computed for it.
    let r = reg.call(Method::GET, "/v2/", &[("authorization", &basic("eve", "eve-password-1"))], Body::empty()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Another name is not locked (the client address is unknown in-process).
    assert_eq!(reg.call(Method::GET, "/v2/", &[("authorization", &admin)], Body::empty()).await.status, StatusCode::OK);
    // One client trying many names is locked by its address.
    let from = |name: String| {
        let peer: std::net::SocketAddr = "198.51.100.3:5555".parse().unwrap();
        let mut r = http::Request::get("/v2/").header("authorization", basic(&name, "guess-guess")).body(Body::empty()).unwrap();
        r.extensions_mut().insert(axum::extract::ConnectInfo(api::Peer(peer)));
        reg.send(r)
    };
    for i in 0..3 {
        assert_eq!(from(format!("spray{i}")).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(from("spray-next".into()).await.status, StatusCode::TOO_MANY_REQUESTS, "the address is locked");
    let r = reg.call(Method::GET, "/api/v1/audit?action=login.failed", &[("authorization", &admin)], Body::empty()).await;
    let log: Value = serde_json::from_slice(&r.body).unwrap();
    let failed: Vec<&Value> = log["entries"].as_array().unwrap().iter().filter(|e| e["target"] == "eve").collect();
    assert_eq!(failed.len(), 3, "{log}");
    let metrics = String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap();
    assert_eq!(test_support::metric(&metrics, "customs_login_failures_total"), Some(6.0));
    assert_eq!(test_support::metric(&metrics, "customs_logins_locked_total"), Some(2.0));
}

#[tokio::test]
async fn management_is_for_admins_and_everything_is_audited() {
    let w = world(api::HttpLimits::default()).await;
    let (admin, will) = (w.creds["admin"].clone(), w.creds["will"].clone());
    let r = api_call(&w.reg, &will, Method::POST, "/api/v1/users", json!({ "name": "x", "password": "x-password" })).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(w.reg.call(Method::GET, "/api/v1/audit", &[("authorization", &will)], Body::empty()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(w.reg.get("/api/v1/whoami").await.status, StatusCode::UNAUTHORIZED);
    let r = w.reg.call(Method::GET, "/api/v1/whoami", &[("authorization", &will)], Body::empty()).await;
    let me: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((me["name"].as_str(), me["admin"].as_bool()), (Some("will"), Some(false)));
    // A user may change their own password, not someone else's.
    let r = api_call(&w.reg, &will, Method::PUT, "/api/v1/users/will/password", json!({ "password": "will-new-password" })).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api_call(&w.reg, &basic("will", "will-new-password"), Method::PUT, "/api/v1/users/rita/password", json!({ "password": "hijacked-password" })).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(w.reg.call(Method::GET, "/v2/", &[("authorization", &will)], Body::empty()).await.status, StatusCode::UNAUTHORIZED, "old password");
    let r = api_call(&w.reg, &admin, Method::POST, "/api/v1/users", json!({ "name": "Bad Name", "password": "long-enough" })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api_call(&w.reg, &admin, Method::POST, "/api/v1/users", json!({ "name": "rita", "password": "long-enough" })).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let headers = [("authorization", admin.as_str()), ("content-type", "application/json")];
    let r = w.reg.call(Method::POST, "/api/v1/robots", &headers, "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api_call(&w.reg, &admin, Method::POST, "/api/v1/robots", json!({ "name": "r", "namespaces": [{ "namespace": "a//b", "actions": "pull" }] })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api_call(&w.reg, &admin, Method::POST, "/api/v1/roles", json!({ "principal": "rita", "role": "owner", "namespace": "x/**" })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(w.reg.call(Method::GET, "/api/v1/nothing", &[("authorization", &admin)], Body::empty()).await.status, StatusCode::NOT_FOUND);
    let listed = w.reg.call(Method::GET, "/api/v1/principals", &[("authorization", &admin)], Body::empty()).await;
    assert!(!String::from_utf8_lossy(&listed.body).contains("\"r\"") && !String::from_utf8_lossy(&listed.body).contains("robot$r\""), "refused requests made nothing");
    // A push and a delete by a maintainer.
    let mia = w.creds["mia"].clone();
    let r = w.reg.call(Method::GET, "/v2/team/app/manifests/v1", &[("authorization", &mia)], Body::empty()).await;
    let digest = r.header("docker-content-digest").unwrap().to_owned();
    let r = w.reg.call(Method::DELETE, &format!("/v2/team/app/manifests/{digest}"), &[("authorization", &mia)], Body::empty()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    let r = w.reg.call(Method::GET, "/api/v1/audit?limit=1000", &[("authorization", &admin)], Body::empty()).await;
    let log: Value = serde_json::from_slice(&r.body).unwrap();
    let entries: Vec<(String, String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap().into(), e["action"].as_str().unwrap().into(), e["target"].as_str().unwrap().into()))
        .collect();
    let has = |actor: &str, action: &str, target: &str| entries.iter().any(|(a, b, c)| a == actor && b == action && c.starts_with(target));
    assert!(has("bootstrap", "user.add", "admin"));
    assert!(has("admin", "user.add", "rita") && has("admin", "role.grant", "rita"));
    assert!(has("admin", "robot.create", "robot$ci"));
    assert!(has("admin", "push", "team/app:v1@sha256:") && has("admin", "push", "other/app:v1@sha256:"));
    assert!(has("will", "user.passwd", "will"));
    assert!(has("mia", "login", "mia"));
    assert!(has("mia", "delete", &format!("team/app@{digest}")));
    assert!(!entries.iter().any(|(a, b, _)| a == "will" && b == "user.add"), "refused changes are not done");
    let ids: Vec<i64> = log["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|p| p[0] < p[1]));
}

#[tokio::test]
async fn quotas_are_listed_to_admins_and_shown_to_who_may_pull() {
    let w = world(api::HttpLimits::default()).await;
    let get = |path: &'static str, who: Option<&'static str>| {
        let auth = who.map(|w_| w.creds[w_].clone());
        let reg = &w.reg;
        async move {
            let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("authorization", a)]).unwrap_or_default();
            reg.call(Method::GET, path, &headers, Body::empty()).await.status
        }
    };
    assert_eq!(get("/api/v1/quotas", None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get("/api/v1/quotas", Some("rita")).await, StatusCode::FORBIDDEN, "the list is for admins");
    assert_eq!(get("/api/v1/quotas", Some("admin")).await, StatusCode::OK);
    // One namespace: to who may pull from it (no quota is configured here: 404 says so).
    assert_eq!(get("/api/v1/quotas/team", Some("rita")).await, StatusCode::NOT_FOUND);
    assert_eq!(get("/api/v1/quotas/team/app", Some("robot")).await, StatusCode::NOT_FOUND);
    assert_eq!(get("/api/v1/quotas/other", Some("rita")).await, StatusCode::FORBIDDEN);
    assert_eq!(get("/api/v1/quotas/team", None).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rate_budgets_belong_to_principals_not_addresses() {
    let mut limits = api::HttpLimits::default();
    limits.rate.classes[api::RouteClass::ManifestRead as usize] = api::RateLimit { per_second: 0.01, burst: 2 };
    let w = world(limits).await;
    // Both robots and the user come "from" the same (unknown) address in-process; the peer is
    // set explicitly below so that an address key would be shared.
    let peer: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let get = |auth: &str| {
        let mut r = http::Request::get("/v2/team/app/manifests/v1").header("authorization", auth).body(Body::empty()).unwrap();
        r.extensions_mut().insert(axum::extract::ConnectInfo(api::Peer(peer)));
        w.reg.send(r)
    };
    let (will, rita) = (w.creds["will"].clone(), w.creds["rita"].clone());
    assert_eq!(get(&will).await.status, StatusCode::OK);
    assert_eq!(get(&will).await.status, StatusCode::OK);
    let limited = get(&will).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "will's budget is spent");
    assert!(limited.header("retry-after").is_some());
    assert_eq!(get(&rita).await.status, StatusCode::OK, "rita, behind the same address, has her own budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_shed_and_manifest_reads_go_on() {
    let mut limits = api::HttpLimits::default();
    let tight = api::ClassLimit { concurrency: 1, queue: 1, queue_timeout: std::time::Duration::from_millis(50) };
    limits.admission.0[api::RouteClass::Token as usize] = tight;
    let w = world(limits).await;
    let reader = w.creds["rita"].clone();
    let warm = w.reg.call(Method::GET, "/v2/team/app/manifests/v1", &[("authorization", &reader)], Body::empty()).await;
    assert_eq!(warm.status, StatusCode::OK, "the reader has logged in before the flood");
    // Each flood request names a different user, so each would cost a password hash.
    let floods = (0..40).map(|i| {
        let auth = basic(&format!("flood{i}"), "wrong-password");
        let reg = &w.reg;
        async move { reg.call(Method::GET, "/token?scope=repository:team/app:pull", &[("authorization", &auth)], Body::empty()).await.status }
    });
    let reads = (0..40).map(|_| {
        let reg = &w.reg;
        let auth = reader.clone();
        async move { reg.call(Method::GET, "/v2/team/app/manifests/v1", &[("authorization", &auth)], Body::empty()).await.status }
    });
    let (floods, reads) = tokio::join!(futures::future::join_all(floods), futures::future::join_all(reads));
    assert!(reads.iter().all(|s| *s == StatusCode::OK), "{reads:?}");
    let shed = floods.iter().filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE).count();
    assert!(shed > 0, "the token class sheds past its limit: {floods:?}");
    assert!(floods.iter().all(|s| [StatusCode::SERVICE_UNAVAILABLE, StatusCode::UNAUTHORIZED].contains(s)), "{floods:?}");
}
