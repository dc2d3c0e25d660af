//! `customs serve` with its blobs in S3 (`[storage.s3]`), against a real S3 server (s3s-fs,
//! SigV4 checked) and a real skopeo: what is pushed lands in the bucket whole, comes back with
//! the same digests, survives a restart, and `customs gc` frees it there.

use std::path::Path;
use std::process::{Command, Stdio};

use oci::Digest;
use test_support::{ImageBuilder, Index, S3_BUCKET, S3Server, ServerProcess, run_command, skopeo};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The bytes S3 holds under `key`, read from the server's own directory.
fn object(s3_root: &Path, key: &str) -> Vec<u8> {
    std::fs::read(s3_root.join(S3_BUCKET).join(key)).unwrap_or_else(|e| panic!("object {key}: {e}"))
}

/// skopeo copies `addr`/`reference` into the layout `out`; every blob of `image` must come back.
fn pull_whole(addr: &str, reference: &str, out: &Path, image: &test_support::Image) {
    let tag = reference.rsplit(':').next().unwrap();
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{addr}/{reference}"), &format!("oci:{}:{tag}", out.display())]);
    for blob in image.blobs() {
        assert!(std::fs::read(out.join("blobs/sha256").join(blob.digest.hex())).unwrap() == blob.bytes, "{} whole", blob.digest);
    }
}

#[test]
fn skopeo_round_trips_images_through_blobs_kept_in_s3_and_gc_frees_them_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (s3_root, data, src, out) =
        (tmp.path().join("s3"), tmp.path().join("data"), tmp.path().join("src"), tmp.path().join("out"));
    let s3 = S3Server::start(&s3_root);
    let mut env = s3.serve_env("registry");
    // Inspection off: its SBOM and report would add referrers at their own pace; gc counts below.
    env.push(("CUSTOMS_INSPECTION__ENABLED".into(), "false".into()));
    let env = refs(&env);

    // A layer of 12 MB goes to S3 as a multipart upload; the others in one PUT each.
    let kept = ImageBuilder::new(51).layer(1, 12_000_000).layer(3, 40_000).build();
    let deleted = ImageBuilder::new(52).layer(1, 30_000).build();
    let index = Index::new(vec![
        ImageBuilder::new(53).layer(2, 10_000).arch("amd64").build(),
        ImageBuilder::new(54).layer(2, 10_000).arch("arm64").build(),
    ]);
    kept.write_layout(&src, "kept").unwrap();
    deleted.write_layout(&src, "deleted").unwrap();
    index.write_layout(&src, "multi").unwrap();

    let server = ServerProcess::start_with(customs(), &data, &env).unwrap();
    let host = server.addr.clone();
    let push = |tag: &str, extra: &[&str]| {
        let (from, to) = (format!("oci:{}:{tag}", src.display()), format!("docker://{host}/team/app:{tag}"));
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        args.extend_from_slice(extra);
        args.extend([from.as_str(), to.as_str()]);
        skopeo(&args);
    };
    push("kept", &[]);
    push("deleted", &[]);
    push("multi", &["--all"]);

    // Every blob and manifest is an object under the prefix holding exactly its bytes; no
    // upload is left in the bucket and nothing is in the data directory's blobs/.
    let images = [&kept, &deleted].into_iter().chain(&index.images);
    for image in images {
        let manifest = (&image.digest, &image.manifest[..]);
        for (digest, bytes) in std::iter::once(manifest).chain(image.blobs().map(|b| (&b.digest, &b.bytes[..]))) {
            let stored = object(&s3_root, &format!("registry/blobs/sha256/{}", digest.hex()));
            assert!(stored == bytes, "{digest} is stored whole in S3");
        }
    }
    assert_eq!(object(&s3_root, &format!("registry/blobs/sha256/{}", index.digest.hex())), index.manifest);
    assert_eq!(s3.keys("registry/uploads/"), Vec::<String>::new(), "uploads are gone once committed");
    assert_eq!(s3.open_multipart_parts(), 0);
    assert_eq!(test_support::files_under(&data.join("blobs")), Vec::<std::path::PathBuf>::new(), "no blob in the data directory");

    // Back out with the same digests, byte for byte.
    pull_whole(&host, "team/app:kept", &out, &kept);
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{host}/team/app:multi"),
        &format!("oci:{}:multi", out.display()),
    ]);
    let layout: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let multi = layout["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "multi");
    assert_eq!(multi.unwrap()["digest"], index.digest.to_string());

    skopeo(&["delete", "--tls-verify=false", &format!("docker://{host}/team/app@{}", deleted.digest)]);
    // What the bucket was asked shows in /metrics.
    let metrics = test_support::run("curl", &["-s", &format!("http://{host}/metrics")]);
    let requests = |answer: &str| test_support::metric(&metrics, &format!("customs_storage_requests_total{{answer=\"{answer}\"}}"));
    assert!(requests("2xx").is_some_and(|n| n > 20.0), "{metrics}");
    assert_eq!((requests("5xx"), requests("failed")), (Some(0.0), Some(0.0)), "{metrics}");
    assert!(test_support::metric(&metrics, "customs_storage_request_wait_seconds_total").is_some_and(|s| s > 0.0));
    assert!(server.stop());

    // customs gc over the bucket: the deleted image's objects go, the rest stay.
    let mut gc = Command::new(customs());
    gc.args(["gc", "--delay-secs", "0", "--data"]).arg(&data).stdin(Stdio::null());
    for (k, v) in &env {
        gc.env(k, v);
    }
    let printed = run_command(&mut gc);
    let freed: Vec<&Digest> = std::iter::once(&deleted.digest).chain(deleted.blobs().map(|b| &b.digest)).collect();
    let bytes = deleted.manifest.len() + deleted.blobs().map(|b| b.bytes.len()).sum::<usize>();
    assert!(printed.contains(&format!("deleted {} blobs ({bytes} bytes) no record needed", freed.len())), "{printed}");
    let keys = s3.keys("registry/blobs/");
    for d in freed {
        assert!(!keys.contains(&format!("registry/blobs/sha256/{}", d.hex())), "{d} freed in S3");
    }
    for blob in kept.blobs() {
        assert!(keys.contains(&format!("registry/blobs/sha256/{}", blob.digest.hex())), "{} kept", blob.digest);
    }

    // A restart reads the same bucket: the image kept comes back whole.
    let server = ServerProcess::start_with(customs(), &data, &env).unwrap();
    pull_whole(&server.addr, "team/app:kept", &tmp.path().join("again"), &kept);
    assert!(server.stop());
}

#[test]
fn serve_refuses_a_prefix_another_data_directory_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let env = s3.serve_env("registry");
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    let server = ServerProcess::start_with(customs(), &first, &refs(&env)).unwrap();
    assert!(server.stop());
    let out = Command::new(customs())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&second)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let id = std::fs::read_to_string(first.join("id")).unwrap();
    let owner = format!("holds the blobs of customs data directory {}", first.canonicalize().unwrap().display());
    assert!(err.contains(&owner) && err.contains(&format!("(id {})", id.trim())), "{err}");
    // The first starts again (so does customs gc, which writes too); so does the second elsewhere.
    let server = ServerProcess::start_with(customs(), &first, &refs(&env)).unwrap();
    assert!(server.stop());
    let elsewhere = s3.serve_env("second");
    let server = ServerProcess::start_with(customs(), &second, &refs(&elsewhere)).unwrap();
    assert!(server.stop());
}

#[test]
fn serve_refuses_to_start_on_an_s3_store_it_cannot_write() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let mut env = s3.serve_env("registry");
    env.iter_mut().find(|(k, _)| k == "AWS_SECRET_ACCESS_KEY").unwrap().1 = "not-the-secret".into();
    let out = Command::new(customs())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path().join("data"))
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the S3 store cannot be used"), "{err}");
    assert!(err.contains("cannot write to s3://customs-test/registry"), "{err}");
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "it never listened");
}

#[tokio::test]
async fn whole_blob_gets_are_redirected_to_presigned_urls_that_clients_follow() {
    use bytes::Bytes;
    use http::{Method, StatusCode};
    use test_support::Client;

    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let mut env = s3.serve_env("registry");
    env.push(("CUSTOMS_STORAGE__S3__REDIRECT".into(), "true".into()));
    env.push(("CUSTOMS_INSPECTION__ENABLED".into(), "false".into()));
    let server = ServerProcess::start_with(customs(), &tmp.path().join("data"), &refs(&env)).unwrap();
    let client = Client::new(&server.url());
    let image = ImageBuilder::new(61).layer(2, 50_000).build();
    client.push_image("team/app", &image, "v1").await;
    let layer = &image.layers[0];
    let path = format!("/v2/team/app/blobs/{}", layer.digest);

    // A whole GET: 307 to a URL signed for this object, which serves its bytes to anyone holding it.
    let r = client.call(Method::GET, &path, &[], Bytes::new()).await.unwrap();
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(r.header("docker-content-digest"), Some(layer.digest.to_string().as_str()));
    let url = r.header("location").unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/{S3_BUCKET}/registry/blobs/sha256/{}?", s3.endpoint(), layer.digest.hex())), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let fetched = client.call(Method::GET, &url, &[], Bytes::new()).await.unwrap();
    assert_eq!(fetched.status, StatusCode::OK);
    assert!(fetched.body == layer.bytes, "the presigned URL serves the blob");
    // The signature is checked: the URL of another object with it is refused.
    let other = url.replace(layer.digest.hex(), image.config.digest.hex());
    assert_eq!(client.call(Method::GET, &other, &[], Bytes::new()).await.unwrap().status, StatusCode::FORBIDDEN);

    // HEAD, ranges and conditional GETs are still answered by customs.
    let head = client.call(Method::HEAD, &path, &[], Bytes::new()).await.unwrap();
    assert_eq!((head.status, head.header("content-length")), (StatusCode::OK, Some(layer.bytes.len().to_string().as_str())));
    let ranged = client.call(Method::GET, &path, &[("range", "bytes=10-19")], Bytes::new()).await.unwrap();
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&ranged.body[..], &layer.bytes[10..20]);
    let etag = format!("\"{}\"", layer.digest);
    let unchanged = client.call(Method::GET, &path, &[("if-none-match", etag.as_str())], Bytes::new()).await.unwrap();
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    // A blob the repository does not link gets no URL.
    let elsewhere = client.call(Method::GET, &format!("/v2/team/other/blobs/{}", layer.digest), &[], Bytes::new()).await.unwrap();
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    assert_eq!(elsewhere.json()["errors"][0]["code"], "BLOB_UNKNOWN");

    // skopeo follows the redirects and gets every byte (nothing else runs on this runtime).
    pull_whole(&server.addr, "team/app:v1", &tmp.path().join("out"), &image);
    assert!(server.stop());
}

#[test]
fn customs_scrub_moves_a_rotten_object_to_quarantine_in_the_bucket_and_a_push_repairs_it() {
    use std::io::{Seek, Write};

    let tmp = tempfile::tempdir().unwrap();
    let (s3_root, data, src) = (tmp.path().join("s3"), tmp.path().join("data"), tmp.path().join("src"));
    let s3 = S3Server::start(&s3_root);
    let mut env = s3.serve_env("registry");
    env.push(("CUSTOMS_INSPECTION__ENABLED".into(), "false".into()));
    let env = refs(&env);
    let image = ImageBuilder::new(71).layer(2, 40_000).build();
    image.write_layout(&src, "v1").unwrap();
    let (from, to) = (format!("oci:{}:v1", src.display()), |addr: &str| format!("docker://{addr}/team/app:v1"));
    let server = ServerProcess::start_with(customs(), &data, &env).unwrap();
    skopeo(&["copy", "--dest-tls-verify=false", &from, &to(&server.addr)]);
    assert!(server.stop());

    // The object rots in the store, as a failing disk under it would leave it.
    let layer = &image.layers[0];
    let key = format!("registry/blobs/sha256/{}", layer.digest.hex());
    let mut f = std::fs::OpenOptions::new().write(true).open(s3_root.join(S3_BUCKET).join(&key)).unwrap();
    f.seek(std::io::SeekFrom::Start(1000)).unwrap();
    f.write_all(b"bit rot").unwrap();
    drop(f);

    let scrub = || {
        let mut cmd = Command::new(customs());
        cmd.args(["scrub", "--data"]).arg(&data).envs(env.iter().copied()).stdin(Stdio::null());
        let out = cmd.output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, said) = scrub();
    assert_eq!(code, 1, "{said}");
    assert!(said.starts_with(&format!("damaged {}: its {} bytes hash to sha256:", layer.digest, layer.bytes.len())), "{said}");
    let quarantined = format!("s3://{S3_BUCKET}/registry/quarantine/sha256/{}-", layer.digest.hex());
    assert!(said.contains(&format!("its bytes were moved to {quarantined}")), "{said}");
    let keys = s3.keys("registry/");
    assert!(!keys.contains(&key), "out of sight");
    assert!(keys.iter().any(|k| k.starts_with(&format!("registry/quarantine/sha256/{}-", layer.digest.hex()))), "{keys:?}");

    // The same image pushed again writes the layer anew; the next pass finds nothing.
    let server = ServerProcess::start_with(customs(), &data, &env).unwrap();
    skopeo(&["copy", "--dest-tls-verify=false", &from, &to(&server.addr)]);
    assert!(server.stop());
    assert!(object(&s3_root, &key) == layer.bytes, "repaired");
    let (code, said) = scrub();
    assert_eq!(code, 0, "{said}");
    assert!(said.trim().ends_with("0 damaged, 0 unreadable"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_over_s3_fetches_a_blob_once_while_twenty_clients_stream_it() {
    use bytes::Bytes;
    use http::{Method, StatusCode};
    use test_support::Client;

    let tmp = tempfile::tempdir().unwrap();
    let quiet = [("CUSTOMS_GATE__ENABLED", "false"), ("CUSTOMS_INSPECTION__ENABLED", "false")];
    let upstream = ServerProcess::start_with(customs(), &tmp.path().join("upstream"), &quiet).unwrap();
    // A 20 MB layer: the mirror writes it to S3 as 8 MiB segments while the clients read them.
    let image = ImageBuilder::new(81).layer(1, 20_000_000).layer(1, 5_000).build();
    Client::new(&upstream.url()).push_image("team/app", &image, "v1").await;

    let s3_root = tmp.path().join("s3");
    let s3 = S3Server::start(&s3_root);
    let mut env = s3.serve_env("mirror");
    env.extend(quiet.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mirror_flag = format!("up={}", upstream.url());
    let log = tmp.path().join("mirror.log");
    let mirror = ServerProcess::start_args(customs(), &tmp.path().join("data"), &["--mirror", &mirror_flag], &refs(&env), &log).unwrap();
    let client = Client::new(&mirror.url());

    // Twenty clients ask for the uncached layer at once, and one for the manifest (which fetches
    // the image's blobs before it is stored): one download, the others stream from its segments.
    let layer = image.layers[0].clone();
    let pulls: Vec<_> = (0..20)
        .map(|_| {
            let (client, path) = (client.clone(), format!("/v2/up/team/app/blobs/{}", layer.digest));
            tokio::spawn(async move { client.call(Method::GET, &path, &[], Bytes::new()).await.unwrap() })
        })
        .collect();
    let accept = [("accept", "application/vnd.oci.image.manifest.v1+json")];
    let m = client.call(Method::GET, "/v2/up/team/app/manifests/v1", &accept, Bytes::new()).await.unwrap();
    assert_eq!(m.status, StatusCode::OK, "{:?}", m.body);
    for pull in pulls {
        let r = pull.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(Digest::sha256_of(&r.body), layer.digest, "every client gets the whole blob");
    }
    let metrics = client.call(Method::GET, "/metrics", &[], Bytes::new()).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let blob_gets = test_support::metric(&text, "customs_mirror_upstream_blob_gets_total");
    assert_eq!(blob_gets, Some(3.0), "one upstream GET per blob of the image");
    assert!(test_support::metric(&text, "customs_mirror_joined_total").is_some_and(|j| j >= 19.0), "{text}");
    let key = format!("mirror/blobs/sha256/{}", layer.digest.hex());
    assert!(object(&s3_root, &key) == layer.bytes, "cached whole in S3");
    assert_eq!(s3.keys("mirror/uploads/"), Vec::<String>::new(), "the fill's segments are gone");
    assert_eq!(s3.open_multipart_parts(), 0);
    assert!(mirror.stop());
    assert!(upstream.stop());
}
