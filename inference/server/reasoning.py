"""Reasoning models (Qwen3, QwQ, DeepSeek-R1): the think block an answer starts with, returned apart from it.

A model reasons when its chat template writes ``</think>`` and its vocabulary has ``<think>`` and ``</think>``
tokens. Whether a request's answer may think follows from its prompt: Qwen3's template closes an empty block in
the generation prompt when ``chat_template_kwargs.enable_thinking`` is false (then the answer is all content),
DeepSeek-R1's opens one (then the answer starts inside it). The reasoning goes out as ``reasoning_content`` (the
name DeepSeek's API and vLLM gave it) and ``reasoning`` (vLLM's newer name), in messages and in stream deltas;
``content`` is what follows the block. Its tokens are part of ``completion_tokens``, counted once, and named in
``completion_tokens_details.reasoning_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.sampling_params import ThinkMarks

START, END = "<think>", "</think>"


@dataclass(frozen=True)
class ReasoningFormat:
    start_id: int
    end_id: int

    def marks(self, prompt_ids: list[int], stop_ids: list[int]) -> ThinkMarks | None:
        """How this prompt leaves the think block: None when the template closed it (thinking is off)."""
        stops = set(stop_ids)
        last_stop = max((i for i, t in enumerate(prompt_ids) if t in stops), default=-1)
        tail = prompt_ids[last_stop + 1 :]  # the generation prompt (and, before a first answer, the user's turn)
        start = max((i for i, t in enumerate(tail) if t == self.start_id), default=-1)
        end = max((i for i, t in enumerate(tail) if t == self.end_id), default=-1)
        if end > start:
            return None
        return ThinkMarks(self.start_id, self.end_id, opened=start > end)


def detect(tokenizer) -> ReasoningFormat | None:
    """The model's think markers, if its template and vocabulary have them."""
    if END not in (tokenizer.chat_template or ""):
        return None
    start, end = tokenizer.token_to_id(START), tokenizer.token_to_id(END)
    if start is None or end is None:
        return None
    return ReasoningFormat(start, end)


def _held(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``tag`` (kept back until decided)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class ReasoningSplitter:
    """Splits an answer's text, fed in pieces as it streams, into ("reasoning", text) and ("content", text).

    The block's tags are dropped, with the newlines around the reasoning and those before the content (Qwen3
    writes ``<think>\\n...\\n</think>\\n\\n``); a tag split over pieces is held back until it is complete."""

    def __init__(self, marks: ThinkMarks | None) -> None:
        # "content": no block (any more); "undecided": the answer may open one; "thinking": inside it
        self.state = "content" if marks is None else "thinking" if marks.opened else "undecided"
        self.pending = ""  # text not yet given out: a possible tag, newlines at a boundary
        self.skip_newlines = self.state == "thinking"  # at the start of the reasoning or of the content after it
        self.thought = False  # a block was opened: the answer reasons

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self.pending += text
        while self.pending:
            if self.state == "undecided":
                head = self.pending.lstrip()
                if head.startswith(START):
                    self.state, self.thought, self.skip_newlines = "thinking", True, True
                    self.pending = head[len(START) :]
                    continue
                if START.startswith(head):  # whitespace, or the tag's beginning: wait for more
                    break
                self.state = "content"
            if self.skip_newlines:
                self.pending = self.pending.lstrip("\n")
                if not self.pending:
                    break
                self.skip_newlines = False
            if self.state == "content":
                out.append(("content", self.pending))
                self.pending = ""
                break
            self.thought = True
            at = self.pending.find(END)
            if at >= 0:
                reasoning = self.pending[:at].rstrip("\n")
                if reasoning:
                    out.append(("reasoning", reasoning))
                self.pending = self.pending[at + len(END) :]
                self.state, self.skip_newlines = "content", True
                continue
            # the reasoning so far, less what may be the end tag's start and the newlines that may precede it
            keep = _held(self.pending, END)
            body = self.pending[: len(self.pending) - keep]
            ready = body.rstrip("\n")
            if ready:
                out.append(("reasoning", ready))
            self.pending = self.pending[len(ready) :]
            break
        return out

    def finish(self) -> list[tuple[str, str]]:
        """What was held back when the answer ends (cut by max_tokens inside the block: all reasoning)."""
        rest, self.pending = self.pending, ""
        if not rest or (self.skip_newlines and not rest.strip("\n")):
            return []
        if self.state == "thinking":
            return [("reasoning", rest.rstrip("\n"))] if rest.strip("\n") else []
        return [("content", rest)]

    def split(self, text: str) -> tuple[str | None, str]:
        """A whole answer: (reasoning or None, content)."""
        parts = self.feed(text) + self.finish()
        reasoning = "".join(t for kind, t in parts if kind == "reasoning")
        content = "".join(t for kind, t in parts if kind == "content")
        return (reasoning if self.thought else None), content


def answers_reasoning_tokens(reasons: bool, marks: ThinkMarks | None, outputs: list[list[int]]) -> int | None:
    """The choices' tokens in think blocks: usage's ``completion_tokens_details.reasoning_tokens`` (None: not a
    reasoning model's chat answer)."""
    return sum(reasoning_tokens(marks, ids) for ids in outputs) if reasons else None


def reasoning_tokens(marks: ThinkMarks | None, output_ids: list[int]) -> int:
    """Generated tokens that belong to the think block, its tags included (all of them when it never closed)."""
    if marks is None:
        return 0
    if not marks.opened and (not output_ids or output_ids[0] != marks.start_id):
        return 0
    return output_ids.index(marks.end_id) + 1 if marks.end_id in output_ids else len(output_ids)
