"""The tokenizer of one model, loaded from an HF-format directory.

Serves converted GGUF models and native HF checkpoints alike: ``tokenizer.json`` (required),
``tokenizer_config.json`` (special tokens, chat template), ``generation_config.json`` / ``config.json``
(end-of-sequence ids), ``chat_template.jinja`` (newer transformers keep the template there).

Control tokens typed by a user are text, never control tokens: ``encode`` does not parse them, and
``apply_chat_template`` parses them only where the template itself wrote them. To know where that is,
any control-token text inside the messages is swapped for a per-call placeholder before rendering and
swapped back after, marking the spans that must be tokenized as plain text.
"""

from __future__ import annotations

import bisect
import json
import re
import secrets
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as _Backend

from inference.tokenizer import chat_template


class TokenizerError(ValueError):
    """A tokenizer directory we cannot load; the message names the file."""


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"cannot read {path}: {exc}") from exc


def _content(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _first(*candidates: list[int | None]) -> int | None:
    """The first id found in the first list that has one (tokenizer_config wins over the config files)."""
    return next((i for ids in candidates for i in ids if i is not None), None)


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


class Tokenizer:
    """Encode / decode / chat-template one model's text; thread-safe (the backends are never mutated)."""

    def __init__(
        self,
        tokenizer_json: str,
        tokenizer_config: dict[str, Any] | None = None,
        generation_config: dict[str, Any] | None = None,
        model_config: dict[str, Any] | None = None,
        chat_template_text: str | None = None,
    ) -> None:
        # two backends so that no call ever flips a shared flag: one reads control tokens typed in the
        # text as text (user input), the other parses them (a rendered template)
        self.tokenizer_json = tokenizer_json  # the grammar engine builds its own view of the vocabulary from it
        self._plain = _Backend.from_str(tokenizer_json)
        self._plain.encode_special_tokens = True
        self._parsing = _Backend.from_str(tokenizer_json)
        self._parsing.encode_special_tokens = False
        for backend in (self._plain, self._parsing):
            # a tokenizer.json may carry padding / truncation (sentence-transformers dirs do); lengths are
            # the engine's business, as with transformers, which turns both off unless asked per call
            backend.no_padding()
            backend.no_truncation()
        config = tokenizer_config or {}
        generation = generation_config or {}
        model = model_config or {}

        added = self._plain.get_added_tokens_decoder()
        self.special_tokens: dict[str, int] = {t.content: i for i, t in added.items() if t.special and t.content}
        self.special_token_ids: frozenset[int] = frozenset(self.special_tokens.values())
        # for the control-token scan: candidate start characters, then the lengths to try, longest first
        self._lengths = sorted({len(t) for t in self.special_tokens}, reverse=True)
        first_chars = "".join(sorted({re.escape(t[0]) for t in self.special_tokens}))
        self._starts = re.compile(f"[{first_chars}]") if first_chars else None
        # END_OF_TURN_TOKENS that are special here
        self._turn_end_tokens = [t for t in chat_template.END_OF_TURN_TOKENS if t in self.special_tokens]

        names = ("bos_token", "eos_token", "unk_token", "pad_token")
        self.token_strings: dict[str, str | None] = {name: _content(config.get(name)) for name in names}
        self.chat_template = chat_template_text or _template_from_config(config.get("chat_template"))

        self.bos_token_id = _first(
            [self._id_of(self.token_strings["bos_token"])],
            _ids(generation.get("bos_token_id")),
            _ids(model.get("bos_token_id")),
        )
        self.pad_token_id = _first([self._id_of(self.token_strings["pad_token"])], _ids(generation.get("pad_token_id")))
        eos = _ids(generation.get("eos_token_id")) or _ids(model.get("eos_token_id"))
        own_eos = [i for i in [self._id_of(self.token_strings["eos_token"])] if i is not None]
        self.eos_token_ids: list[int] = list(dict.fromkeys(eos + own_eos))
        # stop on every end-of-turn token the template writes, even if generation_config forgot it
        template = self.chat_template or ""
        turn_ends = [self.special_tokens[t] for t in self._turn_end_tokens if t in template]
        self.stop_token_ids: list[int] = list(dict.fromkeys(self.eos_token_ids + turn_ends))

    @classmethod
    def from_dir(cls, directory: str | Path) -> Tokenizer:
        directory = Path(directory)
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise TokenizerError(
                f"{directory} has no tokenizer.json (slow-tokenizer-only checkpoints are not supported)"
            )
        jinja = directory / "chat_template.jinja"
        return cls(
            path.read_text(encoding="utf-8"),
            tokenizer_config=_read_json(directory / "tokenizer_config.json"),
            generation_config=_read_json(directory / "generation_config.json"),
            model_config=_read_json(directory / "config.json"),
            chat_template_text=jinja.read_text(encoding="utf-8") if jinja.is_file() else None,
        )

    # --- basic properties -----------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included."""
        return self._plain.get_vocab_size(with_added_tokens=True)

    @property
    def eos_token_id(self) -> int | None:
        return self.eos_token_ids[0] if self.eos_token_ids else None

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    def token_to_id(self, token: str) -> int | None:
        return self._plain.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._plain.id_to_token(token_id)

    def _id_of(self, token: str | None) -> int | None:
        return None if token is None else self._plain.token_to_id(token)

    # --- encode / decode ------------------------------------------------------------------------

    def encode(
        self, text: str, add_special_tokens: bool = True, parse_special: bool = False, keep_last: int | None = None
    ) -> list[int]:
        """Token ids of ``text``. Control tokens written in it stay text unless ``parse_special`` (trusted
        text only). ``add_special_tokens`` adds what the model adds to every input (e.g. Gemma's BOS).
        ``keep_last``: at most this many ids, the text's last tokens and the special ones (transformers'
        ``truncation_side="left"``; the last ids only when the special tokens alone take that many)."""
        backend = self._parsing if parse_special else self._plain
        if keep_last is None:
            return backend.encode(text, add_special_tokens=add_special_tokens).ids
        encoding = backend.encode(text, add_special_tokens=False)
        room = keep_last - (backend.num_special_tokens_to_add(False) if add_special_tokens else 0)
        if room >= 1:
            encoding.truncate(room, direction="left")
        ids = backend.post_process(encoding, add_special_tokens=add_special_tokens).ids
        return ids if room >= 1 else ids[-keep_last:]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` without special tokens, and each token's span of it ([start, end) in characters)."""
        encoding = self._plain.encode(text, add_special_tokens=False)
        return encoding.ids, [tuple(span) for span in encoding.offsets]

    def encode_pair(self, first: str, second: str, max_length: int) -> tuple[list[int], list[int]]:
        """A cross-encoder's input: the two texts joined as the tokenizer's post-processor joins a pair (BERT's
        ``[CLS] a [SEP] b [SEP]``, XLM-R's ``<s> a </s></s> b </s>``), ``second`` cut at its end to fit
        ``max_length`` tokens (transformers' ``truncation="only_second"``). Returns the ids and the token type ids;
        raises TokenizerError when ``first`` alone leaves no room for ``second``."""
        a = self._plain.encode(first, add_special_tokens=False)
        b = self._plain.encode(second, add_special_tokens=False)
        room = max_length - self._plain.num_special_tokens_to_add(True) - len(a.ids)
        if room < 1:
            raise TokenizerError(f"the first text has {len(a.ids)} tokens, which leaves no room in {max_length}")
        if len(b.ids) > room:
            b.truncate(room)
        pair = self._plain.post_process(a, b, add_special_tokens=True)
        return pair.ids, pair.type_ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._plain.decode(list(ids), skip_special_tokens=skip_special_tokens)

    # --- chat -----------------------------------------------------------------------------------

    def render_chat(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        *,
        parts: bool = False,
        placeholders: dict[str, str] | None = None,
        continue_final_message: bool = False,
        **kwargs: Any,
    ) -> str:
        """The prompt text the template makes of ``messages`` (what ``apply_chat_template`` tokenizes)."""
        return self._render(messages, add_generation_prompt, tools, kwargs, parts, placeholders,
                            continue_final_message)[0]  # fmt: skip

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        *,
        parts: bool = False,
        placeholders: dict[str, str] | None = None,
        continue_final_message: bool = False,
        **kwargs: Any,
    ) -> list[int]:
        """Token ids of the rendered conversation; only the template's own control tokens are special.

        ``parts``: pass contents to the template as lists of parts (``{"type": "text"|"image"}``), for templates
        that place images themselves (llava-hf's). ``placeholders``: marker text the caller put in the messages
        -> the control token it stands for (an image token, for templates that only know strings); markers are
        unguessable per call, so a user cannot write one. ``continue_final_message``: the final message left open
        for the model to continue (``chat_template.tag_final_message`` and ``cut_at_tag``)."""
        text, protected = self._render(messages, add_generation_prompt, tools, kwargs, parts, placeholders,
                                       continue_final_message)  # fmt: skip
        if not protected:  # nothing in the messages looks like a control token: tokenize as HF does
            return self._parsing.encode(text, add_special_tokens=False).ids
        ids: list[int] = []
        pos = 0
        for start, token in self._template_specials(text, protected):
            ids += self._plain.encode(text[pos:start], add_special_tokens=False).ids
            ids.append(self.special_tokens[token])
            pos = start + len(token)
        return ids + self._plain.encode(text[pos:], add_special_tokens=False).ids

    def _render(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool,
        tools: Any,
        kwargs: dict[str, Any],
        parts: bool = False,
        placeholders: dict[str, str] | None = None,
        continue_final_message: bool = False,
    ) -> tuple[str, list[tuple[int, int]]]:
        """(prompt text, sorted [start, end) spans of control-token text that came from the messages)."""
        if not self.chat_template:
            raise chat_template.ChatTemplateError("this model has no chat template; use a completion request")
        originals: list[str] = []
        nonce = str(secrets.randbelow(10**12)).zfill(12)  # digits survive |upper, |lower, |trim
        tag = f"CONTINUE{nonce}TAG "  # after the final message's text, to cut there (continue_final_message)
        if continue_final_message:
            messages = chat_template.tag_final_message(messages, tag)

        def shield(value: Any) -> Any:  # every string the caller sent, roles and tool schemas included
            if isinstance(value, str):
                return self._special_text(value, lambda tok: _placeholder(nonce, originals, tok))
            if isinstance(value, dict):
                return {k: shield(v) for k, v in value.items()}
            if isinstance(value, list):
                return [shield(v) for v in value]
            return value

        rendered = chat_template.render(
            self.chat_template,
            shield(chat_template.normalize_messages(messages, keep_parts=parts)),
            add_generation_prompt=add_generation_prompt,
            tools=shield(tools),
            special_tokens=self.token_strings,
            **{name: shield(value) for name, value in kwargs.items()},  # a request's chat_template_kwargs too
        )
        for marker, token in (placeholders or {}).items():  # not shielded: they become template control tokens
            rendered = rendered.replace(marker, token)
        if continue_final_message:  # the tag is plain text: shielded contents before it are whole
            rendered = chat_template.cut_at_tag(rendered, tag)
        if not originals:
            return rendered, []
        parts: list[str] = []
        spans: list[tuple[int, int]] = []
        length, pos = 0, 0
        for match in re.finditer(f"\ue000{nonce}:(\\d+)\ue001", rendered):
            parts.append(rendered[pos : match.start()])
            length += match.start() - pos
            original = originals[int(match.group(1))]
            spans.append((length, length + len(original)))
            parts.append(original)
            length += len(original)
            pos = match.end()
        parts.append(rendered[pos:])
        return "".join(parts), spans

    def _special_text(self, text: str, replace: Any) -> str:
        """``text`` with every control-token occurrence (leftmost-longest) replaced by ``replace(token)``."""
        out, pos = [], 0
        for start, token in self._template_specials(text, []):
            out += [text[pos:start], replace(token)]
            pos = start + len(token)
        return "".join(out) + text[pos:] if out else text

    def _template_specials(self, text: str, protected: list[tuple[int, int]]) -> list[tuple[int, str]]:
        """Leftmost-longest control-token occurrences in ``text`` that overlap no protected span."""
        if self._starts is None:
            return []
        starts = [s for s, _ in protected]
        found: list[tuple[int, str]] = []
        pos = 0
        while (match := self._starts.search(text, pos)) is not None:
            i = match.start()
            k = bisect.bisect_right(starts, i) - 1
            if k >= 0 and i < protected[k][1]:  # inside message text: skip the whole span
                pos = protected[k][1]
                continue
            limit = starts[k + 1] if k + 1 < len(starts) else len(text)  # must end before the next span
            candidates = (text[i : i + n] for n in self._lengths if i + n <= limit)
            token = next((c for c in candidates if c in self.special_tokens), None)
            if token is None:
                pos = i + 1
                continue
            found.append((i, token))
            pos = i + len(token)
        return found


def _placeholder(nonce: str, originals: list[str], token: str) -> str:
    originals.append(token)
    return f"\ue000{nonce}:{len(originals) - 1}\ue001"


def _template_from_config(value: Any) -> str | None:
    """tokenizer_config.json's ``chat_template``: a string, or a list of named templates (use "default")."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default") or next(iter(named.values()), None)
    return value if isinstance(value, str) and value else None
