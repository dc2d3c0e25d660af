"""Drives the oras project's Python client (oras-py, from PyPI) against a running customs.

Called by `oras_pushes_pulls_and_finds_referrers` in clients.rs, which prepared the files and the
OCI layout in WORK and checks what this script reports in WORK/report.json (and the registry's own
view of what was pushed). This script only does what an oras user would do and records what the
client saw; the assertions are the Rust test's.

usage: oras_client.py HOST WORK
"""

import json
import os
import sys
from urllib.parse import quote

import oras.client
import oras.defaults
import oras.layout
import oras.oci

host, work = sys.argv[1], sys.argv[2]
os.chdir(work)  # oras-py pushes files only from within the working directory
client = oras.client.OrasClient(hostname=host, insecure=True)
base = f"http://{host}/v2/oras/artifact"
report = {}

# An artifact of two files: the large one sent chunked (POST, PATCH with Content-Range, PUT).
SIG_TYPE = "application/vnd.customs.test.signature.v1+json"
client.push(
    target=f"{host}/oras/artifact:v1",
    files=["art/model.bin", "art/README.txt:text/plain"],
    manifest_config="art/config.json:application/vnd.customs.test.config.v1+json",
    manifest_annotations={"org.example.purpose": "oras end-to-end"},
    do_chunked=True,
    chunk_size=1 << 20,
    quiet=True,
)
manifest = client.get_manifest(f"{host}/oras/artifact:v1")
head = client.do_request(f"{base}/manifests/v1", "HEAD", headers={"Accept": oras.defaults.default_manifest_media_type})
report["artifact"] = {
    "served_digest": head.headers.get("Docker-Content-Digest"),
    # oras computes a subject's digest from the manifest as it serialises it: equal to the served
    # digest only if the registry kept the bytes it was sent.
    "subject_digest": oras.oci.Subject.from_manifest(manifest).digest,
    "config_media_type": manifest["config"]["mediaType"],
    "layer_titles": [layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]],
}
report["pulled"] = sorted(os.path.relpath(p, work) for p in client.pull(target=f"{host}/oras/artifact:v1", outdir="pulled"))

# A signature that refers to the artifact, found again through the referrers API.
subject = oras.oci.Subject.from_manifest(manifest)
client.push(
    target=f"{host}/oras/artifact:v1-sig",
    files=["art/signature.json"],
    manifest_config=f"art/config.json:{SIG_TYPE}",
    manifest_annotations={"org.example.signed-by": "test"},
    subject=subject,
    quiet=True,
)
sig = client.do_request(f"{base}/manifests/v1-sig", "HEAD", headers={"Accept": oras.defaults.default_manifest_media_type})
report["signature_digest"] = sig.headers.get("Docker-Content-Digest")
referrers = {}
for name, query in [("all", ""), ("signatures", f"?artifactType={quote(SIG_TYPE)}"), ("other", "?artifactType=application/x-other")]:
    r = client.do_request(f"{base}/referrers/{subject.digest}{query}", "GET")
    referrers[name] = {
        "status": r.status_code,
        "content_type": r.headers.get("Content-Type"),
        "filters_applied": r.headers.get("OCI-Filters-Applied"),
        "manifests": r.json().get("manifests"),
    }
report["referrers"] = referrers

# Tags: five more artifacts, each with its own manifest, listed two to a page by oras' own
# pagination (it follows the Link header), then one deleted the way oras deletes a tag.
for i in range(1, 6):
    client.push(
        target=f"{host}/oras/artifact:t{i}",
        files=["art/README.txt"],
        manifest_annotations={"org.example.build": str(i)},
        quiet=True,
    )
pages = []


def page(response):
    pages.append(response.json().get("tags") or [])
    return True


client._do_paginated_request(f"{base}/tags/list?n=2", callable=page)
report["tag_pages"] = pages
report["tags_limited"] = client.get_tags(f"{host}/oras/artifact", N=3)
report["deleted"] = client.delete_tags(f"{host}/oras/artifact", ["t2"])
report["tags_after_delete"] = client.get_tags(f"{host}/oras/artifact")

# An OCI layout with a multi-arch index: pushed in oras' dependency order (blobs, then the child
# manifests by digest, then the tagged index), chunked, and pulled back into a fresh layout.
layout = oras.layout.NewLayout("layout")
layout.push_to_registry(client, f"{host}/oras/multi:multi", tag="multi", do_chunked=True, chunk_size=64 << 10)
oras.layout.NewLayoutFromRegistry("layout-back", client, f"{host}/oras/multi:multi", tag="multi")

with open("report.json", "w") as f:
    json.dump(report, f, indent=2)
