#!/usr/bin/env python3
"""The floor under a push: skopeo pushes the same ~500 MB, 5-layer image to Distribution, to
customs, and to `pushsink` (crates/test-support/src/bin/pushsink.rs), a stand-in that does only
part of a registry's work: drop the bytes; hash them; hash and write them through the page cache;
also fdatasync; hash and write them with O_DIRECT and fdatasync (what customs does).

On one machine the client and the server share the CPU, so the push time of a server that does
nothing is the least any server can reach here, and each step shows what the work it adds costs.
Each target gets a fresh directory per trial; trials alternate between targets; medians printed,
with the CPU time skopeo itself used (it gzips uncompressed layers on the way, and hashes all).

Usage: bench/push_floor.py [--push-mb 500] [--trials 3] [--layers tar|gzip]
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

PUSHSINK = os.path.join(bench.ROOT, "target", "release", "pushsink")
MODES = ["discard", "hash", "hash-write", "hash-write-sync", "hash-direct-sync"]


class Sink:
    def __init__(self, mode, state):
        self.name = f"pushsink {mode}"
        self.proc = subprocess.Popen([PUSHSINK, mode, state], stdout=subprocess.PIPE)
        self.port = int(self.proc.stdout.readline())
        self.pid = self.proc.pid

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--push-mb", type=int, default=500)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--layers", choices=["tar", "gzip"], default="tar",
                   help="tar: skopeo compresses the layers as it pushes; gzip: sent as they are")
    a = p.parse_args()
    bench.ensure_tools()
    subprocess.run(["cargo", "build", "--release", "-p", "test-support", "--bin", "pushsink"], cwd=bench.ROOT, check=True)
    work = tempfile.mkdtemp(prefix="customs-push-floor-")
    targets = [("distribution", bench.Distribution), ("customs", bench.Customs)] + \
              [(f"pushsink {m}", (lambda m: lambda state: Sink(m, state))(m)) for m in MODES]
    walls = {name: [] for name, _ in targets}
    cpus = {name: [] for name, _ in targets}
    clients = {name: [] for name, _ in targets}
    try:
        layout = os.path.join(work, "layout")
        size = bench.make_push_image(layout, a.push_mb, compressed=a.layers == "gzip")
        for _ in range(a.trials):
            for name, make in targets:
                state = tempfile.mkdtemp(dir=work)
                reg = make(state)
                try:
                    bench.sh("sh", "-c", f"cat {layout}/blobs/sha256/* > /dev/null; sync")
                    client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu0, start = bench.cpu_seconds(reg.pid), time.monotonic()
                    bench.sh("skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                             f"oci:{layout}:v1", f"docker://127.0.0.1:{reg.port}/bench/push:v1")
                    walls[name].append(time.monotonic() - start)
                    cpus[name].append(bench.cpu_seconds(reg.pid) - cpu0)
                    client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    clients[name].append(client1.ru_utime + client1.ru_stime - client0.ru_utime - client0.ru_stime)
                finally:
                    reg.stop()
                    shutil.rmtree(state, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    dist = statistics.median(walls["distribution"])
    how = "compressed by skopeo on the way" if a.layers == "tar" else "gzip, sent as they are"
    print(f"\npush of {size / 1e6:.0f} MB in 5 layers ({how}) with skopeo, {os.cpu_count()} cores, loopback, median of {a.trials}")
    print(f"{'target':<28}{'seconds':>9}{'server CPU s':>14}{'skopeo CPU s':>14}{'Distribution / this':>21}")
    for name, _ in targets:
        w = statistics.median(walls[name])
        print(f"{name:<28}{w:>9.2f}{statistics.median(cpus[name]):>14.2f}{statistics.median(clients[name]):>14.2f}{dist / w:>20.2f}x")
    print("all runs (s):", {k: [round(x, 2) for x in v] for k, v in walls.items()})


if __name__ == "__main__":
    sys.exit(main())
