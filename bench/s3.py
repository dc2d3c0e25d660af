#!/usr/bin/env python3
"""customs and CNCF Distribution 2.8 with their blobs in the same S3 server, side by side.

Both registries use one S3-compatible server, a process of its own on loopback (`--store moto`:
moto's in-memory server; Distribution's driver needs ListMultipartUploads, which `--store s3s`,
s3s-fs with SigV4 checked, lacks, so that one measures customs alone), and stream blobs through
themselves (customs' default; Distribution with `redirect: disable: true`), so the figures compare
the registries' S3 paths over the same store:
  - wall time to push a ~N MB, 5-layer image with skopeo (fresh prefix each time, best of trials)
  - blob GET MB/s (64 MiB blob, 16 connections, wrk; median of trials, alternating)
The S3 server shares the machine's two cores with both, so every ratio is compressed toward 1.

Usage: bench/s3.py [--seconds 10] [--push-mb 200] [--trials 2] [--store moto|s3s]
Needs what bench/bench.py needs; builds the release `s3server` if missing.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (ROOT, ConfiguredDistribution, Customs, cpu_seconds, ensure_tools, free_port, make_push_image,  # noqa: E402
                   peak_rss_mb, request, seed_fixtures, sh, wrk)

S3SERVER = os.path.join(ROOT, "target", "release", "s3server")


class S3:
    """s3s-fs (`s3server`): real SigV4, objects as files; Distribution's driver cannot use it
    (it needs ListMultipartUploads, which s3s-fs does not implement)."""

    def __init__(self, root):
        self.proc = subprocess.Popen([S3SERVER, root], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.endpoint, self.bucket, self.key, self.secret = self.proc.stdout.readline().decode().split()
        self.pid = self.proc.pid

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Moto:
    """moto's S3 server (in memory, Python; signatures not checked): every call both registries
    make, ListMultipartUploads included."""

    def __init__(self, root):
        port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid, self.endpoint, self.bucket = self.proc.pid, f"http://127.0.0.1:{port}", "bench"
        self.key, self.secret = "AK" + os.urandom(8).hex().upper(), os.urandom(20).hex()
        import boto3
        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key, aws_secret_access_key=self.secret,
                             region_name="us-east-1").create_bucket(Bucket=self.bucket)
                return
            except Exception:
                time.sleep(0.2)
        raise SystemExit("moto did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class CustomsS3(Customs):
    name = "customs"

    def __init__(self, state, s3, prefix):
        super().__init__(state, env={
            "CUSTOMS_STORAGE__S3__BUCKET": s3.bucket, "CUSTOMS_STORAGE__S3__ENDPOINT": s3.endpoint,
            "CUSTOMS_STORAGE__S3__REGION": "us-east-1", "CUSTOMS_STORAGE__S3__PREFIX": prefix,
            "CUSTOMS_STORAGE__S3__ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": s3.key, "AWS_SECRET_ACCESS_KEY": s3.secret})


class DistributionS3(ConfiguredDistribution):
    def __init__(self, state, s3, prefix):
        super().__init__(state, f"""  s3:
    accesskey: {s3.key}
    secretkey: {s3.secret}
    region: us-east-1
    regionendpoint: {s3.endpoint}
    bucket: {s3.bucket}
    secure: false
    v4auth: true
    rootdirectory: /{prefix}
  redirect:
    disable: true
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
""")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--push-mb", type=int, default=200)
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--store", choices=["moto", "s3s"], default="moto",
                   help="moto: both registries; s3s: customs only (Distribution's driver needs calls s3s-fs lacks)")
    a = p.parse_args()
    ensure_tools()
    sh("cargo", "build", "--release", "-p", "test-support", "--bin", "s3server", cwd=ROOT)
    work = tempfile.mkdtemp(prefix="customs-bench-s3-")
    s3 = (Moto if a.store == "moto" else S3)(os.path.join(work, "s3"))
    kinds = (DistributionS3, CustomsS3) if a.store == "moto" else (CustomsS3,)
    results, runs = {}, {}
    try:
        layout = os.path.join(work, "layout")
        size = make_push_image(layout, a.push_mb)
        sh("sh", "-c", f"cat {layout}/blobs/sha256/* > /dev/null")
        n = 0
        for _ in range(a.trials):
            for kind in kinds:
                n += 1
                state = tempfile.mkdtemp(dir=work)
                reg = kind(state, s3, f"push{n}")
                try:
                    cpu0, s3cpu0, start = cpu_seconds(reg.pid), cpu_seconds(s3.pid), time.monotonic()
                    sh("skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                       f"oci:{layout}:v1", f"docker://127.0.0.1:{reg.port}/bench/push:v1")
                    elapsed = time.monotonic() - start
                    runs.setdefault("push_s", {}).setdefault(kind.name, []).append(elapsed)
                    runs.setdefault("push_server_cpu_s", {}).setdefault(kind.name, []).append(cpu_seconds(reg.pid) - cpu0)
                    runs.setdefault("push_s3_cpu_s", {}).setdefault(kind.name, []).append(cpu_seconds(s3.pid) - s3cpu0)
                    if kind is CustomsS3:
                        runs.setdefault("push_rss_mb", {}).setdefault(kind.name, []).append(peak_rss_mb(reg.pid))
                finally:
                    reg.stop()
                    shutil.rmtree(state, ignore_errors=True)
        for key in ("push_s", "push_server_cpu_s", "push_s3_cpu_s"):
            results[key] = {k: min(v) for k, v in runs[key].items()}

        big = os.urandom(64 * 1024 * 1024)
        regs = [kind(tempfile.mkdtemp(dir=work), s3, f"reads-{kind.name}") for kind in kinds]
        try:
            blobs = {reg.name: seed_fixtures(reg.port, big) for reg in regs}
            for reg in regs:
                status, _, got = request(reg.port, "GET", f"/v2/bench/app/blobs/{blobs[reg.name]}")
                assert status == 200 and got == big, status
            for _ in range(a.trials):
                for reg in regs:
                    cpu0 = cpu_seconds(reg.pid)
                    rps = wrk(f"http://127.0.0.1:{reg.port}/v2/bench/app/blobs/{blobs[reg.name]}", 16, a.seconds)
                    gb = rps * a.seconds * 64 * 1024 * 1024 / 1e9
                    runs.setdefault("blob_mb_s", {}).setdefault(reg.name, []).append(rps * 64 * 1024 * 1024 / 1e6)
                    runs.setdefault("blob_cpu_s_per_gb", {}).setdefault(reg.name, []).append((cpu_seconds(reg.pid) - cpu0) / gb)
            results["customs_peak_rss_mb"] = peak_rss_mb(regs[-1].pid)
        finally:
            for reg in regs:
                reg.stop()
        for key in ("blob_mb_s", "blob_cpu_s_per_gb"):
            results[key] = {k: statistics.median(v) for k, v in runs[key].items()}
    finally:
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\ncustoms vs CNCF Distribution 2.8, blobs in one S3 server ({a.store}) — {os.cpu_count()} cores, loopback")
    print(f"{'metric':<46}{'customs':>12}{'distribution':>14}{'ratio':>9}")
    for label, key, higher_better in [(f"push {size / 1e6:.0f} MB, 5 layers: seconds (best of {a.trials})", "push_s", False),
                                      ("  registry CPU seconds during the push", "push_server_cpu_s", False),
                                      ("  S3 server CPU seconds during the push", "push_s3_cpu_s", False),
                                      (f"blob GET MB/s (64 MiB, 16 conc, median of {a.trials})", "blob_mb_s", True),
                                      ("  registry CPU seconds per GB served", "blob_cpu_s_per_gb", False)]:
        c, d = results[key]["customs"], results[key].get("distribution")
        if d is None:
            print(f"{label:<46}{c:>12.2f}")
            continue
        print(f"{label:<46}{c:>12.2f}{d:>14.2f}{(c / d if higher_better else d / c):>8.2f}x")
    print(f"{'customs peak RSS (MB)':<46}{results['customs_peak_rss_mb']:>12.1f}")
    print("(ratio: >1 means customs is better)")
    print({k: v for k, v in runs.items()})


if __name__ == "__main__":
    sys.exit(main())
