#!/usr/bin/env python3
"""`customs scan` of a real Debian bookworm image against the time to merely decompress and list
its layers (`gzip -dc | tar -t`, the floor any scanner pays), with customs' peak RSS.
Goals: scan <= 1.5x the listing time; peak RSS under 200 MB.

Then the cost of secret and malware scanning: an inventory-only scan (`--scanners vuln --skip-db`)
against one with secrets and malware too, on the Debian layer alone and on the whole image;
throughput is uncompressed layer bytes over the time they add. Goal: at most 30% more.

The image: a debootstrap'ed bookworm (minbase) as layer 1, a few hundred MB of Python packages
from PyPI (pip --target) as layer 2, of npm packages as layer 3; gzip'd, as an OCI layout. Built
once into the work directory and reused.

Usage: bench/scan.py [--work /tmp/customs-bench-scan] [--trials 3] [--db FILE]
Needs: root (debootstrap), network to Debian's mirror, PyPI and npm; a release build of customs.
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUSTOMS = os.path.join(ROOT, "target", "release", "customs")
PYPI = ["numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "boto3", "django", "sqlalchemy",
        "requests==2.30.0", "cryptography", "jinja2==2.11.3", "pillow", "urllib3==1.26.5"]
NPM = ["typescript", "webpack", "@babel/core", "eslint", "react", "react-dom", "next", "express@4.17.1",
       "lodash@4.17.20", "node-fetch@2.6.1", "minimist@1.2.5", "axios@0.21.1"]


def sh(cmd, **kw):
    print("+", cmd if isinstance(cmd, str) else " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, shell=isinstance(cmd, str), **kw)


def layer(src_dir, out, prefix):
    """tar.gz of src_dir's contents placed under `prefix` in the image."""
    parent = os.path.dirname(out)
    stage = os.path.join(parent, "stage")
    if prefix:
        shutil.rmtree(stage, ignore_errors=True)
        os.makedirs(os.path.join(stage, os.path.dirname(prefix)), exist_ok=True)
        os.symlink(src_dir, os.path.join(stage, prefix))
        sh(["tar", "-C", stage, "-h", "--numeric-owner", "-czf", out, prefix])
        shutil.rmtree(stage)
    else:
        sh(["tar", "-C", src_dir, "--numeric-owner", "-czf", out, "."])


def build(work):
    layout = os.path.join(work, "layout")
    if os.path.exists(os.path.join(layout, "index.json")):
        return layout
    os.makedirs(work, exist_ok=True)
    rootfs = os.path.join(work, "rootfs")
    if not os.path.exists(os.path.join(rootfs, "var/lib/dpkg/status")):
        if not shutil.which("debootstrap"):
            sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null")
        sh(["debootstrap", "--variant=minbase", "bookworm", rootfs, "http://deb.debian.org/debian"])
    py = os.path.join(work, "site-packages")
    if not os.path.isdir(py):
        sh([sys.executable, "-m", "pip", "install", "-q", "--target", py, "--only-binary=:all:"] + PYPI)
    node = os.path.join(work, "node")
    if not os.path.isdir(os.path.join(node, "node_modules")):
        os.makedirs(node, exist_ok=True)
        sh(["npm", "install", "--prefix", node, "--no-audit", "--no-fund", "--silent"] + NPM)
    layers = []
    for name, src, prefix in [("base", rootfs, ""), ("python", py, "usr/local/lib/python3.11/site-packages"),
                              ("node", os.path.join(node, "node_modules"), "srv/app/node_modules")]:
        out = os.path.join(work, f"{name}.tar.gz")
        if not os.path.exists(out):
            layer(src, out, prefix)
        layers.append(out)
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data_path=None, data=None):
        if data is None:
            data = open(data_path, "rb").read()
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + d, "size": len(data)}

    config = put(data=json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    descs = []
    for l in layers:
        d = put(data_path=l)
        d["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
        descs.append(d)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config, "layers": descs}).encode()
    m = put(data=manifest)
    m["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    m["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
    debian = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "config": config, "layers": descs[:1]}).encode()
    d = put(data=debian)
    d["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    d["annotations"] = {"org.opencontainers.image.ref.name": "debian"}
    open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
    open(os.path.join(layout, "index.json"), "w").write(json.dumps({"schemaVersion": 2, "manifests": [m, d]}))
    return layout


def uncompressed(paths):
    import zlib
    total = 0
    for p in paths:
        d = zlib.decompressobj(31)
        with open(p, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                total += len(d.decompress(chunk))
    return total


def timed(cmd, cpu=None):
    """Wall seconds and peak RSS (MB) of one child; its CPU seconds appended to `cpu` if given."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    err = p.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd} failed: {err}")
    if cpu is not None:
        cpu.append(usage.ru_utime + usage.ru_stime)
    return wall, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/customs-bench-scan")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--db", help="advisory DB (default: built from ../shared/advisories)")
    a = ap.parse_args()
    if not os.path.exists(CUSTOMS):
        sh(["cargo", "build", "--release", "-p", "customs"], cwd=ROOT)
    layout = build(a.work)
    db = a.db or os.path.join(a.work, "advisories.db")
    if not os.path.exists(db):
        shared = os.path.join(os.path.dirname(ROOT), "shared", "advisories")
        src = shared if os.path.isdir(shared) else os.path.join(ROOT, "crates/advisories/tests/data")
        sh([CUSTOMS, "db", "import", src, "--db", db], stdout=subprocess.DEVNULL)
    index = json.load(open(os.path.join(layout, "index.json")))
    manifest = json.load(open(os.path.join(layout, "blobs", "sha256", index["manifests"][0]["digest"][7:])))
    blobs = [os.path.join(layout, "blobs", "sha256", l["digest"][7:]) for l in manifest["layers"]]
    compressed = sum(os.path.getsize(b) for b in blobs)
    listing = "; ".join(f"gzip -dc {b} | tar -t >/dev/null" for b in blobs)
    base, scan, rss = [], [], []
    report = os.path.join(a.work, "report.json")
    for _ in range(a.trials):
        base.append(timed(["sh", "-c", listing])[0])
        w, r = timed([CUSTOMS, "scan", f"{layout}:bench", "--db", db, "--format", "json", "--output", report])
        scan.append(w)
        rss.append(r)
    rep = json.load(open(report))
    by_eco = {}
    for p in rep["packages"]:
        by_eco[p["ecosystem"]] = by_eco.get(p["ecosystem"], 0) + 1
    b, s = statistics.median(base), statistics.median(scan)
    print(f"image: {len(blobs)} layers, {compressed / 1e6:.0f} MB compressed; packages {by_eco}; "
          f"{len(rep['vulnerabilities'])} vulnerabilities; {len(rep['problems'])} problems")
    print(f"decompress+list (gzip -dc | tar -t): {b:.2f} s   (trials {', '.join(f'{x:.2f}' for x in base)})")
    print(f"customs scan:                        {s:.2f} s   (trials {', '.join(f'{x:.2f}' for x in scan)})")
    print(f"ratio scan / list: {s / b:.2f}x (goal <= 1.5x); customs peak RSS {max(rss):.0f} MB (goal < 200 MB)")
    # Secrets and malware on top of the inventory.
    for ref, layer_blobs in [("debian", blobs[:1]), ("bench", blobs)]:
        size = uncompressed(layer_blobs)
        inv, full, frss, icpu, fcpu = [], [], [], [], []
        for _ in range(a.trials):
            inv.append(timed([CUSTOMS, "scan", f"{layout}:{ref}", "--skip-db", "--scanners", "vuln", "--format", "json", "--output", report], icpu)[0])
            w, r = timed([CUSTOMS, "scan", f"{layout}:{ref}", "--skip-db", "--scanners", "vuln,secret,malware", "--format", "json", "--output", report], fcpu)
            full.append(w)
            frss.append(r)
        rep = json.load(open(report))
        i, f = statistics.median(inv), statistics.median(full)
        # The engines run on a second thread beside inflation; their own speed is bytes per CPU second they add.
        added_cpu = max(statistics.median(fcpu) - statistics.median(icpu), 1e-9)
        print(f"[{ref}] {size / 1e6:.0f} MB uncompressed: inventory only {i:.2f} s, + secrets + malware {f:.2f} s "
              f"(+{100 * (f - i) / i:.0f}% wall, goal <= 30%); CPU added {added_cpu:.2f} s = {size / 1e6 / added_cpu:.0f} MB/s per core; "
              f"{len(rep['secrets'])} secrets, {len(rep['malware'])} malware; peak RSS {max(frss):.0f} MB")


if __name__ == "__main__":
    main()
