"""Extract the response schemas our answers are checked against from OpenAI's OpenAPI document (3 MB, not
kept here) into ``responses.json``: the named schemas and every schema they reference.

python tests/openai_spec/extract.py ../shared/reference/openai-openapi.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOTS = [
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "ListModelsResponse",
    "ErrorResponse",
    "CreateTranscriptionResponseJson",
    "CreateTranscriptionResponseVerboseJson",
    "CreateTranslationResponseJson",
    "TranscriptTextDeltaEvent",
    "TranscriptTextDoneEvent",
    "SpeechAudioDeltaEvent",
    "SpeechAudioDoneEvent",
    "Response",
    "ResponseStreamEvent",
    "CompactResource",
    "ResponseItemList",
    "ChatCompletionList",
    "ChatCompletionMessageList",
    "ChatCompletionDeleted",
    "ConversationResource",
    "DeletedConversationResource",
    "ConversationItemList",
    "ConversationItem",
    "OpenAIFile",
    "ListFilesResponse",
    "DeleteFileResponse",
    "Batch",
    "ListBatchesResponse",
    "Upload",
    "UploadPart",
    "CreateModerationResponse",
    "VectorStoreObject",
    "ListVectorStoresResponse",
    "DeleteVectorStoreResponse",
    "VectorStoreFileObject",
    "ListVectorStoreFilesResponse",
    "DeleteVectorStoreFileResponse",
    "VectorStoreFileBatchObject",
    "VectorStoreSearchResultsPage",
    "VectorStoreFileContentResponse",
    "WebhookBatchCancelled",
    "WebhookBatchCompleted",
    "WebhookBatchExpired",
    "WebhookBatchFailed",
    "WebhookResponseCancelled",
    "WebhookResponseCompleted",
    "WebhookResponseFailed",
    "WebhookResponseIncomplete",
]
OUT = Path(__file__).with_name("responses.json")


def refs(node, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def main(spec_path: str) -> None:
    spec = yaml.safe_load(Path(spec_path).read_text())
    schemas = spec["components"]["schemas"]
    keep: dict[str, dict] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = schemas[name]
        found: set[str] = set()
        refs(schemas[name], found)
        todo += sorted(found - keep.keys())
    document = {"openapi": spec["openapi"], "info": spec["info"], "components": {"schemas": dict(sorted(keep.items()))}}
    OUT.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    print(f"{OUT}: {len(keep)} schemas from {spec_path} (OpenAPI {spec['openapi']}, {spec['info'].get('version')})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/openai-openapi.yaml")
