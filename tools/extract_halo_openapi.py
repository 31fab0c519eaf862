#!/usr/bin/env python3
"""Extract the parts of Halo's published OpenAPI document that this project uses (stdlib only).

    python3 tools/extract_halo_openapi.py SOURCE [--output FILE] [--check]
    python3 dev.py openapi SOURCE [--check]   # the same

SOURCE is the published document, wherever it was downloaded to (nothing outside the repository
is assumed to exist). The output (default ``tests/data/halo-openapi-subset.json``) keeps the document's ``openapi``, ``info``,
``servers``, ``security`` and the tags of the kept operations, the paths in ``PATHS`` (every method
of each), and every component they reference, transitively (``$ref`` and discriminator mappings,
plus the security schemes named by ``security``). ``info.x-extracted-from`` records the source's
``info.version`` and sha256. ``--check`` writes nothing: it exits 1 when the subset in the tree is not
what the source gives (run it where the published document is; the test suite never reads it). The output is
deterministic: sorted keys, indent 2, one trailing newline.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "tests" / "data" / "halo-openapi-subset.json"

# The endpoints the Halo client (and the simulator) speak.
PATHS = (
    "/integrator/sites",  # GET  Find sites by PMS ID
    "/integrator/sites/{siteId}",  # GET  Get site status
    "/integrator/pair-site",  # POST Pair with a site
    "/integrator/pairSite",  # POST Pair with a site, the deprecated spelling the simulator still serves
    "/integrator/sites/{siteId}/queries/immediate",  # POST Execute immediate query
)

_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _local_refs(node: Any) -> set[str]:
    """Every local reference (``#/...``) under node: ``$ref`` values and discriminator mappings."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                if not ref.startswith("#/"):
                    raise ValueError(f"external reference not supported: {ref}")
                found.add(ref)
            mapping = item.get("discriminator", {}).get("mapping") if isinstance(item.get("discriminator"), dict) else None
            if isinstance(mapping, dict):
                found.update(v for v in mapping.values() if isinstance(v, str) and v.startswith("#/"))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _pointer(ref: str) -> tuple[str, ...]:
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/"))


def _resolve(document: dict, parts: tuple[str, ...]) -> Any:
    node: Any = document
    for part in parts:
        node = node[part]
    return node


def extract(source_bytes: bytes, paths: tuple[str, ...] = PATHS) -> dict:
    document = json.loads(source_bytes)
    missing = [p for p in paths if p not in document.get("paths", {})]
    if missing:
        raise SystemExit(f"the source document has no path(s): {', '.join(missing)}")

    subset: dict[str, Any] = {"openapi": document["openapi"], "info": copy.deepcopy(document["info"])}
    for key in ("servers", "security", "jsonSchemaDialect"):
        if key in document:
            subset[key] = copy.deepcopy(document[key])
    subset["paths"] = {p: copy.deepcopy(document["paths"][p]) for p in paths}

    # Components, transitively: start from the kept paths (and the top-level security), follow refs.
    components: dict[str, dict[str, Any]] = {}
    pending = sorted(_local_refs(subset["paths"]))
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        parts = _pointer(ref)
        if len(parts) < 3 or parts[0] != "components":
            raise ValueError(f"only references into #/components are supported: {ref}")
        target = _resolve(document, parts[:3])
        components.setdefault(parts[1], {})[parts[2]] = copy.deepcopy(target)
        pending.extend(sorted(_local_refs(target) - seen))

    schemes = document.get("components", {}).get("securitySchemes", {})
    requirements = list(subset.get("security", []))
    for item in subset["paths"].values():
        for method, operation in item.items():
            if method in _METHODS and isinstance(operation, dict):
                requirements.extend(operation.get("security", []))
    for requirement in requirements:
        for name in requirement:
            components.setdefault("securitySchemes", {})[name] = copy.deepcopy(schemes[name])
    if components:
        subset["components"] = components

    used_tags = {
        tag
        for item in subset["paths"].values()
        for method, operation in item.items()
        if method in _METHODS and isinstance(operation, dict)
        for tag in operation.get("tags", [])
    }
    tags = [copy.deepcopy(t) for t in document.get("tags", []) if t.get("name") in used_tags]
    if tags:
        subset["tags"] = tags

    subset["info"]["x-extracted-from"] = {
        "document": "integrator-openapi.json",
        "version": document["info"].get("version"),
        "sha256": hashlib.sha256(source_bytes).hexdigest(),
        "paths": list(paths),
        "by": "tools/extract_halo_openapi.py",
    }
    return subset


def render(subset: dict) -> str:
    return json.dumps(subset, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="Halo's published OpenAPI document (integrator-openapi.json)")
    parser.add_argument("--output", "-o", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where to write the subset (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the output is not what the source gives")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"no such file: {args.source}", file=sys.stderr)
        return 2
    subset = extract(args.source.read_bytes())
    if args.check:
        current = args.output.is_file() and args.output.read_text(encoding="utf-8") == render(subset)
        print(f"{args.output} is {'current with' if current else 'out of date with'} {args.source}"
              + ("" if current else ": run python3 dev.py openapi"), file=sys.stdout if current else sys.stderr)
        return 0 if current else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(subset), encoding="utf-8")
    origin = subset["info"]["x-extracted-from"]
    print(f"wrote {args.output} ({len(subset['paths'])} paths, "
          f"{sum(len(v) for v in subset.get('components', {}).values())} components) "
          f"from version {origin['version']}, sha256 {origin['sha256'][:12]}...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
