#!/usr/bin/env python3
"""Validates an SBOM with its format's own reference tooling: CycloneDX JSON against the official
1.5 schema (cyclonedx-python-lib's strict validator), SPDX 2.3 JSON by parsing and validating it
with the SPDX project's spdx-tools. Prints what is wrong and exits 1 when anything is.

usage: validate-sbom.py cyclonedx|spdx FILE
"""
import sys


def cyclonedx(path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(path).read())
    if errors:
        e = getattr(errors, "data", errors)
        where = "/".join(str(p) for p in getattr(e, "absolute_path", []))
        print(f"CycloneDX 1.5 schema: {getattr(e, 'message', e)} at /{where}")
        return 1
    return 0


def spdx(path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    document = parse_file(path)
    messages = validate_full_spdx_document(document, "SPDX-2.3")
    for m in messages:
        print(f"SPDX 2.3: {m.validation_message} ({m.context})")
    return 1 if messages else 0


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    sys.exit({"cyclonedx": cyclonedx, "spdx": spdx}[kind](path))
