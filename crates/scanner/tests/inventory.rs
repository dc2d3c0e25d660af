//! Layers in, inventory out: every detector on real-format files, whiteouts and opaque
//! directories, the layer that added each package, and the three layer encodings.

mod common;
use common::*;
use scanner::{Ecosystem, Inventory, Limits, Scanner};

fn scan(layers: &[(&str, Vec<u8>)]) -> Inventory {
    let mut s = Scanner::new(Limits::default());
    for (digest, bytes) in layers {
        s.add_layer(digest, &bytes[..]);
    }
    s.finish()
}

fn find<'a>(inv: &'a Inventory, eco: Ecosystem, name: &str) -> Option<&'a scanner::Package> {
    inv.packages.iter().find(|p| p.ecosystem == eco && p.name == name)
}

#[track_caller]
fn has(inv: &Inventory, eco: Ecosystem, name: &str, version: &str, purl: &str) {
    let p = find(inv, eco, name).unwrap_or_else(|| panic!("{name} not found in {:#?}", inv.packages));
    assert_eq!(p.version, version, "{name}");
    assert_eq!(p.purl, purl, "{name}");
}

fn base_layer() -> Layer {
    let status = dpkg_stanza("libc6", "2.36-9+deb12u3", Some("glibc"), "install ok installed")
        + &dpkg_stanza("openssl", "3.0.11-1~deb12u2", None, "install ok installed")
        + &dpkg_stanza("libssl3", "3.0.11-1~deb12u2", Some("openssl"), "install ok installed")
        + &dpkg_stanza("oldpkg", "1.0-1", None, "deinstall ok config-files");
    Layer::new()
        .dir("etc")
        .symlink("etc/os-release", "../usr/lib/os-release")
        .dir("usr/lib")
        .file("usr/lib/os-release", OS_RELEASE_DEBIAN.as_bytes())
        .dir("var/lib/dpkg")
        .file("var/lib/dpkg/status", status.as_bytes())
}

#[test]
fn os_packages_whiteouts_and_layer_attribution() {
    let l1 = base_layer();
    // Layer 2 installs curl (dpkg rewrites the whole status file) and a Python package.
    let status2 = dpkg_stanza("libc6", "2.36-9+deb12u3", Some("glibc"), "install ok installed")
        + &dpkg_stanza("openssl", "3.0.11-1~deb12u2", None, "install ok installed")
        + &dpkg_stanza("libssl3", "3.0.11-1~deb12u2", Some("openssl"), "install ok installed")
        + &dpkg_stanza("curl", "7.88.1-10+deb12u5", None, "install ok installed");
    let site = "usr/lib/python3/dist-packages";
    let l2 = Layer::new()
        .file("var/lib/dpkg/status", status2.as_bytes())
        .file(&format!("{site}/requests-2.30.0.dist-info/METADATA"), b"Metadata-Version: 2.1\nName: requests\nVersion: 2.30.0\nLicense: Apache 2.0\n\nbody\n")
        .file(&format!("{site}/six-1.16.0.dist-info/METADATA"), b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n\n")
        .file("app/node_modules/lodash/package.json", br#"{"name":"lodash","version":"4.17.20","license":"MIT"}"#);
    // Layer 3 removes six by whiteout and replaces app/node_modules through an opaque directory.
    let l3 = Layer::new()
        .whiteout(&format!("{site}/six-1.16.0.dist-info"))
        .dir("app/node_modules")
        .opaque("app/node_modules")
        .file("app/node_modules/express/package.json", br#"{"name":"express","version":"4.17.1"}"#);
    let inv = scan(&[("sha256:l1", l1.gzip()), ("sha256:l2", l2.zstd()), ("sha256:l3", l3.tar())]);
    assert!(inv.problems.is_empty(), "{:#?}", inv.problems);
    let os = inv.os.as_ref().expect("os-release through its symlink");
    assert_eq!((os.id.as_str(), os.version.as_str(), os.codename.as_str()), ("debian", "12", "bookworm"));
    has(&inv, Ecosystem::Deb, "libc6", "2.36-9+deb12u3", "pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64&distro=debian-12&upstream=glibc");
    has(&inv, Ecosystem::Deb, "curl", "7.88.1-10+deb12u5", "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u5?arch=amd64&distro=debian-12");
    assert!(find(&inv, Ecosystem::Deb, "oldpkg").is_none(), "config-files only is not installed");
    let libssl = find(&inv, Ecosystem::Deb, "libssl3").unwrap();
    assert_eq!(libssl.source.as_ref().map(|s| (s.name.as_str(), s.version.as_str())), Some(("openssl", "3.0.11-1~deb12u2")));
    assert_eq!(libssl.advisory_queries(inv.os.as_ref()), vec![("Debian:12".to_owned(), "openssl".to_owned(), "3.0.11-1~deb12u2".to_owned())]);
    // Attribution: libc6 was listed from layer 1 on, curl from layer 2.
    assert_eq!(find(&inv, Ecosystem::Deb, "libc6").unwrap().layer.as_deref(), Some("sha256:l1"));
    assert_eq!(find(&inv, Ecosystem::Deb, "curl").unwrap().layer.as_deref(), Some("sha256:l2"));
    has(&inv, Ecosystem::Pypi, "requests", "2.30.0", "pkg:pypi/requests@2.30.0");
    assert_eq!(find(&inv, Ecosystem::Pypi, "requests").unwrap().layer.as_deref(), Some("sha256:l2"));
    assert!(find(&inv, Ecosystem::Pypi, "six").is_none(), "six was whited out");
    assert!(find(&inv, Ecosystem::Npm, "lodash").is_none(), "lodash was under an opaque directory");
    has(&inv, Ecosystem::Npm, "express", "4.17.1", "pkg:npm/express@4.17.1");
    assert_eq!(find(&inv, Ecosystem::Npm, "express").unwrap().layer.as_deref(), Some("sha256:l3"));
    assert_eq!(inv.layers, vec!["sha256:l1", "sha256:l2", "sha256:l3"]);
}

#[test]
fn a_file_replacing_a_directory_hides_what_was_below_it() {
    let l1 = Layer::new().file("srv/node_modules/a/package.json", br#"{"name":"a","version":"1.0.0"}"#);
    let l2 = Layer::new().file("srv/node_modules", b"now a file");
    let inv = scan(&[("sha256:1", l1.tar()), ("sha256:2", l2.tar())]);
    assert!(find(&inv, Ecosystem::Npm, "a").is_none());
    // And a whiteout never removes what its own layer adds.
    let l = Layer::new().file("x/node_modules/b/package.json", br#"{"name":"b","version":"2.0.0"}"#).opaque("x/node_modules");
    let inv = scan(&[("sha256:3", l.tar())]);
    assert!(find(&inv, Ecosystem::Npm, "b").is_some());
}

#[test]
fn every_language_detector_on_real_formats() {
    let log4j = jar(Some(("org.apache.logging.log4j", "log4j-core", "2.14.1")), "Manifest-Version: 1.0\nImplementation-Title: Apache Log4j Core\n\n", &[]);
    let guava = jar(Some(("com.google.guava", "guava", "30.1-jre")), "Manifest-Version: 1.0\n\n", &[]);
    let no_pom = jar(None, "Manifest-Version: 1.0\nImplementation-Title: commons-text\nImplementation-Version: 1.9\nImplementation-Vendor-Id: org.apache.commons\n\n", &[]);
    let boot = jar(
        Some(("com.example", "app", "1.0.0")),
        "Manifest-Version: 1.0\nMain-Class: org.springframework.boot.loader.JarLauncher\n\n",
        &[("BOOT-INF/lib/log4j-core-2.14.1.jar", log4j.clone()), ("BOOT-INF/lib/guava-30.1-jre.jar", guava)],
    );
    let cargo_lock = "# This file is automatically @generated by Cargo.\nversion = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\n \"smallvec\",\n]\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"fe0f37c9e8f3c5a4a66ad655a93c74daac4ad00c441533bf5c6e7990bb42604e\"\n";
    let gemspec = "# -*- encoding: utf-8 -*-\n# stub: rake 13.0.6 ruby lib\n\nGem::Specification.new do |s|\n  s.name = \"rake\".freeze\n  s.version = \"13.0.6\"\n  s.licenses = [\"MIT\".freeze]\nend\n";
    let composer = r#"{"packages":[{"name":"guzzlehttp/guzzle","version":"7.4.0","version_normalized":"7.4.0.0"},{"name":"monolog/monolog","version":"v2.3.5"}],"dev":true}"#;
    let deps = "\u{feff}{\"runtimeTarget\":{\"name\":\".NETCoreApp,Version=v6.0\"},\"libraries\":{\"App/1.0.0\":{\"type\":\"project\"},\"Newtonsoft.Json/12.0.3\":{\"type\":\"package\",\"sha512\":\"sha512-x\"}}}";
    let apk = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\nI:622592\nT:the musl c library\nL:MIT\no:musl\n\nC:Q1def=\nP:libcrypto3\nV:3.1.4-r1\nA:x86_64\no:openssl\nL:Apache-2.0\n\n";
    let layer = Layer::new()
        .file("usr/lib/python3.11/site-packages/Jinja2-2.11.3.egg-info/PKG-INFO", b"Metadata-Version: 1.1\nName: Jinja2\nVersion: 2.11.3\n")
        .file("usr/lib/node_modules/@babel/traverse/package.json", br#"{"name":"@babel/traverse","version":"7.22.0"}"#)
        .file("usr/lib/node_modules/@babel/traverse/node_modules/debug/package.json", br#"{"name":"debug","version":"4.3.4"}"#)
        .file("usr/lib/node_modules/not-a-package/lib/package.json", br#"{"name":"inner","version":"9.9.9"}"#)
        .file("opt/app/app.jar", &boot)
        .file("opt/lib/commons-text.jar", &no_pom)
        .file("src/rust/Cargo.lock", cargo_lock.as_bytes())
        .file("usr/local/bundle/specifications/rake-13.0.6.gemspec", gemspec.as_bytes())
        .file("var/www/vendor/composer/installed.json", composer.as_bytes())
        .file("app/App.deps.json", deps.as_bytes())
        .file("lib/apk/db/installed", apk.as_bytes());
    let inv = scan(&[("sha256:one", layer.gzip())]);
    assert!(inv.problems.is_empty(), "{:#?}", inv.problems);
    has(&inv, Ecosystem::Pypi, "Jinja2", "2.11.3", "pkg:pypi/jinja2@2.11.3");
    has(&inv, Ecosystem::Npm, "@babel/traverse", "7.22.0", "pkg:npm/%40babel/traverse@7.22.0");
    has(&inv, Ecosystem::Npm, "debug", "4.3.4", "pkg:npm/debug@4.3.4");
    assert!(find(&inv, Ecosystem::Npm, "inner").is_none(), "package.json outside a package directory");
    has(&inv, Ecosystem::Maven, "com.example:app", "1.0.0", "pkg:maven/com.example/app@1.0.0");
    has(&inv, Ecosystem::Maven, "org.apache.logging.log4j:log4j-core", "2.14.1", "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1");
    let nested = find(&inv, Ecosystem::Maven, "org.apache.logging.log4j:log4j-core").unwrap();
    assert_eq!(nested.path, "opt/app/app.jar!/BOOT-INF/lib/log4j-core-2.14.1.jar");
    has(&inv, Ecosystem::Maven, "com.google.guava:guava", "30.1-jre", "pkg:maven/com.google.guava/guava@30.1-jre");
    has(&inv, Ecosystem::Maven, "org.apache.commons:commons-text", "1.9", "pkg:maven/org.apache.commons/commons-text@1.9");
    has(&inv, Ecosystem::Cargo, "smallvec", "1.6.0", "pkg:cargo/smallvec@1.6.0");
    assert!(find(&inv, Ecosystem::Cargo, "app").is_none(), "the workspace's own crate is not a dependency");
    has(&inv, Ecosystem::Gem, "rake", "13.0.6", "pkg:gem/rake@13.0.6");
    has(&inv, Ecosystem::Composer, "guzzlehttp/guzzle", "7.4.0", "pkg:composer/guzzlehttp/guzzle@7.4.0");
    has(&inv, Ecosystem::Composer, "monolog/monolog", "2.3.5", "pkg:composer/monolog/monolog@2.3.5");
    has(&inv, Ecosystem::Nuget, "Newtonsoft.Json", "12.0.3", "pkg:nuget/Newtonsoft.Json@12.0.3");
    assert!(find(&inv, Ecosystem::Nuget, "App").is_none());
    has(&inv, Ecosystem::Apk, "libcrypto3", "3.1.4-r1", "pkg:apk/alpine/libcrypto3@3.1.4-r1?arch=x86_64&upstream=openssl");
    for p in &inv.packages {
        assert_eq!(p.layer.as_deref(), Some("sha256:one"), "{}", p.name);
    }
}

#[test]
fn distroless_status_d_and_alpine_os_release() {
    let layer = Layer::new()
        .file("etc/os-release", b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n")
        .file("var/lib/dpkg/status.d/base-files", dpkg_stanza("base-files", "12.4+deb12u5", None, "install ok installed").as_bytes())
        .file("var/lib/dpkg/status.d/tzdata", b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n")
        .file("var/lib/dpkg/status.d/tzdata.md5sums", b"abc  usr/share/zoneinfo/UTC\n");
    let inv = scan(&[("sha256:d", layer.tar())]);
    assert_eq!(inv.os.as_ref().unwrap().osv_ecosystems(), vec!["Alpine:v3.19"]);
    assert!(find(&inv, Ecosystem::Deb, "tzdata").is_some());
    assert!(find(&inv, Ecosystem::Deb, "base-files").is_some());
    assert_eq!(inv.packages.len(), 2);
}

#[test]
fn a_rootfs_directory_scans_like_a_layer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::create_dir_all(root.join("srv/node_modules/minimist")).unwrap();
    std::fs::write(root.join("etc/os-release"), OS_RELEASE_DEBIAN).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), dpkg_stanza("zlib1g", "1:1.2.13.dfsg-1", Some("zlib"), "install ok installed")).unwrap();
    std::fs::write(root.join("srv/node_modules/minimist/package.json"), r#"{"name":"minimist","version":"1.2.5"}"#).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("srv/loop")).unwrap();
    let mut s = Scanner::new(Limits::default());
    s.add_dir(root);
    let inv = s.finish();
    assert!(inv.problems.is_empty(), "{:#?}", inv.problems);
    has(&inv, Ecosystem::Deb, "zlib1g", "1:1.2.13.dfsg-1", "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib");
    has(&inv, Ecosystem::Npm, "minimist", "1.2.5", "pkg:npm/minimist@1.2.5");
    assert!(inv.packages.iter().all(|p| p.layer.is_none()));
}
