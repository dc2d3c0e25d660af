#!/usr/bin/env python3
"""Pull-through: customs' mirror against CNCF Distribution 2.8 in proxy mode, in the same run,
both in front of the same upstream (a customs on 127.0.0.1 whose JSON access log counts what it
is asked).

For each mirror, from an empty cache:
- direct: one client pulls the image from the upstream itself (the baseline);
- cold: one client pulls it through the mirror, nothing cached;
- warm: the same pull again, everything cached;
- stampede: --clients clients pull another uncached image through the mirror at the same moment;
  the upstream's log gives the GETs each blob and the manifest received.

Clients are `herd` (crates/test-support/src/bin/herd.rs): own connection each, manifest, config,
then every layer, lengths checked, Retry-After honoured. Both mirrors pull with the gate off, since
Distribution inspects nothing; one more row measures customs' cold pull with the gate on (the
client retries until the image is inspected and allowed).

Usage: bench/mirror.py [--image-mb 64] [--clients 100]
Needs what bench/bench.py needs (it builds the release binaries and installs docker-registry).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import herd  # noqa: E402

NOTHING_GATED = {"CUSTOMS_GATE__ENABLED": "false", "CUSTOMS_INSPECTION__ENABLED": "false"}


class Upstream(bench.Customs):
    """A customs with every request in its JSON access log."""

    def __init__(self, work):
        self.log = os.path.join(work, "upstream.log")
        env = {"CUSTOMS_LOG": "customs::access=debug,warn", "CUSTOMS_LOG_FORMAT": "json", **NOTHING_GATED}
        super().__init__(os.path.join(work, "upstream"), env=env, stderr=open(self.log, "wb"))

    def requests(self):
        counts = Counter()
        with open(self.log, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                if v.get("target") == "customs::access":
                    counts[(v["fields"].get("method"), v["fields"].get("path"))] += 1
        return counts


class CustomsMirror(bench.Customs):
    prefix = "up/"

    def __init__(self, state, upstream_port, gate):
        env = {"CUSTOMS_INSPECTION__ENABLED": "true"} if gate else NOTHING_GATED
        super().__init__(state, args=("--mirror", f"up=http://127.0.0.1:{upstream_port}"), env=env)


class DistributionProxy(bench.ConfiguredDistribution):
    """Distribution 2.8 with `proxy.remoteurl`: its pull-through cache mode."""
    prefix = ""

    def __init__(self, state, upstream_port, gate=False):
        os.makedirs(os.path.join(state, "data"), exist_ok=True)
        storage = f"  filesystem:\n    rootdirectory: {state}/data\n  maintenance:\n    uploadpurging:\n      enabled: false\n"
        super().__init__(state, storage, f"proxy:\n  remoteurl: http://127.0.0.1:{upstream_port}\n")


def pull(port, repo, clients):
    out = subprocess.run([herd.HERD, f"http://127.0.0.1:{port}", repo, "v1", "--clients", str(clients),
                          "--timeout-secs", "300"], check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["failed"] == 0 and r["completed"] == clients, r
    return r


def blob_paths(port, repo):
    """The upstream paths of the manifest and of every blob of `repo`:v1."""
    _, _, body = bench.request(port, "GET", f"/v2/{repo}/manifests/v1", headers={"Accept": bench.ACCEPT})
    m = json.loads(body)
    blobs = [m["config"]["digest"]] + [layer["digest"] for layer in m["layers"]]
    return f"/v2/{repo}/manifests/v1", [f"/v2/{repo}/blobs/{d}" for d in blobs]


def run_mirror(kind, work, up, clients, gate=False):
    state = tempfile.mkdtemp(dir=work)
    m = kind(state, up.port, gate)
    try:
        r = {}
        r["direct_s"] = pull(up.port, "bench/cold", 1)["max_s"]
        r["cold_s"] = pull(m.port, m.prefix + "bench/cold", 1)["max_s"]
        if gate:
            return r
        r["warm_s"] = pull(m.port, m.prefix + "bench/cold", 1)["max_s"]
        manifest, blobs = blob_paths(up.port, "bench/stampede")
        before = up.requests()
        s = pull(m.port, m.prefix + "bench/stampede", clients)
        after = up.requests()
        r["stampede_wall_s"] = s["wall_s"]
        r["stampede_p50_s"] = s["p50_s"]
        r["stampede_max_s"] = s["max_s"]
        r["upstream_manifest_gets"] = after[("GET", manifest)] - before[("GET", manifest)]
        gets = [after[("GET", b)] - before[("GET", b)] for b in blobs]
        r["upstream_gets_per_blob_max"] = max(gets)
        r["upstream_gets_per_blob_mean"] = sum(gets) / len(gets)
        r["peak_rss_mb"] = bench.peak_rss_mb(m.pid)
        return r
    finally:
        m.stop()
        shutil.rmtree(state, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--image-mb", type=float, default=64)
    p.add_argument("--clients", type=int, default=100)
    a = p.parse_args()
    bench.ensure_tools()
    work = tempfile.mkdtemp(prefix="customs-mirror-bench-")
    up = Upstream(work)
    try:
        size = herd.seed_image(up.port, a.image_mb, "bench/cold")
        herd.seed_image(up.port, a.image_mb, "bench/stampede")
        results = {}
        for kind in (DistributionProxy, CustomsMirror):
            results[kind.name] = run_mirror(kind, work, up, a.clients)
        gated = run_mirror(CustomsMirror, work, up, a.clients, gate=True)
    finally:
        up.stop()
        shutil.rmtree(work, ignore_errors=True)

    c, d = results["customs"], results["distribution"]
    print(f"\npull-through: one {size / 1e6:.1f} MB image (config + 3 layers), {a.clients} clients "
          f"for the stampede — {os.cpu_count()} cores, loopback")
    print(f"{'':<44}{'customs':>12}{'distribution':>14}")
    rows = [("direct pull from the upstream, s", "direct_s", "{:.3f}"),
            ("cold pull through the mirror, s", "cold_s", "{:.3f}"),
            ("warm pull through the mirror, s", "warm_s", "{:.3f}"),
            (f"stampede of {a.clients}: wall s", "stampede_wall_s", "{:.2f}"),
            (f"stampede of {a.clients}: p50 pull s", "stampede_p50_s", "{:.2f}"),
            ("stampede: upstream manifest GETs", "upstream_manifest_gets", "{:.0f}"),
            ("stampede: upstream GETs per blob (max)", "upstream_gets_per_blob_max", "{:.0f}"),
            ("stampede: upstream GETs per blob (mean)", "upstream_gets_per_blob_mean", "{:.1f}"),
            ("mirror peak RSS MB", "peak_rss_mb", "{:.1f}")]
    for label, key, fmt in rows:
        print(f"{label:<44}{fmt.format(c[key]):>12}{fmt.format(d[key]):>14}")
    print(f"{'customs cold pull, gate on (inspected first), s':<44}{gated['cold_s']:>12.3f}"
          f"{'':>14}   (direct {gated['direct_s']:.3f})")
    print(json.dumps({"customs": c, "distribution": d, "customs_gate_on": gated}))


if __name__ == "__main__":
    sys.exit(main())
