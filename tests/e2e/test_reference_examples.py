"""Every Python example of the API documents our users' code is written against (``../shared/reference``),
run as its own program against a live hub + inference service, with only the base URL, the API key and
the model names changed. The vision examples ask two tiny random-weight LLaVAs (NeXT and 1.5) about pictures: the
http one from a local image server the service's allow-list permits (there is no internet here), the base64 one
from a JPEG written in place of the document's ``/path/to/example_image.jpg``.

The function-calling examples use ``tool_choice`` "auto" at temperature 0.7 and 1: whether to call is the
135M model's choice, so both outcomes are accepted, each checked (a call must name the example's function
with arguments valid against its schema; a reply must be text); the calls themselves are enforced and
compared streamed / not streamed in tests/inference/test_server_tools.py.

The examples are read from the documents themselves, so an example added there is noticed here.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from accounts.models import ServedModel, UsageRecord
from tests.support.images import photo
from tests.support.live import CHAT, EMBED, VISION_15, VISION_NEXT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# A copy of ../shared/reference, kept in the repository so that a clean clone can run this: byte for byte (ruff
# leaves it alone), so the examples run are the published ones, their odd indentation and spacing included.
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"
PUBLISHED_SHA256 = {
    "lightllm-openai-api.rst": "91db0c017a12ed98f8917ed063f7a8a580e5c5caa9af438cb431c7ff52803611",
    "tsystems-llm-serving-api.md": "c24a372e402475774465be0f2e0febf0656f688330b258b433c1dc2d2eac3b9b",
}

# The model names of the documents, and ours in their place.
MODELS = {
    "your_model_name": CHAT,
    "Llama-3.1-70B-Instruct": CHAT,
    "gpt-4-turbo-128k-france": CHAT,
    "jina-embeddings-v2-base-de": EMBED,
    # both of the document's models are LLaVA-NeXT; one is served by a LLaVA-1.5 here, so both kinds are run
    "llava-v1.6-vicuna-13b": VISION_NEXT,
    "llava-v1.6-34b": VISION_15,
}


def python_blocks(path: Path) -> list[str]:
    """The Python code blocks of a reStructuredText or Markdown (MDX) document, dedented."""
    text = path.read_text()
    if path.suffix == ".rst":
        pattern = r"^\.\. code-block:: python\n\n((?:[ \t]+[^\n]*(?:\n|\Z)|\n)+)"
    else:
        pattern = r"^[ \t]*```py(?:thon)?[^\n]*\n(.*?)^[ \t]*```[ \t]*$"
    return [textwrap.dedent(block).strip() + "\n" for block in re.findall(pattern, text, re.M | re.S)]


LIGHTLLM = python_blocks(REFERENCE / "lightllm-openai-api.rst")
TSYSTEMS = python_blocks(REFERENCE / "tsystems-llm-serving-api.md")


WEB_IMAGE = (
    "https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-boardwalk.jpg/"
    "2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg"
)
LOCAL_IMAGE = "/path/to/example_image.jpg"


def adapt(code: str, hub_url: str, secret: str, images: dict[str, str] | None = None) -> str:
    """Only the base URL, the API key and the model names change (and the images' places, in ``images``)."""
    for theirs, ours in (images or {}).items():
        code = code.replace(theirs, ours)
    code = code.replace("http://localhost:8088", hub_url).replace("https://llm-server.llmhub.t-systems.net", hub_url)
    # the LightLLM examples send no key: ours goes into their headers
    code = code.replace(
        'headers = {"Content-Type": "application/json"}',
        f'headers = {{"Content-Type": "application/json", "Authorization": "Bearer {secret}"}}',
    )
    for theirs, ours in MODELS.items():
        code = re.sub(rf"""(["']){re.escape(theirs)}\1""", f'"{ours}"', code)
    return code


@dataclass
class Example:
    name: str
    code: str  # the blocks that make up the program, in the document's order
    expect: list[str]  # what its output must contain
    calls: int  # requests it makes that reach a model (each must be metered)
    check: Callable[[str, list[UsageRecord]], None] | None = None  # more checks of its output and usage rows


def _tools_of(code: str) -> dict[str, dict]:
    """The example's own tool definitions (name -> parameters schema), read from its source."""
    source = code[code.index("tools = [") + len("tools = ") :]
    tree = ast.parse(source[: source.index("\n]") + 2])
    return {t["function"]["name"]: t["function"]["parameters"] for t in ast.literal_eval(tree.body[0].value)}


def _validate_arguments(raw: str, schema: dict, record: UsageRecord, max_tokens: int | None) -> None:
    """Arguments valid against the function's schema, or cut off where the answer reached its token limit.

    The grammar keeps a call's arguments valid as they are written, but a small model can loop inside a string
    until the limit stops it (seen before objects were closed to unnamed properties: 1,000 tokens of an invented
    "description"). OpenAI returns such a call as it stands, with finish_reason "length"; so do we. Only the limit
    may end arguments early: the request's ``max_tokens``, else the model's (its catalog limit, or what the context
    leaves after the prompt)."""
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError:
        if max_tokens is None:
            model = ServedModel.objects.get(id=record.model)  # its primary key is the model's id
            room = model.max_sequence_length - record.prompt_tokens
            max_tokens = min(model.max_output_length, room) if model.max_output_length else room  # 0: no own limit
        assert raw.startswith("{") and record.completion_tokens == max_tokens, (raw, record.completion_tokens)
        return
    jsonschema.validate(arguments, schema)


def _lightllm_call(output: str, records: list[UsageRecord]) -> None:
    """Either a reply or calls of the example's function with schema-valid arguments."""
    schemas = _tools_of(LIGHTLLM[2])
    if output.startswith("Reply: "):
        assert output[len("Reply: ") :].strip(), output
        return
    names = re.findall(r"^Function name: (.*)$", output, re.M)
    arguments = re.findall(r"^Arguments: (.*)$", output, re.M)
    assert output.startswith("Model decided to call functions:") and names and len(names) == len(arguments), output
    max_tokens = int(re.search(r'"max_tokens": (\d+)', LIGHTLLM[2]).group(1))  # the example's own: 1000
    for name, raw in zip(names, arguments, strict=True):
        _validate_arguments(raw, schemas[name], records[0], max_tokens)


def _tsystems_call(output: str, records: list[UsageRecord]) -> None:
    """The printed ``ChatCompletionMessage``: content, or tool calls of the example's function."""
    schemas = _tools_of(TSYSTEMS[4])
    assert "ChatCompletionMessage(" in output, output
    output = output[output.index("ChatCompletionMessage(") :]  # after the client's preamble (version, models)
    assert "role='assistant'" in output, output
    if "tool_calls=None" in output:
        assert "content=None" not in output, output
        return
    # Text the model wrote before its call is the message's content, as vLLM's tool parsers and OpenAI
    # return it, so content may be None or that text.
    # the arguments as Python's repr printed them (quotes and backslashes escaped): read back as the string literal
    found = re.findall(r"""Function\(arguments=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"), name='(\w+)'""", output)
    assert found, output
    for literal, name in found:
        _validate_arguments(ast.literal_eval(literal), schemas[name], records[0], None)  # it sets no max_tokens


def _only_vision_models(output: str, records: list[UsageRecord]) -> None:
    listed = output.split("==========Available models==========")[1].split()
    assert sorted(listed) == sorted([VISION_NEXT, VISION_15]), output


def _examples() -> list:
    t_client, t_vision_client = TSYSTEMS[0], TSYSTEMS[5]
    cases = [
        Example("lightllm: simple conversation", LIGHTLLM[0], ["Reply: "], 1),
        Example("lightllm: streaming conversation", LIGHTLLM[1], [], 1),
        Example("tsystems: list models (/v2)", t_client, [CHAT, EMBED, "==========Available models=========="], 0),
        Example("tsystems: chat completion, streamed", t_client + TSYSTEMS[1], [], 1),
        Example("tsystems: completion, streamed", t_client + TSYSTEMS[2], [], 1),
        Example(
            "tsystems: embeddings",
            t_client + TSYSTEMS[3],
            ["Embedding dimension:  384", "Number of embedding vector:  5", "Token usage:  Usage(prompt_tokens="],
            1,
        ),
        Example("lightllm: basic function calling", LIGHTLLM[2], [], 1, _lightllm_call),
        Example("tsystems: function calling", t_client + TSYSTEMS[4], [], 1, _tsystems_call),
        Example("tsystems: vision models (/vision)", t_vision_client, [VISION_NEXT], 0, _only_vision_models),
        Example("tsystems: vision, image URL", t_vision_client + TSYSTEMS[6], [], 1),
        Example("tsystems: vision, base64 image", t_vision_client + TSYSTEMS[7] + TSYSTEMS[8], [], 1),
    ]
    return [pytest.param(e, id=e.name) for e in cases]


def test_the_copies_are_the_published_documents():
    """A reformatted copy once ran re-indented examples instead of the published ones."""
    for name, digest in PUBLISHED_SHA256.items():
        assert hashlib.sha256((REFERENCE / name).read_bytes()).hexdigest() == digest, name


def test_the_documents_hold_the_examples_this_file_runs():
    """Nine blocks in the T-Systems guide, four in LightLLM's; the fourth of LightLLM's (streaming function
    calling) is cut off in the document after its ``tools`` list and calls nothing, so it is not run."""
    assert len(TSYSTEMS) == 9 and len(LIGHTLLM) == 4
    assert "requests.post" not in LIGHTLLM[3] and LIGHTLLM[3].rstrip().endswith("]")
    assert "def encode_image" in TSYSTEMS[7] and "client.chat.completions.create" not in TSYSTEMS[7]
    assert WEB_IMAGE in TSYSTEMS[6] and LOCAL_IMAGE in TSYSTEMS[7]  # the places adapt() swaps for local ones


# LightLLM's examples print ``print("Error:", response.status_code, response.text)`` when a request fails: that
# line, at a line's start with its status. The model's own words may hold "Error:" (a CI run's 135M model wrote
# "TypeError: Invalid argument ..." in a reply), so a bare substring search fails a good run.
EXAMPLE_ERROR = re.compile(r"^Error: \d{3} ", re.M)


def the_examples_error(output: str) -> bool:
    return EXAMPLE_ERROR.search(output) is not None


def test_an_examples_error_line_is_told_from_the_models_words():
    assert the_examples_error('Reply: hi\nError: 401 {"error": {"message": "bad key"}}\n')
    assert the_examples_error("Error: 502 <html>")
    assert not the_examples_error("ChatCompletionMessage(content='x\\n\\nTypeError: Invalid argument')")
    assert not the_examples_error("Reply: a TypeError: here\nSee Error: handling")


@pytest.mark.parametrize("example", _examples())
def test_reference_example_runs_unchanged(hub, images, tmp_path, example: Example):
    picture = tmp_path / "example_image.jpg"
    picture.write_bytes(photo(height=90, width=160))
    places = {WEB_IMAGE: f"{images.url}/photo.jpg", LOCAL_IMAGE: str(picture)}
    code = adapt(example.code, hub.url, hub.everything.secret, places)
    assert "llm-server.llmhub" not in code and "localhost:8088" not in code and "wikimedia" not in code
    script = tmp_path / "example.py"
    script.write_text(code)
    last = UsageRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, "API_KEY": hub.everything.secret},
    )  # fmt: skip
    output = run.stdout
    assert run.returncode == 0, f"{example.name} failed:\n{run.stderr[-3000:]}"
    assert not the_examples_error(output), output
    for expected in example.expect:
        assert expected in output, f"{expected!r} not in the output of {example.name}:\n{output}"
    if not example.expect:  # the streamed and conversational examples print the model's words
        assert output.strip(), f"{example.name} printed nothing"
    # every request that reached a model is metered, with counted tokens
    deadline = time.monotonic() + 10  # a stream's row is written as its relay ends, just after the last read
    while len(new := list(UsageRecord.objects.filter(id__gt=last))) < example.calls and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(new) == example.calls, [(r.route, r.status_code) for r in new]
    assert all(r.status_code == 200 and r.prompt_tokens > 0 for r in new)
    if example.check is not None:
        example.check(output, new)
