#!/usr/bin/env python3
"""How many small pushes a second the records take: the embedded SQLite against PostgreSQL,
on loopback and a network's round trip away.

`pushload` (crates/test-support/src/bin/pushload.rs) runs N clients that each push 4 KiB images
in a closed loop (every blob HEAD, POST, PATCH, PUT `?digest=`, then the manifest by tag), so the
bytes cost nothing and what is measured is the records' writes. PostgreSQL is a throwaway cluster
on loopback with its durability settings as shipped (fsync on, synchronous commit), as SQLite's
`synchronous=FULL`. `--delay-us D` puts it behind `delayproxy`, which holds every byte D
microseconds each way (a round trip of 2·D: 250 is 0.5 ms, a database in the same zone).

Usage: bench/records.py [--seconds 10] [--clients 32] [--delay-us 0,250] [--trials 2]
                        [--customs NAME=PATH ...]   (A/B: several builds, alternating)
Needs PostgreSQL (Debian's postgresql; scripts/test.sh installs it).
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import ROOT, Customs, free_port, sh  # noqa: E402

PUSHLOAD = os.path.join(ROOT, "target", "release", "pushload")
DELAYPROXY = os.path.join(ROOT, "target", "release", "delayproxy")


class Postgres:
    def __init__(self, root):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin, self.dir, self.port = bins[-1], root, free_port()
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_pg:
            sh("chown", "-R", "postgres:postgres", root)
        self.as_pg, self.data = as_pg, os.path.join(root, "data")
        sh(*as_pg, f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
           stdout=subprocess.DEVNULL)
        opts = f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        sh(*as_pg, f"{self.bin}/pg_ctl", "-D", self.data, "-l", os.path.join(root, "log"), "-w", "-o", opts, "start",
           stdout=subprocess.DEVNULL)
        self.databases = 0

    def database(self, via):
        self.databases += 1
        name = f"bench_{self.databases}"
        sh("psql", "-h", self.dir, "-p", str(self.port), "-U", "postgres", "-qAtc", f"CREATE DATABASE {name}")
        return f"postgres://postgres@{via}/{name}"

    def stop(self):
        sh(*self.as_pg, f"{self.bin}/pg_ctl", "-D", self.data, "-m", "fast", "stop", stdout=subprocess.DEVNULL)


def run(binary, state, env, seconds, clients):
    bench.CUSTOMS = binary
    customs = Customs(state, env={"CUSTOMS_GATE__ENABLED": "false", **env})
    try:
        out = subprocess.run([PUSHLOAD, f"http://127.0.0.1:{customs.port}", "--clients", str(clients), "--seconds", str(seconds)],
                             check=True, capture_output=True, text=True).stdout
    finally:
        customs.stop()
    result = json.loads(out)
    if result["failed_clients"]:
        sys.exit(f"pushload failed: {result['first_failure']}")
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--delay-us", default="0,250")
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--customs", action="append", default=[], help="NAME=PATH of a customs binary (repeatable)")
    a = ap.parse_args()
    builds = [tuple(c.split("=", 1)) for c in a.customs] or [("customs", bench.CUSTOMS)]
    sh("cargo", "build", "--release", "--locked", "-p", "customs", "-p", "test-support", "--bin", "customs", "--bin", "pushload",
       "--bin", "delayproxy", cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="customs-records-bench")
    os.chmod(work, 0o755)
    pg_root = os.path.join(work, "pg")
    os.mkdir(pg_root)
    pg = Postgres(pg_root)
    proxies, targets = [], [("sqlite", None)]
    try:
        for d in (int(x) for x in a.delay_us.split(",")):
            via = f"127.0.0.1:{pg.port}"
            if d:
                proxy = subprocess.Popen([DELAYPROXY, via, str(d)], stdout=subprocess.PIPE)
                proxies.append(proxy)
                via = proxy.stdout.readline().decode().strip()
            targets.append((f"postgres, {2 * d / 1000:g} ms round trip", via))
        results = {}
        runs = 0
        for trial in range(a.trials):
            for target, via in targets:
                for name, binary in builds:
                    runs += 1
                    state = os.path.join(work, f"state{runs}")
                    env = {"CUSTOMS_RECORDS__URL": pg.database(via)} if via else {}
                    r = run(binary, state, env, a.seconds, a.clients)
                    shutil.rmtree(state, ignore_errors=True)
                    print(f"trial {trial + 1} {target:<28} {name:<10} {r['images_per_s']:7.1f} images/s "
                          f"p50 {r['p50_s'] * 1000:6.1f} ms p99 {r['p99_s'] * 1000:6.1f} ms", flush=True)
                    results.setdefault((target, name), []).append(r)
        print(f"\nmedians over {a.trials} trials, {a.clients} clients, {a.seconds} s each:")
        print(f"| records | build | images/s | requests/s | p50 ms | p99 ms |\n|---|---|---:|---:|---:|---:|")
        for (target, name), rs in results.items():
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            print(f"| {target} | {name} | {med('images_per_s'):.1f} | {med('requests') / med('seconds'):.0f} | "
                  f"{med('p50_s') * 1000:.1f} | {med('p99_s') * 1000:.1f} |")
    finally:
        for p in proxies:
            p.kill()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
