"""Rendering a model's Jinja chat template the way transformers does, in a sandbox.

The environment matches ``transformers``' ``apply_chat_template``: an ``ImmutableSandboxedEnvironment``
with ``trim_blocks`` / ``lstrip_blocks``, loop controls, the ``{% generation %}`` tag (a no-op here),
a ``tojson`` filter that keeps non-ASCII text, and the ``raise_exception`` / ``strftime_now`` globals.
Templates come from model files, so they run sandboxed: no attribute access to Python internals and no
mutation of the messages passed in.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class ChatTemplateError(ValueError):
    """The model has no chat template, the template is broken, or it rejected the conversation."""


# Gemma 3's official template (google/gemma-3-*-it), which Gemma GGUF files do not carry: the system
# message is folded into the first user turn, "assistant" is called "model", content is trimmed.
GEMMA3_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# tokens that close a turn in the templates of the model families we know; a template that writes one
# of these makes it a stop token even when generation_config.json forgot it
END_OF_TURN_TOKENS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<|endoftext|>")


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}`` marks assistant text for training masks; render the body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def compile_template(source: str) -> jinja2.Template:
    """Compile once per distinct template text."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, loopcontrols], keep_trailing_newline=False
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the chat template does not compile: {exc}") from exc


def render(
    source: str,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
    tools: list[dict[str, Any]] | None = None,
    special_tokens: dict[str, str | None] | None = None,
    **kwargs: Any,
) -> str:
    """The prompt text: ``source`` rendered over ``messages`` (plus ``bos_token`` etc. and any extra kwargs)."""
    context = {k: v for k, v in (special_tokens or {}).items() if v is not None}
    context.update(kwargs)
    try:
        return compile_template(source).render(
            messages=messages, tools=tools, add_generation_prompt=add_generation_prompt, **context
        )
    except ChatTemplateError:
        raise
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the chat template failed: {exc}") from exc


def normalize_messages(messages: list[dict[str, Any]], keep_parts: bool = False) -> list[dict[str, Any]]:
    """Copies with list-of-parts content (``[{"type": "text", "text": ...}]``) joined into one string; with
    ``keep_parts``, every content as a list of ``{"type": "text", "text"}`` / ``{"type": "image"}`` parts
    instead (templates that iterate over parts, as llava-hf's do)."""
    out = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise ChatTemplateError("each message must be an object with a 'role'")
        message = dict(message)
        content = message.get("content")
        if isinstance(content, list):
            kept, texts = [], []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image" and keep_parts:
                    kept.append({"type": "image"})
                    continue
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ChatTemplateError("message content parts must be {'type': 'text', 'text': str}")
                kept.append({"type": "text", "text": part["text"]})
                texts.append(part["text"])
            message["content"] = kept if keep_parts else "\n".join(texts)
        elif isinstance(content, str):
            if keep_parts:
                message["content"] = [{"type": "text", "text": content}]
        elif content is not None:  # None: e.g. an assistant turn of tool calls
            raise ChatTemplateError("message content must be a string or a list of text parts")
        out.append(message)
    return out


def tag_final_message(messages: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """``messages`` with ``tag`` after the final message's text (its content, or its last text part), for
    ``cut_at_tag``: vLLM's and transformers' ``continue_final_message``, done as transformers does it."""
    if not messages or not isinstance(messages[-1], dict):
        raise ChatTemplateError("continue_final_message needs a final message to continue")
    final = dict(messages[-1])
    content = final.get("content")
    parts = content if isinstance(content, list) else []
    texts = [i for i, part in enumerate(parts) if isinstance(part, dict) and "text" in part]
    if isinstance(content, str) and content.strip():
        final["content"] = content + tag
    elif texts:
        content = list(content)
        content[texts[-1]] = {**content[texts[-1]], "text": str(content[texts[-1]]["text"]) + tag}
        final["content"] = content
    else:
        raise ChatTemplateError("continue_final_message needs a final message with text to continue")
    return [*messages[:-1], final]


def cut_at_tag(rendered: str, tag: str) -> str:
    """The rendered conversation up to the final message's end (``tag_final_message``'s tag): the template's
    end-of-turn markup left out. A template that trimmed the text's trailing spaces is followed (transformers')."""
    at = rendered.rfind(tag.strip())
    if at < 0:
        raise ChatTemplateError("continue_final_message: the template does not show the final message's text")
    return rendered[:at] if rendered[at : at + len(tag)] == tag else rendered[:at].rstrip()
