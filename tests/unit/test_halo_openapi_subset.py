"""The in-tree subset of Halo's OpenAPI document: complete for the client, valid, and current.

Whether it is current with the published document is ``python3 dev.py openapi PATH --check``'s question,
asked where that document is: no test reads outside the repository.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

from openapi_spec_validator import validate

from tests.utils.halo_openapi import CLIENT_PATHS, SIMULATED_PATHS, SUBSET_PATH, halo_openapi, load_halo_openapi

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "extract_halo_openapi.py"


def _tool():
    spec = importlib.util.spec_from_file_location("extract_halo_openapi", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_subset_has_every_path_the_client_calls():
    paths = load_halo_openapi()["paths"]
    for path, method in CLIENT_PATHS.items():
        assert method in paths.get(path, {}), f"{method.upper()} {path} is not in {SUBSET_PATH.name}"
    assert set(_tool().PATHS) == set(SIMULATED_PATHS)


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(template)) + "$")


def test_every_halo_call_in_the_source_is_in_the_subset():
    """Any ``"METHOD", "/integrator/..."`` call in the product's source names a path the subset has."""
    call = re.compile(r'"(GET|POST|PUT|PATCH|DELETE)",\s*f?"(/integrator/[^"?]*)')
    templates = {(method, _template_regex(path)) for path, item in load_halo_openapi()["paths"].items()
                 for method in item}
    found = []
    for package in ("reconciler", "worker", "tasks"):
        for source in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else []:
            for method, path in call.findall(source.read_text(encoding="utf-8")):
                concrete = re.sub(r"\{[^}]*\}", "3f2504e0-4f89-41d3-9a0c-0305e82c3301", path)
                found.append((method, path))
                assert any(m == method.lower() and rx.match(concrete) for m, rx in templates), (
                    f"{source.relative_to(ROOT)} calls {method} {path}, which {SUBSET_PATH.name} lacks: "
                    f"add it to tools/extract_halo_openapi.py PATHS and run python3 dev.py openapi")
    assert found, "found no Halo call in the source; has the client's calling convention changed?"


def test_subset_is_a_valid_openapi_document():
    document = load_halo_openapi()
    validate(copy.deepcopy(document))
    assert document["openapi"].startswith("3.")
    assert document["servers"] and document["info"]["version"]
    halo_openapi()  # openapi-core accepts it


def test_subset_records_its_source_and_is_rendered_deterministically():
    origin = load_halo_openapi()["info"]["x-extracted-from"]
    assert origin["version"] == load_halo_openapi()["info"]["version"]
    assert re.fullmatch(r"[0-9a-f]{64}", origin["sha256"])
    assert SUBSET_PATH.read_text(encoding="utf-8") == _tool().render(load_halo_openapi())


def test_check_says_whether_the_subset_is_current_and_writes_nothing(tmp_path):
    source, output = tmp_path / "published.json", tmp_path / "subset.json"
    source.write_text(SUBSET_PATH.read_text(encoding="utf-8"), encoding="utf-8")  # a document with every path
    tool = _tool()
    assert tool.main([str(source), "--output", str(output), "--check"]) == 1 and not output.exists()
    assert tool.main([str(source), "--output", str(output)]) == 0
    assert tool.main([str(source), "--output", str(output), "--check"]) == 0
    output.write_text(output.read_text(encoding="utf-8").replace('"3.', '"9.', 1), encoding="utf-8")
    stale = output.read_text(encoding="utf-8")
    assert tool.main([str(source), "--output", str(output), "--check"]) == 1
    assert output.read_text(encoding="utf-8") == stale  # --check wrote nothing


def test_extractor_keeps_referenced_components_transitively_and_drops_the_rest():
    source = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": "https://example.invalid"}],
        "security": [{"Key": []}],
        "tags": [{"name": "Sites"}, {"name": "Other"}],
        "paths": {
            "/integrator/sites": {"get": {
                "tags": ["Sites"],
                "parameters": [{"$ref": "#/components/parameters/Id"}],
                "responses": {"200": {"$ref": "#/components/responses/Ok"}},
            }},
            "/integrator/unused": {"get": {"tags": ["Other"], "responses": {
                "200": {"$ref": "#/components/responses/Unused"}}}},
        },
        "components": {
            "parameters": {"Id": {"name": "id", "in": "query", "schema": {"$ref": "#/components/schemas/Id"}}},
            "responses": {
                "Ok": {"description": "ok", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Pet"}}}},
                "Unused": {"description": "no"},
            },
            "schemas": {
                "Id": {"type": "string"},
                "Pet": {"oneOf": [{"$ref": "#/components/schemas/Cat"}],
                        "discriminator": {"propertyName": "kind", "mapping": {"dog": "#/components/schemas/Dog"}}},
                "Cat": {"type": "object", "properties": {"self": {"$ref": "#/components/schemas/Cat"}}},
                "Dog": {"type": "object"},
                "Unused": {"type": "object"},
            },
            "securitySchemes": {"Key": {"type": "apiKey", "in": "header", "name": "k"},
                                "Other": {"type": "apiKey", "in": "header", "name": "o"}},
        },
    }
    raw = json.dumps(source).encode()
    subset = _tool().extract(raw, paths=("/integrator/sites",))
    assert list(subset["paths"]) == ["/integrator/sites"]
    assert {k: sorted(v) for k, v in subset["components"].items()} == {
        "parameters": ["Id"], "responses": ["Ok"], "schemas": ["Cat", "Dog", "Id", "Pet"], "securitySchemes": ["Key"]}
    assert subset["tags"] == [{"name": "Sites"}]
    assert subset["info"]["x-extracted-from"]["version"] == "1"
    validate(subset)
    assert _tool().render(subset) == _tool().render(_tool().extract(raw, paths=("/integrator/sites",)))
