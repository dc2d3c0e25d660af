//! Each scheme on its own ecosystem's rules, with vectors from that ecosystem's documentation and
//! test suites (dpkg's deb-version(7), rpm's rpmvercmp tests, apk-tools' version tests, PEP 440's
//! examples, semver.org, Go's module reference, Maven's ComparableVersionTest, RubyGems, NuGet).

use super::Scheme;
use std::cmp::Ordering::{self, *};

#[track_caller]
fn check(scheme: Scheme, cases: &[(&str, Ordering, &str)]) {
    for (a, want, b) in cases {
        assert_eq!(scheme.compare(a, b), Some(*want), "{scheme:?}: {a} vs {b}");
        assert_eq!(scheme.compare(b, a), Some(want.reverse()), "{scheme:?}: {b} vs {a}");
    }
}

/// Each chain must be strictly increasing, pair by pair and across.
#[track_caller]
fn increasing(scheme: Scheme, chain: &[&str]) {
    for i in 0..chain.len() {
        for j in i + 1..chain.len() {
            assert_eq!(scheme.compare(chain[i], chain[j]), Some(Less), "{scheme:?}: {} < {}", chain[i], chain[j]);
            assert_eq!(scheme.compare(chain[j], chain[i]), Some(Greater), "{scheme:?}: {} > {}", chain[j], chain[i]);
        }
    }
}

#[test]
fn dpkg_epochs_tilde_and_revisions() {
    increasing(Scheme::Dpkg, &["1.0~rc1", "1.0", "1.0-1", "1.0-1+deb12u1", "1.0-2", "1.0a", "1.0+dfsg", "1.1", "1:0.1"]);
    increasing(Scheme::Dpkg, &["2.36-9+deb12u3", "2.36-9+deb12u4", "2.36-10"]);
    increasing(Scheme::Dpkg, &["1.2.3~~", "1.2.3~~a", "1.2.3~", "1.2.3"]);
    check(
        Scheme::Dpkg,
        &[
            ("0:1.0", Equal, "1.0"),
            ("1.0-0", Equal, "1.0"),
            ("1.10", Greater, "1.9"),
            ("1.001", Equal, "1.1"),
            ("2:1.20.4-1+deb10u5", Greater, "2:1.20.4-1+deb10u4"),
            ("2:1.20.4-1+deb10u4", Greater, "1.21"),
            ("102.9.0esr-1~deb11u1", Less, "102.9.0esr-1"),
            ("1.1.1n-0+deb11u4", Greater, "1.1.1n-0+deb11u3"),
        ],
    );
    assert_eq!(Scheme::Dpkg.compare("x:1.0", "1.0"), None, "a non-numeric epoch is unreadable");
}

#[test]
fn rpm_rpmvercmp() {
    check(
        Scheme::Rpm,
        &[
            ("1.0", Equal, "1.0"),
            ("1.0", Less, "2.0"),
            ("2.0.1", Greater, "2.0"),
            ("2.0.1a", Greater, "2.0.1"),
            ("5.5p1", Less, "5.5p2"),
            ("5.5p10", Greater, "5.5p1"),
            ("10xyz", Less, "10.1xyz"),
            ("xyz10", Less, "xyz10.1"),
            ("xyz.4", Less, "8"),
            ("1.0aa", Greater, "1.0a"),
            ("1.0~rc1", Less, "1.0"),
            ("1.0~rc1", Less, "1.0~rc2"),
            ("1.0~rc1~git123", Less, "1.0~rc1"),
            ("1.0^", Greater, "1.0"),
            ("1.0^git1", Less, "1.01"),
            ("1.0^git1", Greater, "1.0"),
            ("1.0^git1~pre", Greater, "1.0"),
            ("1_0", Equal, "1.0"),
            ("1:3.0.1-43.el9_0", Greater, "1:3.0.1-42.el9_0"),
            ("1:3.0.1-43.el9_0", Greater, "3.0.7-1.el9"),
            ("3.0.7-27.el9", Less, "3.0.7-27.el9_4.alma.1"),
            ("2.34-60.el9", Less, "2.34-100.el9"),
        ],
    );
    // A release is compared only when both have one.
    assert_eq!(Scheme::Rpm.compare("3.0.1", "3.0.1-43.el9"), Some(Equal));
}

#[test]
fn apk_suffixes_letters_revisions() {
    increasing(
        Scheme::Apk,
        &["1.2_alpha", "1.2_alpha1", "1.2_beta", "1.2_pre2", "1.2_rc1", "1.2", "1.2-r1", "1.2_p1", "1.2a", "1.2.1", "1.10"],
    );
    check(
        Scheme::Apk,
        &[
            ("1.1.1g-r0", Greater, "1.1.1f-r0"),
            ("2.8.4-r0", Greater, "2.8.3-r5"),
            ("7.66.0-r0", Less, "7.66.0-r1"),
            ("1.2_git20200101-r0", Greater, "1.2-r0"),
            ("0.9.8k-r0", Less, "1.0.0-r0"),
        ],
    );
    assert_eq!(Scheme::Apk.compare("1.2_bogus", "1.2"), None);
    assert_eq!(Scheme::Apk.compare("abc", "1.2"), None);
}

#[test]
fn pep440_ordering_and_normalisation() {
    increasing(
        Scheme::Pep440,
        &[
            "1.0.dev456", "1.0a1", "1.0a2.dev456", "1.0a12.dev456", "1.0a12", "1.0b1.dev456", "1.0b2",
            "1.0b2.post345.dev456", "1.0b2.post345", "1.0rc1.dev456", "1.0rc1", "1.0", "1.0+abc.5", "1.0+abc.7",
            "1.0+5", "1.0.post456.dev34", "1.0.post456", "1.0.15", "1.1.dev1",
        ],
    );
    check(
        Scheme::Pep440,
        &[
            ("1.0", Equal, "1.0.0"),
            ("v1.0", Equal, "1.0"),
            ("1.0alpha1", Equal, "1.0a1"),
            ("1.0-c1", Equal, "1.0rc1"),
            ("1.0.preview2", Equal, "1.0rc2"),
            ("1.0-1", Equal, "1.0.post1"),
            ("1.0.rev1", Equal, "1.0.post1"),
            ("1!0.1", Greater, "2.0"),
        ],
    );
    assert_eq!(Scheme::Pep440.compare("1.0.foo", "1.0"), None);
    assert_eq!(Scheme::Pep440.compare("2.31.0", "2.31.0"), Some(Equal));
}

#[test]
fn semver_npm_crates() {
    increasing(
        Scheme::Semver,
        &["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0"],
    );
    check(Scheme::Semver, &[("1.0", Equal, "1.0.0"), ("2.4", Equal, "2.4.0"), ("1.0.0+build.5", Equal, "1.0.0"), ("4.17.21", Greater, "4.17.20")]);
    assert_eq!(Scheme::Semver.compare("1.0.x", "1.0.0"), None);
}

#[test]
fn go_prefix_pseudo_versions_incompatible() {
    increasing(
        Scheme::Go,
        &["v0.0.0-20191109021931-daa7c04131f5", "v0.1.0", "v1.2.3", "v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.4", "v2.0.0+incompatible", "v2.1.0"],
    );
    check(Scheme::Go, &[("1.19.0-0", Less, "1.19.0"), ("v1.2.3", Equal, "1.2.3"), ("v2.0.0+incompatible", Equal, "2.0.0")]);
}

#[test]
fn maven_comparable_version() {
    increasing(
        Scheme::Maven,
        &["1-alpha2snapshot", "1-alpha2", "1-alpha-123", "1-beta-2", "1-beta123", "1-m2", "1-m11", "1-rc", "1-cr2", "1-rc123", "1-SNAPSHOT", "1", "1-sp", "1-sp2", "1-sp123", "1-abc", "1-def", "1-pom-1", "1-1-snapshot", "1-1", "1-2", "1-123"],
    );
    increasing(Scheme::Maven, &["2.0-beta7", "2.0", "2.0.1", "2.4.0-rc1", "2.4.0", "2.12.6", "2.12.6.1", "2.14.1", "2.15.0", "2.17.1"]);
    check(
        Scheme::Maven,
        &[
            ("1", Equal, "1.0.0"),
            ("1-ga", Equal, "1"),
            ("1-final", Equal, "1.0"),
            ("5.2.20.RELEASE", Equal, "5.2.20"),
            ("1a1", Equal, "1-alpha-1"),
            ("1.0-cr1", Equal, "1.0-rc1"),
            ("5.3.17", Less, "5.3.18"),
            ("2.16.0", Greater, "2.15.0"),
        ],
    );
}

#[test]
fn rubygems_versions() {
    increasing(Scheme::RubyGems, &["1.0.0.a", "1.0.0.b1", "1.0.0.pre", "1.0.0.rc1", "1.0.0", "1.0.1", "1.10"]);
    check(Scheme::RubyGems, &[("1.0", Equal, "1"), ("6.1.7.3", Greater, "6.1.7.2"), ("1.0.a", Less, "1.0")]);
}

#[test]
fn nuget_four_parts_and_case() {
    increasing(Scheme::NuGet, &["1.0.0-alpha", "1.0.0-Beta", "1.0.0-rc.1", "1.0.0", "1.0.0.1", "1.0.1"]);
    check(Scheme::NuGet, &[("1.0.0-BETA", Equal, "1.0.0-beta"), ("4.0", Equal, "4.0.0.0"), ("13.0.1", Greater, "12.0.3")]);
}

#[test]
fn empty_versions_are_unreadable_everywhere() {
    for s in [Scheme::Dpkg, Scheme::Rpm, Scheme::Apk, Scheme::Pep440, Scheme::Semver, Scheme::Go, Scheme::Maven, Scheme::RubyGems, Scheme::NuGet] {
        assert_eq!(s.compare("", "1.0"), None, "{s:?}");
    }
}
