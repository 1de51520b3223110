"""Our answers checked against OpenAI's own response schemas (``responses.json``, from its OpenAPI document)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

URI = "urn:openai-openapi"


def _nullable(node):
    """OpenAPI 3.0's ``nullable: true``, which the document still uses in places, as JSON Schema says it."""
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _registry() -> Registry:
    document = _nullable(json.loads(Path(__file__).with_name("responses.json").read_text()))
    return Registry().with_resource(URI, Resource(document, specification=DRAFT202012))


def errors(schema: str, instance) -> list[str]:
    """Every way ``instance`` departs from OpenAI's schema ``schema`` (e.g. CreateChatCompletionResponse)."""
    validator = Draft202012Validator({"$ref": f"{URI}#/components/schemas/{schema}"}, registry=_registry())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def assert_valid(schema: str, instance) -> None:
    found = errors(schema, instance)
    assert not found, f"not a valid {schema}:\n" + "\n".join(found) + f"\n{json.dumps(instance)[:2000]}"
