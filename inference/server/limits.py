"""The limits the service puts on a request's values, in one place. The hub validates the same ones before a
request leaves it (``hub/api/validation.py``, a separate service that imports nothing of ours); a test keeps the
two equal."""

from __future__ import annotations

MAX_N = 16  # choices per request
MAX_TOP_LOGPROBS = 20  # chat's top_logprobs (the sampler returns at most this many)
MAX_COMPLETION_LOGPROBS = 5  # completions' logprobs, as OpenAI's
MAX_BAD_WORDS = 128  # vLLM's bad_words: each is matched against every answer at every step
MAX_IMAGES = 8  # per request: LLaVA was trained on one; each costs up to ~2900 tokens
MAX_BODY_BYTES = 16 * 1024 * 1024
# levels of JSON a body may nest (the hub refuses past 64 and its Responses API adds a level or two); past it, a
# JSON Schema in the body would overflow the stack of the libraries that read it (jsonschema recurses per level)
MAX_JSON_DEPTH = 128
ROLES = ("system", "developer", "user", "assistant", "tool")
IMAGE_DETAILS = ("auto", "low", "high")
MAX_AUDIO_BYTES = 25 * 1024 * 1024  # an upload to /v1/audio/*, as OpenAI's 25 MB
RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")  # of /v1/audio/*
