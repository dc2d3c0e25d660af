#!/usr/bin/env python3
"""Manifest GET requests per second with authentication on: anonymous (a namespace granted to
anonymous), Basic credentials on every request, and a bearer token from /token, against the same
customs in one run. Goal: Basic and bearer within 10% of anonymous.

Each request is checked without a lookup: a bearer token by its signature once and then from a
bounded cache, a Basic pair by a salted digest after its first password check.

Usage: bench/auth.py [--seconds 10] [--trials 3] [--connections 64]
Needs: a release build of customs and loadgen (built if missing).
"""

import argparse
import base64
import json
import os
import secrets
import tempfile

import bench as b


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    a = p.parse_args()
    b.ensure_tools()
    admin_pw, user_pw = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    b.CUSTOMS_ENV.update({
        "CUSTOMS_AUTH__ENABLED": "true",
        "CUSTOMS_AUTH__ADMIN_USER": "admin",
        "CUSTOMS_AUTH__ADMIN_PASSWORD": "p" + admin_pw,
        "CUSTOMS_AUTH__TOKEN_TTL_SECS": "3600",
    })
    basic = lambda name, pw: "Basic " + base64.b64encode(f"{name}:{pw}".encode()).decode()
    admin = basic("admin", "p" + admin_pw)
    plain_request = b.request
    b.request = lambda port, method, path, body=b"", headers=None: plain_request(
        port, method, path, body, {**(headers or {}), "Authorization": admin})
    with tempfile.TemporaryDirectory() as state:
        server = b.Customs(os.path.join(state, "customs"))
        try:
            port = server.port
            b.seed_fixtures(port, os.urandom(1024))
            js = {"Content-Type": "application/json"}
            for path, body in [("/api/v1/users", {"name": "puller", "password": user_pw}),
                               ("/api/v1/roles", {"principal": "puller", "role": "reader", "namespace": "bench/**"}),
                               ("/api/v1/roles", {"principal": "anonymous", "role": "reader", "namespace": "bench/**"})]:
                status, _, out = b.request(port, "POST", path, json.dumps(body).encode(), js)
                assert status in (201, 204), (path, status, out)
            status, _, out = plain_request(port, "GET", "/token?service=customs&scope=repository:bench/app:pull",
                                           headers={"Authorization": basic("puller", user_pw)})
            assert status == 200, (status, out)
            token = json.loads(out)["token"]
            modes = {
                "anonymous": [],
                "basic": [f"Authorization: {basic('puller', user_pw)}"],
                "bearer": [f"Authorization: Bearer {token}"],
            }
            url = f"http://127.0.0.1:{port}/v2/bench/app/manifests/latest"
            results = {m: [] for m in modes}
            for trial in range(a.trials):
                for mode, headers in modes.items():
                    rps = b.loadgen(url, a.connections, a.seconds, "GET", [f"Accept: {b.ACCEPT}", *headers])["rps"]
                    results[mode].append(rps)
                    print(f"trial {trial + 1} {mode:9s} {rps:10.0f} req/s", flush=True)
            anon = sum(results["anonymous"]) / a.trials
            print(f"\nmanifest GET, {a.connections} connections, {a.seconds} s x {a.trials} trials (mean req/s)")
            for mode in modes:
                mean = sum(results[mode]) / a.trials
                print(f"  {mode:9s} {mean:10.0f}   {mean / anon:5.3f}x anonymous")
            print(f"customs peak RSS {b.peak_rss_mb(server.pid):.1f} MB")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
