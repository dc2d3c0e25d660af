#!/usr/bin/env bash
# Runs every test of customs. First installs what the tests need:
# - from Debian's packages: skopeo, podman, buildah, containerd and docker.io (real clients for the
#   end-to-end tests; containerd and dockerd run as daemons of the test's own, in its temp directory),
#   curl (HTTP/2 and TLS checks), openssl (generates the test certificates; none are committed),
#   golang-go (builds a real Go binary for the scanner), rpm (rpmbuild and an rpmdb.sqlite
#   written by rpm itself), db5.3-util (BerkeleyDB's db_load writes an rpm Packages file),
#   clamav-daemon (a real clamd, given a test signature database), chromium (headless, loads the
#   web UI's pages as a browser does) and debootstrap (a clean Debian bookworm, made once into
#   target/test-bookworm, that must show no secrets and no malware) and postgresql (the records of
#   replicas: each test makes a throwaway cluster of its own on a loopback port, see
#   test_support::Postgres);
# - from crates.io: cargo-auditable (builds a Rust binary whose dependencies the scanner reads);
# - from PyPI, into target/test-venv (its python is TEST_PYTHON): cyclonedx-python-lib and
#   spdx-tools, which validate the SBOMs customs writes against their formats, and oras (the oras
#   project's Python client; its Go CLI is in none of the package registries the test can reach).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in skopeo podman buildah containerd dockerd curl openssl go rpmbuild db5.3_load clamd debootstrap chromium; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# PostgreSQL's server is not on PATH: Debian keeps it under /usr/lib/postgresql/<version>/bin.
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  pkgs=()
  for tool in "${need[@]}"; do
    case "$tool" in
      go) pkgs+=(golang-go) ;;
      dockerd) pkgs+=(docker.io) ;;
      rpmbuild) pkgs+=(rpm) ;;
      clamd) pkgs+=(clamav-daemon) ;;
      db5.3_load) pkgs+=(db5.3-util) ;;
      *) pkgs+=("$tool") ;;
    esac
  done
  echo "installing test tools: ${pkgs[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

command -v cargo-auditable >/dev/null 2>&1 || cargo install --quiet --locked cargo-auditable

venv=target/test-venv
if ! "$venv/bin/python" -c 'import cyclonedx.validation.json, spdx_tools, oras.layout' >/dev/null 2>&1; then
  echo "installing SBOM validators and oras into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'cyclonedx-python-lib[json-validation]==8.9.0' 'spdx-tools==0.8.5' \
    'oras==0.2.43'
fi
export TEST_PYTHON="$PWD/$venv/bin/python"

bookworm=target/test-bookworm
if [ ! -f "$bookworm/var/lib/dpkg/status" ]; then
  echo "debootstrapping a clean Debian bookworm into $bookworm"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  rm -rf "$bookworm"
  $sudo debootstrap --variant=minbase bookworm "$bookworm" http://deb.debian.org/debian >/dev/null
fi
export BOOKWORM_ROOTFS="$PWD/$bookworm"

# A one-shot build (CI's fresh clone) gains nothing from rustc's incremental cache, which would
# otherwise double what target/ holds. A fresh clone's whole run took 3.7 GB at its peak (the
# build, the test venv and rootfs, the tests' temp data); say so plainly when the disk is short,
# rather than let a compiler die half-way with ENOSPC.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi
free_kb=$(df -Pk target 2>/dev/null | awk 'NR == 2 { print $4 }')
if [ -n "$free_kb" ] && [ "$free_kb" -lt $((5 * 1024 * 1024)) ]; then
  echo "warning: only $((free_kb / 1024)) MB free where target/ lives; a cold build and the tests take about 4 GB" >&2
fi

cargo test --workspace --locked "$@"
