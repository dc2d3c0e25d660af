#!/usr/bin/env python3
"""customs against CNCF Distribution 2.8 (Debian's docker-registry), same workload, one run.

Prints, for each registry and as a ratio customs/Distribution:
  - blob GET throughput: a 64 MiB blob, 16 concurrent connections (wrk), and the server's CPU
    seconds per GB served (on loopback the client shares the two cores; across a network the
    server's CPU per byte is what bounds it); and again with loadgen --discard, a client that
    drops bodies in the kernel (recv MSG_TRUNC) so that it takes little of the shared CPU
  - manifest GET and HEAD by tag: requests per second, 64 concurrent connections (loadgen,
    crates/test-support/src/bin/loadgen.rs: wrk 4.1 hangs on HEAD responses)
  - wall time to push a ~500 MB, 5-layer image with skopeo (fresh registry each time)
  - customs' peak RSS (VmHWM) after the push, and at the end

Usage: bench/bench.py [--seconds 10] [--push-mb 500] [--trials 2] [--blob-trials 5] [--limits default|off|on] [--layers tar|gzip]
  --limits off: admission limits so high they never engage, no per-client limits, no minimum
                body rate (the "limits off" baseline)
  --limits on:  the default admission limits, plus per-client rate limits on every route class
                (budgets too high to refuse anything here, so the checks run on every request)
  --layers gzip: push layers already compressed (skopeo sends them as they are) instead of
                uncompressed ones (skopeo gzips them on the way, as podman and docker do on push)
Needs: a release build of customs (built if missing), docker-registry, wrk, skopeo (installed if missing).
"""

import argparse
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUSTOMS = os.path.join(ROOT, "target", "release", "customs")
LOADGEN = os.path.join(ROOT, "target", "release", "loadgen")
PEER_SCRIPT = os.path.join(ROOT, "..", "shared", "peers", "start-distribution.sh")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ",".join([OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json"])


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def ensure_tools():
    need = [pkg for tool, pkg in [("wrk", "wrk"), ("skopeo", "skopeo"), ("docker-registry", "docker-registry")]
            if shutil.which(tool) is None]
    if need:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(*sudo, "apt-get", "update", "-qq")
        sh(*sudo, "apt-get", "install", "-y", "-qq", *need, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    sh("cargo", "build", "--release", "-p", "customs", "-p", "test-support", "--bin", "customs", "--bin", "loadgen", "--bin", "herd", cwd=ROOT)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLASSES = ("manifest_read", "blob_read", "upload", "write", "api")
LIMITS_ENV = {
    "default": {},
    "off": {**{f"CUSTOMS_ADMISSION__{c.upper()}__CONCURRENCY": "1000000" for c in CLASSES},
            "CUSTOMS_HTTP__MAX_UPLOADS_PER_CLIENT": "0", "CUSTOMS_HTTP__MIN_BODY_BYTES_PER_SEC": "0"},
    "on": {**{f"CUSTOMS_RATE__{c.upper()}__PER_SECOND": "10000000" for c in CLASSES},
           **{f"CUSTOMS_RATE__{c.upper()}__BURST": "10000000" for c in CLASSES}},
}
# The registry-core benchmarks compare serving with Distribution, which inspects nothing: the
# background inspection of pushed images is off here (bench/scan.py measures inspection).
CUSTOMS_ENV = {"CUSTOMS_INSPECTION__ENABLED": "false"}


class Customs:
    name = "customs"

    def __init__(self, state, args=(), env=None, stderr=subprocess.DEVNULL):
        """`args` after `serve ...`; `env` over CUSTOMS_ENV; `stderr` receives the log."""
        self.port = free_port()
        self.proc = subprocess.Popen([CUSTOMS, "serve", "--listen", f"127.0.0.1:{self.port}", "--data", state, *args],
                                     stdout=subprocess.PIPE, stderr=stderr,
                                     env={**os.environ, "CUSTOMS_LOG": "warn", **CUSTOMS_ENV, **(env or {})})
        line = self.proc.stdout.readline().decode()
        assert line.startswith("customs listening"), line
        self.pid = self.proc.pid

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


class Distribution:
    name = "distribution"

    def __init__(self, state):
        self.port = free_port()
        out = subprocess.run(["bash", PEER_SCRIPT, str(self.port), state], check=True, capture_output=True, text=True)
        self.pid = int(out.stdout.strip().splitlines()[-1])

    def stop(self):
        os.kill(self.pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


class ConfiguredDistribution:
    """Distribution 2.8 from a config of the bench's own: `storage` is the YAML under `storage:`
    beside the in-memory descriptor cache (two-space indented), `extra` more top-level YAML."""
    name = "distribution"

    def __init__(self, state, storage, extra=""):
        self.port = free_port()
        config = os.path.join(state, "config.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  cache:\n    blobdescriptor: inmemory\n{storage}"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n{extra}")
        log = os.path.join(state, "log")
        # The AWS SDK of its S3 driver refuses to start when AWS_CA_BUNDLE is set.
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        binary = os.environ.get("DISTRIBUTION_BIN", "/usr/bin/docker-registry")
        self.proc = subprocess.Popen([binary, "serve", config], stdout=subprocess.DEVNULL, stderr=open(log, "wb"), env=env)
        self.pid = self.proc.pid
        for _ in range(100):
            try:
                if request(self.port, "GET", "/v2/")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"distribution did not start: {open(log).read()}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def cpu_seconds(pid):
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """The largest anonymous and file-backed resident sizes of a process, sampled every 50 ms."""

    def __init__(self, pid):
        self.pid, self.peak, self.done = pid, {"RssAnon": 0, "RssFile": 0}, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(0.05):
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    key = line.split(":")[0]
                    if key in self.peak:
                        self.peak[key] = max(self.peak[key], int(line.split()[1]) / 1024)

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.peak


def request(port, method, path, body=b"", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def push_blob(port, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, body = request(port, "POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202, (status, body)
    loc = headers["location"]
    if loc.startswith("http"):
        loc = "/" + loc.split("/", 3)[3]
    sep = "&" if "?" in loc else "?"
    status, _, body = request(port, "PUT", f"{loc}{sep}digest={digest}", data,
                              {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    assert status == 201, (status, body)
    return digest


def seed_fixtures(port, big_blob):
    """A 64 MiB blob and a small tagged image in repo bench/app."""
    blob = push_blob(port, "bench/app", big_blob)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cfg = push_blob(port, "bench/app", config)
    layer = os.urandom(4096)
    lyr = push_blob(port, "bench/app", layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": lyr, "size": len(layer)}],
    }, indent=2).encode()
    status, _, body = request(port, "PUT", "/v2/bench/app/manifests/latest", manifest, {"Content-Type": OCI_MANIFEST})
    assert status == 201, (status, body)
    status, _, got = request(port, "GET", "/v2/bench/app/manifests/latest", headers={"Accept": ACCEPT})
    assert status == 200 and got == manifest, (status, got[:200])
    return blob


def wrk(url, conns, seconds, method="GET", headers=()):
    script = None
    args = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--timeout", "30s"]
    for h in headers:
        args += ["-H", h]
    if method != "GET":
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(f'wrk.method = "{method}"\n')
        script.close()
        args += ["-s", script.name]
    out = subprocess.run(args + [url], check=True, capture_output=True, text=True).stdout
    if script:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} non-2xx responses\n{out}")
    return rps


def loadgen(url, conns, seconds, method="GET", headers=(), discard=False):
    """Manifest reads (wrk 4.1 cannot time HEAD) and blob reads with bodies dropped in the kernel."""
    args = [LOADGEN, url, "--method", method, "--connections", str(conns), "--seconds", str(seconds)]
    for h in headers:
        args += ["--header", h]
    if discard:
        args.append("--discard")
    out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    if out["non2xx"]:
        raise SystemExit(f"{url}: {out['non2xx']} non-2xx responses")
    return out


def make_push_image(dir_, total_mb, layers=5, compressed=False):
    """An OCI layout with `layers` tar layers of random bytes, ~total_mb in all.

    Uncompressed layers are compressed by skopeo as it pushes them (as podman and docker compress
    a local image's layers on push); `compressed` layers (gzip, level 1) are sent as they are (as
    when an image built elsewhere, or pulled, is copied on)."""
    blobs = os.path.join(dir_, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return "sha256:" + d, len(data)

    per = total_mb * 1024 * 1024 // layers
    descs, diff_ids = [], []
    for i in range(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo(f"layer{i}/data.bin")
            info.size = per
            t.addfile(info, io.BytesIO(os.urandom(per)))
        tar = buf.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        if compressed:
            d, n = put(gzip.compress(tar, compresslevel=1, mtime=0))
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
        else:
            d, n = put(tar)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n})
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cd, cn = put(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                           "layers": descs}).encode()
    md, mn = put(manifest)
    with open(os.path.join(dir_, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(dir_, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": mn,
                                                      "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
    return sum(d["size"] for d in descs)


def time_push(kind, layout, work):
    state = tempfile.mkdtemp(dir=work)
    reg = kind(state)
    try:
        # Warm the source in the page cache so that both registries read it the same way.
        sh("sh", "-c", f"cat {layout}/blobs/sha256/* > /dev/null")
        cpu0, start = cpu_seconds(reg.pid), time.monotonic()
        sh("skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
           f"oci:{layout}:v1", f"docker://127.0.0.1:{reg.port}/bench/push:v1")
        elapsed = time.monotonic() - start
        cpu = cpu_seconds(reg.pid) - cpu0
        rss = peak_rss_mb(reg.pid)
    finally:
        reg.stop()
        shutil.rmtree(state, ignore_errors=True)
    return elapsed, rss, cpu


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--push-mb", type=int, default=500)
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--blob-trials", type=int, default=5, help="timed blob GET runs per registry, alternating")
    p.add_argument("--limits", choices=sorted(LIMITS_ENV), default="default")
    p.add_argument("--layers", choices=["tar", "gzip"], default="tar",
                   help="tar: skopeo compresses the layers as it pushes; gzip: sent as they are")
    a = p.parse_args()
    CUSTOMS_ENV.update(LIMITS_ENV[a.limits])
    ensure_tools()
    work = tempfile.mkdtemp(prefix="customs-bench-")
    results = {}
    try:
        # Push: fresh registries, alternating, best of `trials`.
        layout = os.path.join(work, "layout")
        size = make_push_image(layout, a.push_mb, compressed=a.layers == "gzip")
        pushes = {"customs": [], "distribution": []}
        push_cpu = {"customs": [], "distribution": []}
        push_rss = []
        for _ in range(a.trials):
            for kind in (Distribution, Customs):
                elapsed, rss, cpu = time_push(kind, layout, work)
                pushes[kind.name].append(elapsed)
                push_cpu[kind.name].append(cpu)
                if kind is Customs:
                    push_rss.append(rss)
        results["push_s"] = {k: min(v) for k, v in pushes.items()}
        results["push_server_cpu_s"] = {k: min(v) for k, v in push_cpu.items()}
        results["push_mb"] = size / 1e6

        # Reads: one of each, seeded with the same fixtures. Each blob is read once before it is
        # timed, so both serve it from the page cache (customs writes uploads with O_DIRECT, so a
        # blob just pushed to it is not cached yet; Distribution's is). Blob GET is timed
        # `blob_trials` times per registry, alternating, and the medians kept: this VM drifts.
        big = os.urandom(64 * 1024 * 1024)
        regs = [Distribution(tempfile.mkdtemp(dir=work)), Customs(tempfile.mkdtemp(dir=work))]
        try:
            blobs = {}
            for reg in regs:
                blobs[reg.name] = seed_fixtures(reg.port, big)
                status, _, got = request(reg.port, "GET", f"/v2/bench/app/blobs/{blobs[reg.name]}")
                assert status == 200 and got == big, status
            blob_runs, cpu_runs = {}, {}
            sampler = RssSampler(regs[1].pid)
            for _ in range(a.blob_trials):
                for reg in regs:
                    cpu0 = cpu_seconds(reg.pid)
                    blob_rps = wrk(f"http://127.0.0.1:{reg.port}/v2/bench/app/blobs/{blobs[reg.name]}", 16, a.seconds)
                    served_gb = blob_rps * a.seconds * 64 * 1024 * 1024 / 1e9
                    cpu_runs.setdefault(reg.name, []).append((cpu_seconds(reg.pid) - cpu0) / served_gb)
                    blob_runs.setdefault(reg.name, []).append(blob_rps * 64 * 1024 * 1024 / 1e6)
            results["customs_rss_mb_blob_reads"] = sampler.stop()
            results["blob_mb_s_runs"] = blob_runs
            results["blob_mb_s"] = {k: statistics.median(v) for k, v in blob_runs.items()}
            results["blob_server_cpu_s_per_gb"] = {k: statistics.median(v) for k, v in cpu_runs.items()}
            for reg in regs:
                base = f"http://127.0.0.1:{reg.port}"
                discarded = loadgen(f"{base}/v2/bench/app/blobs/{blobs[reg.name]}", 16, a.seconds, discard=True)
                results.setdefault("blob_mb_s_discarding", {})[reg.name] = discarded["body_bytes_per_s"] / 1e6
                get_rps = loadgen(f"{base}/v2/bench/app/manifests/latest", 64, a.seconds, "GET", [f"Accept: {ACCEPT}"])["rps"]
                head_rps = loadgen(f"{base}/v2/bench/app/manifests/latest", 64, a.seconds, "HEAD", [f"Accept: {ACCEPT}"])["rps"]
                results.setdefault("manifest_get_rps", {})[reg.name] = get_rps
                results.setdefault("manifest_head_rps", {})[reg.name] = head_rps
            results["customs_peak_rss_mb_end"] = peak_rss_mb(regs[1].pid)
        finally:
            for reg in regs:
                reg.stop()
        results["customs_peak_rss_mb_push"] = max(push_rss)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\ncustoms (limits: {a.limits}) vs CNCF Distribution 2.8 — {os.cpu_count()} cores, loopback, {a.seconds}s per load test")
    print(f"{'metric':<44}{'customs':>14}{'distribution':>14}{'ratio':>9}")
    rows = [(f"blob GET MB/s (64 MiB, 16 conc, median of {a.blob_trials})", "blob_mb_s", True),
            ("  server CPU seconds per GB served", "blob_server_cpu_s_per_gb", False),
            ("  MB/s, client drops bodies in kernel", "blob_mb_s_discarding", True),
            ("manifest GET req/s (64 conc)", "manifest_get_rps", True),
            ("manifest HEAD req/s (64 conc)", "manifest_head_rps", True),
            (f"push {results['push_mb']:.0f} MB, 5 layers: seconds", "push_s", False),
            ("  server CPU seconds during push", "push_server_cpu_s", False)]
    for label, key, higher_better in rows:
        c, d = results[key]["customs"], results[key]["distribution"]
        ratio = c / d if higher_better else d / c
        print(f"{label:<44}{c:>14.2f}{d:>14.2f}{ratio:>8.2f}x")
    pairs = sorted(c / d for c, d in zip(results["blob_mb_s_runs"]["customs"], results["blob_mb_s_runs"]["distribution"]))
    print(f"{'  blob GET ratio of each pair of runs':<44}{' '.join(f'{r:.2f}' for r in pairs)}")
    print(f"{'customs peak RSS after push (MB)':<44}{results['customs_peak_rss_mb_push']:>14.1f}")
    print(f"{'customs peak RSS at end (MB)':<44}{results['customs_peak_rss_mb_end']:>14.1f}")
    rss = results["customs_rss_mb_blob_reads"]
    print(f"{'  during blob GET: anonymous (MB)':<44}{rss['RssAnon']:>14.1f}")
    print(f"{'  during blob GET: file-backed (MB)':<44}{rss['RssFile']:>14.1f}  (mapped page cache of the blob being read)")
    print("(ratio: customs/distribution for rates, distribution/customs for push time; >1 means customs is better)")
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
