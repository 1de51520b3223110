"""file_search citations (``hub/api/citations.py``): the markers the model writes after what a passage supports
become OpenAI's ``file_citation`` annotations at their place in the text, wherever the stream cut them; markers of
files no search returned, and text that only looks like a marker's start, pass unchanged."""

from __future__ import annotations

import pytest

from hub.api.citations import Citations, marker
from hub.api.file_search import results_text
from hub.api.responses_output import ResponseBuilder, response_object
from tests.openai_spec import assert_valid

A, B = "file-" + "a" * 24, "file-" + "b" * 24
ANSWER = f"The keeper lit the lamp.{marker(A)} Ships passed safely{marker(B)}{marker(A)}, all winter."
CLEAN = "The keeper lit the lamp. Ships passed safely, all winter."


def _citations() -> Citations:
    citations = Citations()
    citations.files.update({A: "keeper.txt", B: "ships.pdf"})
    return citations


def _whole(pieces: list[tuple[str, str]]) -> tuple[str, list[tuple[str, int]]]:
    """The text the pieces show and each citation's (file, index)."""
    text, cited = "", []
    for kind, value in pieces:
        if kind == "text":
            text += value
        else:
            cited.append((value, len(text)))
    return text, cited


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, len(ANSWER)])
def test_markers_cut_anywhere_become_the_same_citations(size):
    citations = _citations()
    pieces = []
    for start in range(0, len(ANSWER), size):
        pieces += citations.feed(ANSWER[start : start + size])
    pieces.append(("text", citations.flush()))
    text, cited = _whole(pieces)
    assert text == CLEAN
    assert cited == [(A, 24), (B, 44), (A, 44)]


def test_what_is_no_known_marker_passes_unchanged():
    citations = _citations()
    other = marker("file-" + "c" * 24)  # a file no search of this answer returned
    text = f"a < b, x<|y|>, {other} and <|file-"
    pieces = citations.feed(text)
    assert pieces == [("text", text[: -len("<|file-")])] and citations.pending == "<|file-"
    assert citations.feed("!") == [("text", "<|file-!")]  # not a marker after all
    assert citations.feed("<|fil") == [] and citations.flush() == "<|fil"


def test_the_model_reads_each_passage_with_its_marker_and_how_to_cite():
    text = results_text([{"file_id": A, "filename": "keeper.txt", "text": "The lamp."}])
    assert f"such as {marker(A)}" in text and f"[1] keeper.txt {marker(A)}:\nThe lamp." in text
    assert results_text([]) == "No results found."
    known = Citations.of([{"type": "file_search_call", "results": [{"file_id": B, "filename": "ships.pdf"}]},
                          {"type": "message", "role": "user", "content": "hi"}])  # fmt: skip
    assert known.files == {B: "ships.pdf"}


def _chunk(content: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}


def test_a_streamed_answer_carries_its_citations_as_annotations_and_events():
    body = {"model": "m", "input": "hi", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}
    builder = ResponseBuilder(response_object("resp_1", body, "m", 0, "default"), hosted=frozenset({"file_search"}),
                              citations=Citations())  # fmt: skip
    events = builder.start()
    item, started = builder.search_started()
    found = [{"file_id": A, "filename": "keeper.txt", "score": 0.9, "text": "lamp", "attributes": {}},
             {"file_id": B, "filename": "ships.pdf", "score": 0.8, "text": "ships", "attributes": {}}]  # fmt: skip
    events += started + builder.search_done(item, ["lamp"], None, found=found) + builder.next_round()
    for start in range(0, len(ANSWER), 4):
        events += builder.feed(_chunk(ANSWER[start : start + 4]))
    events += builder.feed(_chunk("<|fi", "stop"))  # cut short: shown as text
    events += builder.feed({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 30}})
    events += builder.finish()
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    [message] = [o for o in builder.response["output"] if o["type"] == "message"]
    part = message["content"][0]
    assert part["text"] == CLEAN + "<|fi"
    assert part["annotations"] == [
        {"type": "file_citation", "file_id": A, "filename": "keeper.txt", "index": 24},
        {"type": "file_citation", "file_id": B, "filename": "ships.pdf", "index": 44},
        {"type": "file_citation", "file_id": A, "filename": "keeper.txt", "index": 44},
    ]
    added = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    assert [(e["annotation_index"], e["annotation"]) for e in added] == list(enumerate(part["annotations"]))
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == part["text"]
    [done] = [e for e in events if e["type"] == "response.output_text.done"]
    assert done["text"] == part["text"]
    assert_valid("Response", builder.response)


def test_without_file_search_markers_are_plain_text():
    builder = ResponseBuilder(response_object("resp_2", {"model": "m", "input": "hi"}, "m", 0, "default"))
    builder.feed(_chunk(ANSWER, "stop"))
    builder.finish()
    part = builder.response["output"][0]["content"][0]
    assert part["text"] == ANSWER and part["annotations"] == []
