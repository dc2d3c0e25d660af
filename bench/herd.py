#!/usr/bin/env python3
"""The thundering herd: 500 clients pull the same ~20 MB image at once, customs against CNCF
Distribution 2.8 in the same run.

Each client (crates/test-support/src/bin/herd.rs) has its own connection, fetches the manifest,
the config and every layer, checks each length, and honours Retry-After on 429/503. Prints per
registry: completed and failed pulls, p50/p99/max pull time, how often clients were told to wait,
the server's peak RSS (VmHWM), and for customs the shed and rate-limited counts from /metrics.

Usage: bench/herd.py [--clients 500] [--image-mb 20] [--customs-env KEY=VALUE ...]
  e.g. --customs-env CUSTOMS_ADMISSION__BLOB_READ__CONCURRENCY=32 to watch shedding engage
Needs what bench/bench.py needs (it builds the release binaries and installs docker-registry).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

HERD = os.path.join(bench.ROOT, "target", "release", "herd")


def seed_image(port, mb, repo="herd/app"):
    """config + three layers (half, three tenths, a fifth of `mb`) under `repo`:v1."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Labels": {"repository": repo}}}).encode()
    cfg = bench.push_blob(port, repo, config)
    layers = []
    for share in (0.5, 0.3, 0.2):
        data = os.urandom(int(mb * share * 1024 * 1024))
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": bench.push_blob(port, repo, data), "size": len(data)})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": bench.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": len(config)},
        "layers": layers,
    }).encode()
    status, _, body = bench.request(port, "PUT", f"/v2/{repo}/manifests/v1", manifest,
                                    {"Content-Type": bench.OCI_MANIFEST})
    assert status == 201, (status, body)
    return sum(layer["size"] for layer in layers) + len(config)


def metric_sum(port, name):
    _, _, body = bench.request(port, "GET", "/metrics")
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body.decode(), re.M))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--image-mb", type=float, default=20)
    p.add_argument("--customs-env", action="append", default=[])
    a = p.parse_args()
    bench.CUSTOMS_ENV.update(kv.split("=", 1) for kv in a.customs_env)
    bench.ensure_tools()
    work = tempfile.mkdtemp(prefix="customs-herd-")
    results = {}
    try:
        for kind in (bench.Distribution, bench.Customs):
            reg = kind(tempfile.mkdtemp(dir=work))
            try:
                size = seed_image(reg.port, a.image_mb)
                out = subprocess.run([HERD, f"http://127.0.0.1:{reg.port}", "herd/app", "v1",
                                      "--clients", str(a.clients)], check=True, capture_output=True, text=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r["peak_rss_mb"] = bench.peak_rss_mb(reg.pid)
                r["image_mb"] = size / 1e6
                if kind is bench.Customs:
                    r["shed"] = metric_sum(reg.port, "customs_shed_total")
                    r["rate_limited"] = metric_sum(reg.port, "customs_rate_limited_total")
                results[kind.name] = r
            finally:
                reg.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    c, d = results["customs"], results["distribution"]
    print(f"\nherd: {a.clients} clients pull one {c['image_mb']:.1f} MB image at once — "
          f"{os.cpu_count()} cores, loopback")
    if a.customs_env:
        print("customs settings: " + " ".join(a.customs_env))
    print(f"{'':<30}{'customs':>12}{'distribution':>14}")
    for label, key, fmt in [("completed pulls", "completed", "{:.0f}"), ("failed pulls", "failed", "{:.0f}"),
                            ("p50 pull seconds", "p50_s", "{:.2f}"), ("p99 pull seconds", "p99_s", "{:.2f}"),
                            ("max pull seconds", "max_s", "{:.2f}"), ("wall seconds", "wall_s", "{:.2f}"),
                            ("told to wait (429/503)", "told_to_wait", "{:.0f}"),
                            ("server peak RSS MB", "peak_rss_mb", "{:.1f}")]:
        print(f"{label:<30}{fmt.format(c[key]):>12}{fmt.format(d[key]):>14}")
    print(f"{'customs shed (503) / rate-limited (429)':<30} {c['shed']:.0f} / {c['rate_limited']:.0f}")
    for name, r in results.items():
        if r["failures"]:
            print(f"{name} failures (first kinds): {r['failures']}")
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
