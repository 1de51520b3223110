"""The OpenAPI component schemas of OpenAI's Responses API as the hub serves it: ``POST /responses`` (the gateway,
``hub/api/responses_relay.py``) and the stored responses' routes (``hub/api/responses_views.py``). Their limits are
``hub.api.validation``'s and ``hub.api.responses_input``'s."""

from __future__ import annotations

from hub.api import tiers
from hub.api import validation as v
from hub.api.openapi_mcp import (
    MCP_APPROVAL_REQUEST,
    MCP_APPROVAL_RESPONSE,
    MCP_CALL,
    MCP_CHOICE,
    MCP_LIST_TOOLS,
    MCP_TOOL,
    MCP_TOOL_ECHO,
)
from hub.api.openapi_schemas import (
    _BOOL,
    _INT,
    _NULLABLE_STR,
    _NUM,
    _STR,
    _TEXT,
    HYBRID_SEARCH,
    METADATA,
    _obj,
    list_of,
    ref,
)
from hub.api.responses_input import EFFORTS, ROLES

_NULL = {"type": "null"}
_NULLABLE_INT = {"type": ["integer", "null"]}
_NAME = {**_STR, "minLength": 1, "maxLength": 64}
_ID = {**_STR, "description": "Given by the hub when absent (`msg_...`, `fc_...`, `fco_...`, `rs_...`, `mcpa_...`)."}
_ITEM_STATUS = {"enum": ["in_progress", "completed", "incomplete"]}


def _with_id(schema: dict) -> dict:
    return {**schema, "required": [*schema["required"], "id"]}


# --- content parts -----------------------------------------------------------------------------------------------

_INPUT_TEXT = _obj({"type": {"const": "input_text"}, "text": _TEXT}, ("type", "text"))
_INPUT_IMAGE = _obj(
    {
        "type": {"const": "input_image"},
        "image_url": {**_NULLABLE_STR, "description": "An http(s) URL or a data:image/...;base64 URL."},
        "file_id": {**_NULLABLE_STR, "description": "Or one of the tenant's files (PNG, JPEG, GIF or WebP)."},
        "detail": {"enum": ["auto", "low", "high"], "default": "auto"},
    },
    ("type",),
    description="Vision models only: `image_url` or `file_id`. `input_audio` is refused (400).",
)
_INPUT_FILE = _obj(
    {
        "type": {"const": "input_file"},
        "file_id": {**_NULLABLE_STR, "description": "One of the tenant's files (the Files API)."},
        "filename": {**_STR, "description": "The name the model sees (a stored file's own name otherwise)."},
        "file_data": {**_STR, "description": "The file, base64 (bare or as a data: URL)."},
        "file_url": {
            **_STR,
            "description": "An http(s) URL the hub fetches (public addresses only, unless the operator allows others).",
        },  # fmt: skip
        "detail": {
            "enum": ["auto", "low", "high"],
            "description": "A vision model's PDF pages: rendered 512 (low), 1,024 (auto, the default) or 1,536 (high) "
            "pixels on their longer side.",
        },
    },
    ("type",),
    description="One of `file_id`, `file_data` or `file_url`: a PDF (its text layer), a Word document, a PowerPoint "
    'deck, an Excel workbook or UTF-8 text, shown to the model as its text in `<file name="...">` ... `</file>`; a '
    "vision model also gets a PDF's pages as images after it (a scan's pages alone); anything else is a 400 "
    "`unsupported_file`.",
)
_LOGPROB = _obj(
    {
        "token": _STR, "logprob": _NUM, "bytes": {"type": "array", "items": _INT},
        "top_logprobs": {"type": "array", "items": _obj({"token": _STR, "logprob": _NUM, "bytes": {"type": "array"}})},
    },
    ("token", "logprob"),
)  # fmt: skip
_OUTPUT_TEXT = _obj(
    {
        "type": {"const": "output_text"},
        "text": _STR,
        "annotations": {"type": "array", "description": "Always empty from our inference service."},
        "logprobs": {
            "type": "array",
            "items": _LOGPROB,
            "description": 'Per token, with `top_logprobs` > 0 or `include: ["message.output_text.logprobs"]`.',
        },
    },
    ("type", "text"),
)
_REFUSAL = _obj({"type": {"const": "refusal"}, "refusal": _STR}, ("type", "refusal"))

# --- items -------------------------------------------------------------------------------------------------------

MESSAGE = _obj(
    {
        "type": {"const": "message", "description": "May be left out: an object with `role` is a message."},
        "id": _ID,
        "role": {"enum": list(ROLES)},
        "content": {
            "oneOf": [
                _TEXT,
                {"type": "array", "items": {"oneOf": [_INPUT_TEXT, _INPUT_IMAGE, _INPUT_FILE, _OUTPUT_TEXT, _REFUSAL]}},
            ],
            "description": "A string, or parts: `input_text`, `input_image` and `input_file`; an assistant's "
            "`output_text`.",
        },
        "status": _ITEM_STATUS,
    },
    ("role", "content"),
)
_FUNCTION_CALL = _obj(
    {
        "type": {"const": "function_call"},
        "id": _ID,
        "call_id": {**_STR, "minLength": 1, "description": "What the `function_call_output` answering it names."},
        "name": _STR,
        "arguments": {**_STR, "description": "A JSON object, serialised."},
        "status": _ITEM_STATUS,
    },
    ("type", "call_id", "name", "arguments"),
    description="A call the model made, as it came in the output.",
)
_FUNCTION_CALL_OUTPUT = _obj(
    {
        "type": {"const": "function_call_output"},
        "id": _ID,
        "call_id": {
            **_STR,
            "minLength": 1,
            "description": "A `function_call`'s, earlier in the conversation (this input or the stored one); "
            "400 otherwise: `No tool call found for function call output with call_id ...`.",
        },
        "output": {"oneOf": [_TEXT, {"type": "array", "items": {"oneOf": [_INPUT_TEXT, _INPUT_IMAGE]}}]},
        "status": _ITEM_STATUS,
    },
    ("type", "call_id", "output"),
    description="A function's result, given to the model as a `tool` message.",
)
_REASONING = _obj(
    {
        "type": {"const": "reasoning"},
        "id": _ID,
        "summary": {"type": "array", "items": _obj({"type": {"const": "summary_text"}, "text": _STR})},
        "content": {"type": "array", "items": _obj({"type": {"const": "reasoning_text"}, "text": _STR})},
        "status": _ITEM_STATUS,
    },
    ("type",),
    description="A reasoning model's think block. Kept in the conversation, not shown to the model again.",
)
_ITEM_REFERENCE = _obj(
    {"type": {"const": "item_reference"}, "id": _STR},
    ("type", "id"),
    description="An item of the stored conversation (`previous_response_id`) or earlier in this input, by id.",
)
_FILE_SEARCH_CALL = _obj(
    {
        "type": {"const": "file_search_call"},
        "id": _ID,
        "status": {"enum": ["in_progress", "searching", "completed", "incomplete", "failed"]},
        "queries": {"type": "array", "items": _STR},
        "results": {
            "oneOf": [
                {"type": "array", "items": _obj({"file_id": _STR, "filename": _STR, "score": _NUM, "text": _STR,
                                                 "attributes": {"type": ["object", "null"]}})},
                _NULL,
            ],
            "description": "With `include: [\"file_search_call.results\"]`; else null.",
        },
    },
    ("type", "id", "status", "queries"),
    description="A search the hub ran for the model's file_search call.",
)  # fmt: skip
COMPACTION = _obj(
    {"type": {"const": "compaction"}, "id": _ID, "encrypted_content": {**_STR, "minLength": 1}},
    ("type", "encrypted_content"),
    description="A summary `POST /responses/compact` made (signed by this hub for this tenant; others are a 400), "
    "shown to the model in place of what it replaced.",
)
ITEM = {
    "oneOf": [_with_id(MESSAGE), _with_id(_FUNCTION_CALL), _with_id(_FUNCTION_CALL_OUTPUT), _with_id(_REASONING),
              _FILE_SEARCH_CALL, _with_id(COMPACTION), MCP_LIST_TOOLS, MCP_CALL, MCP_APPROVAL_REQUEST,
              _with_id(MCP_APPROVAL_RESPONSE)]
}  # fmt: skip
_OUTPUT_ITEM = {
    "oneOf": [
        _obj(
            {
                "type": {"const": "message"},
                "id": _STR,
                "role": {"const": "assistant"},
                "content": {"type": "array", "items": {"oneOf": [_OUTPUT_TEXT, _REFUSAL]}},
                "status": _ITEM_STATUS,
            },
            ("type", "id", "role", "content", "status"),
            description="The answer's text: one `output_text` part.",
        ),
        _with_id(_FUNCTION_CALL),
        _with_id(_REASONING),
        _FILE_SEARCH_CALL,
        MCP_LIST_TOOLS,
        MCP_CALL,
        MCP_APPROVAL_REQUEST,
    ],
    "description": "In the order the model wrote them: the think block (`reasoning`), the text (`message`), each "
    "tool call (`function_call`, its `call_id` the one to answer), each search the hub ran (`file_search_call`); "
    "first the MCP servers listed (`mcp_list_tools`) and the approved calls run (`mcp_call`), then each MCP call the "
    "hub ran (`mcp_call`) or that waits for approval (`mcp_approval_request`).",
}

# --- request fields ----------------------------------------------------------------------------------------------

_TOOL = _obj(
    {
        "type": {"const": "function"},
        "name": _NAME,
        "description": _STR,
        "parameters": {"type": "object", "description": "A JSON Schema (default: no parameters)."},
        "strict": {
            **_BOOL,
            "default": True,
            "description": "The arguments are enforced by a grammar to follow `parameters` (true by default, as in "
            "OpenAI's Responses API; chat completions' default is false).",
        },
    },
    ("type", "name"),
    description="A function, in the Responses API's flat shape. Of the built-in tools `file_search` and `mcp` are "
    "run; the others (`web_search`, `computer_use_preview`, `code_interpreter`, `image_generation`, `local_shell`, "
    "`custom`...) are refused: 400 `unsupported_tool`.",
)
_FILE_SEARCH_TOOL = _obj(
    {
        "type": {"const": "file_search"},
        "vector_store_ids": {"type": "array", "items": _STR, "minItems": 1, "maxItems": 10},
        "max_num_results": {**_INT, "minimum": 1, "maximum": 50, "default": 10},
        "filters": {"type": ["object", "null"], "description": "As a vector store search's `filters`."},
        "ranking_options": _obj(
            {"ranker": _STR, "score_threshold": {**_NUM, "minimum": 0, "maximum": 1}, "hybrid_search": HYBRID_SEARCH}
        ),
    },
    ("type", "vector_store_ids"),
    description="The hub searches these vector stores (this tenant's, one embedding model) when the model asks; at "
    "most one per request, on the hub's own deployments.",
)
_NAMED = _obj({"type": {"const": "function"}, "name": _STR}, ("type", "name"))
_TOOL_CHOICE = {
    "oneOf": [
        {"enum": ["auto", "none", "required"]},
        _NAMED,
        _obj({"type": {"const": "file_search"}}, ("type",), description="Search first (the first round only)."),
        MCP_CHOICE,
        _obj(
            {
                "type": {"const": "allowed_tools"},
                "mode": {"enum": ["auto", "required"], "default": "auto"},
                "tools": {
                    "type": "array",
                    "items": {
                        "oneOf": [_obj({"type": {"const": "function"}, "name": _STR}, ("type", "name")), MCP_CHOICE]
                    },
                    "minItems": 1,
                    "maxItems": v.MAX_TOOLS,
                },
            },
            ("type", "tools"),
        ),
    ],
    "description": "Default `auto`. A named function (or each of `allowed_tools`, which narrows `tools` to them) "
    "must be in `tools`; `required` and named calls are enforced.",
}
_TEXT_FORMAT = {
    "oneOf": [
        _obj({"type": {"enum": ["text", "json_object"]}}, ("type",)),
        _obj(
            {
                "type": {"const": "json_schema"},
                "name": _NAME,
                "schema": {"type": "object"},
                "strict": _BOOL,
                "description": _STR,
            },
            ("type", "name", "schema"),
        ),
    ],
    "description": "The answer is enforced by a grammar (llguidance) to be this JSON, as chat's `response_format`.",
}
_EFFORT = {"enum": [*EFFORTS, None]}

USAGE = _obj(
    {
        "input_tokens": _INT,
        "input_tokens_details": _obj(
            {
                "cached_tokens": {**_INT, "description": "Found in the deployment's prefix cache."},
                "cache_write_tokens": {**_INT, "description": "Computed afresh (then held by the prefix cache)."},
            },
            ("cached_tokens",),
            description="Both already in `input_tokens`.",
        ),
        "output_tokens": _INT,
        "output_tokens_details": _obj(
            {"reasoning_tokens": _INT},
            ("reasoning_tokens",),
            description="A reasoning model's think block; already in `output_tokens`.",
        ),
        "total_tokens": _INT,
    },
    ("input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details", "total_tokens"),
    description="Counted by the model's tokenizer, never estimated; the hub meters exactly these (route `responses`).",
)

RESPONSES_SCHEMAS: dict[str, dict] = {
    "ResponseInputTokens": _obj(
        {"object": {"const": "response.input_tokens"}, "input_tokens": _INT}, ("object", "input_tokens")
    ),
    "CreateResponseRequest": _obj(
        {
            "model": {**_STR, "description": "A `chat` or `vision` model the key is entitled to."},
            "input": {
                "oneOf": [
                    _TEXT,
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": v.MAX_MESSAGES,
                        "items": {
                            "oneOf": [
                                MESSAGE,
                                _FUNCTION_CALL,
                                _FUNCTION_CALL_OUTPUT,
                                _REASONING,
                                _FILE_SEARCH_CALL,
                                COMPACTION,
                                _ITEM_REFERENCE,
                            ]  # fmt: skip
                        },
                    },
                ],
                "description": "A string (one user message), or items. They follow the stored conversation of "
                "`previous_response_id`, if any.",
            },
            "instructions": {
                **_TEXT,
                "description": "A system message before the context; not carried to responses that continue this one.",
            },
            "previous_response_id": {
                **_STR,
                "maxLength": v.MAX_USER_CHARS,
                "description": "A stored response of the key's tenant: its whole context (inputs and outputs) comes "
                "before `input`. 404 when there is none (another tenant's id included).",
            },
            "store": {
                **_BOOL,
                "default": True,
                "description": "Keep the response for `GET /responses/{response_id}`, its input items and "
                "`previous_response_id`, `HUB_RESPONSES_RETENTION_DAYS` days (30 by default; 0: until deleted).",
            },
            "stream": {**_BOOL, "default": False, "description": "Server-sent events (see the route); no `[DONE]`."},
            "max_output_tokens": {**_INT, "minimum": 1, "description": "At most the model's `max_output_length`."},
            "temperature": {**_NUM, "minimum": 0, "maximum": 2, "default": 1},
            "top_p": {**_NUM, "minimum": 0, "maximum": 1, "default": 1},
            "top_logprobs": {
                **_INT,
                "minimum": 0,
                "maximum": v.MAX_TOP_LOGPROBS,
                "description": "The most likely tokens at each position, in `output_text.logprobs`.",
            },
            "tools": {
                "type": "array",
                "items": {"oneOf": [_TOOL, _FILE_SEARCH_TOOL, MCP_TOOL]},
                "maxItems": v.MAX_TOOLS,
            },
            "tool_choice": _TOOL_CHOICE,
            "parallel_tool_calls": {**_BOOL, "default": True},
            "max_tool_calls": {
                **_INT,
                "minimum": 1,
                "description": "The most calls of the hub's tools (file_search, mcp) the response runs; the model's "
                "calls past it are ignored and its next round may not call tools. Passed as is to an external "
                "deployment.",
            },
            "text": _obj({"format": _TEXT_FORMAT}),
            "reasoning": _obj(
                {
                    "effort": {
                        **_EFFORT,
                        "description": "`none` turns a reasoning model's thinking off (Qwen3: `enable_thinking: "
                        "false`); the other values are echoed (and passed to an external deployment).",
                    },
                    "summary": _NULLABLE_STR,
                }
            ),
            "include": {
                "type": "array",
                "items": _STR,
                "description": "`message.output_text.logprobs` adds the tokens' logprobs to `output_text`.",
            },
            "service_tier": {
                "enum": [*tiers.TIERS, None],
                "default": "auto",
                "description": "`flex`: behind default traffic, at the model's flex share of the price; `priority`, "
                "`fast` and `scale` are served as `default`.",
            },
            "priority": {
                **_INT,
                "minimum": -tiers.MAX_PRIORITY,
                "maximum": tiers.MAX_PRIORITY,
                "default": 0,
                "description": "vLLM's: may defer the request (a larger value), never advance it.",
            },
            "truncation": {
                "enum": ["auto", "disabled"],
                "default": "disabled",
                "description": "`auto`: a context longer than the model's leaves out items from its beginning (cut "
                "before a user's message; the instructions stay) until it fits with `max_output_tokens`; the stored "
                "response keeps them all. `disabled`: a 400 `context_length_exceeded`. Passed to an external "
                "deployment.",
            },
            "metadata": {**METADATA, "description": "Kept with the response, echoed."},
            "user": {**_STR, "maxLength": v.MAX_USER_CHARS},
            "safety_identifier": {**_STR, "maxLength": v.MAX_USER_CHARS, "description": "Echoed."},
            "prompt_cache_key": {**_STR, "maxLength": v.MAX_USER_CHARS, "description": "Echoed."},
            "background": {
                "type": ["boolean", "null"],
                "description": "`true`: the response is stored and answered `queued` at once, then run by a worker "
                "(poll `GET /responses/{id}`; `POST /responses/{id}/cancel` stops it). Its limits and metering come "
                "when it runs; a worker that dies has it answered again from the start. Needs `store`. With "
                "`stream`, the request streams it (`response.created`, `response.queued`, then the run's events), "
                "and `GET /responses/{id}?stream=true&starting_after=N` streams it again; a client leaving does not "
                "stop it.",
            },
            "conversation": {
                "oneOf": [_STR, _obj({"id": _STR}, ("id",))],
                "description": "A conversation of this tenant (`conv_...`, `POST /conversations`): its items come "
                "before `input`, and this input and the output are added to it. Not with `previous_response_id`.",
            },
            "prompt": {**_NULL, "description": "Reusable prompts: refused (400 `unsupported_parameter`)."},
        },
        ("model", "input"),
    ),
    "ResponseObject": _obj(
        {
            "id": {**_STR, "description": "`resp_...`"},
            "object": {"const": "response"},
            "created_at": _INT,
            "completed_at": _NULLABLE_INT,
            "status": {
                "enum": ["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"],
                "description": "`incomplete`: cut at `max_output_tokens` (or by a content filter); `failed`: the "
                "deployment failed mid-answer (streams only: a non-streamed answer is then a 502), or a background "
                "response's run was refused (`error` says why); `queued`, `cancelled`: background responses only.",
            },
            "error": {"oneOf": [_obj({"code": _STR, "message": _STR}, ("code", "message")), _NULL]},
            "incomplete_details": {
                "oneOf": [_obj({"reason": {"enum": ["max_output_tokens", "content_filter"]}}, ("reason",)), _NULL]
            },
            "model": _STR,
            "output": {"type": "array", "items": _OUTPUT_ITEM},
            "usage": {**USAGE, "description": f"{USAGE['description']} Absent until the response ends."},
            "instructions": _NULLABLE_STR,
            "max_output_tokens": _NULLABLE_INT,
            "max_tool_calls": _NULLABLE_INT,
            "parallel_tool_calls": _BOOL,
            "previous_response_id": _NULLABLE_STR,
            "conversation": {"oneOf": [_obj({"id": _STR}, ("id",)), _NULL]},
            "temperature": _NUM,
            "top_p": _NUM,
            "top_logprobs": _INT,
            "tool_choice": _TOOL_CHOICE,
            "tools": {
                "type": "array",
                "items": {
                    "oneOf": [
                        _obj(
                            {
                                "type": {"const": "function"},
                                "name": _STR,
                                "description": _NULLABLE_STR,
                                "parameters": {"type": ["object", "null"]},
                                "strict": _BOOL,
                            },
                            ("type", "name"),
                        ),
                        _FILE_SEARCH_TOOL,
                        MCP_TOOL_ECHO,
                    ]
                },
            },
            "text": _obj({"format": _TEXT_FORMAT, "verbosity": _STR}),
            "reasoning": _obj({"effort": _EFFORT, "summary": _NULLABLE_STR}),
            "truncation": {"enum": ["auto", "disabled"]},
            "metadata": {"type": "object", "additionalProperties": _STR},
            "store": _BOOL,
            "background": _BOOL,
            "user": {**_STR, "description": "Present when the request gave one."},
            "safety_identifier": _NULLABLE_STR,
            "prompt_cache_key": _NULLABLE_STR,
            "service_tier": _STR,
        },
        ("id", "object", "created_at", "status", "model", "output"),
        description="The request's fields are echoed (with OpenAI's defaults); `store`, `previous_response_id` "
        "and `conversation` are the hub's, also for an external deployment's answer.",
    ),
    "ResponseStreamEvent": _obj(
        {
            "type": {**_STR, "description": "Also the event's SSE `event:` name."},
            "sequence_number": _INT,
            "response": ref("ResponseObject"),
            "output_index": _INT,
            "item_id": _STR,
            "content_index": _INT,
            "item": _OUTPUT_ITEM,
            "part": _OUTPUT_TEXT,
            "delta": _STR,
            "text": _STR,
            "arguments": _STR,
            "name": _STR,
            "logprobs": {"type": "array", "items": _LOGPROB},
            "code": _NULLABLE_STR,
            "message": _STR,
            "param": _NULLABLE_STR,
        },
        ("type", "sequence_number"),
        description="One `data:` of a Responses API stream, with the fields its `type` has: `response` (the "
        "response so far) in `response.created`, `.in_progress`, `.completed`, `.incomplete` and `.failed`.",
    ),
    "ResponseDeleted": _obj(
        {"id": _STR, "object": {"const": "response.deleted"}, "deleted": {"const": True}}, ("id", "object", "deleted")
    ),
    "ResponseItemList": list_of(ITEM, "Item references resolved, each with its `id`."),
}
