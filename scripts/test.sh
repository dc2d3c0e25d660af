#!/usr/bin/env bash
# Runs every test of customs. First installs what the tests need from Debian's packages:
# skopeo, podman and buildah (real clients for the end-to-end tests), curl (HTTP/2 and TLS
# checks) and openssl (generates the test certificates; none are committed).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in skopeo podman buildah curl openssl; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test clients: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo test --workspace --locked "$@"
