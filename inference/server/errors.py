"""OpenAI-shaped errors of the inference service (it must not import the hub's): every ``RequestError`` raised
below the server is a ``ServiceError``'s kind, rendered here as OpenAI's error object."""

from __future__ import annotations

from starlette.responses import JSONResponse

from inference.errors import RequestError

SHOWN_CHARS = 200  # the most of a client's value an error message repeats
MAX_MESSAGE_CHARS = 1000  # and the longest message, whatever it quotes


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A client's value as an error message quotes it: at most ``limit`` characters, then how many more."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


class ServiceError(RequestError):
    """A request error the server answers itself; ``render`` answers any ``RequestError`` the same way."""

    def body(self) -> dict:
        message = shown(self.message, MAX_MESSAGE_CHARS)  # a safety net: messages quote values through shown()
        return {"error": {"message": message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers())

    def headers(self) -> dict[str, str]:
        return {}


def render(error: RequestError) -> JSONResponse:
    """The one place a request error becomes an answer."""
    if not isinstance(error, ServiceError):
        error = ServiceError(error.message, param=error.param, code=error.code, status=error.status)
    return error.response()


class NotFound(ServiceError):
    status = 404


class ServerError(ServiceError):
    status = 500
    type = "server_error"


def model_not_found(model: str) -> NotFound:
    return NotFound(f"The model '{shown(model)}' does not exist.", param="model", code="model_not_found")


# A gateway that reserved tokens against a budget names the prompt tokens it reserved; a longer prompt is refused
# before it runs (no model time, nothing to meter), with the exact count, so the gateway can reserve that and send
# the request again. Without the header nothing is checked.
RESERVED_PROMPT_HEADER = "x-reserved-prompt-tokens"
PROMPT_TOKENS_HEADER = "x-prompt-tokens"


class ContextLengthExceeded(ServiceError):
    """Prompt + completion over the model's context. The prompt's exact count travels in ``x-prompt-tokens`` as
    with ``OverReservation``, so a gateway that counts a prompt (``/responses/input_tokens``, ``truncation:
    "auto"``'s cut) learns it also when the prompt alone is longer than the context."""

    def __init__(self, max_len: int, prompt: int, completion: int, what: str = "messages"):
        super().__init__(
            f"This model's maximum context length is {max_len} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the {what}, {completion} in the completion). "
            f"Please reduce the length of the {what} or completion.",
            param=what,
            code="context_length_exceeded",
        )
        self.prompt_tokens = prompt

    def headers(self) -> dict[str, str]:
        return {PROMPT_TOKENS_HEADER: str(self.prompt_tokens)}


class OverReservation(ServiceError):
    status = 413

    def __init__(self, prompt_tokens: int, reserved: int):
        super().__init__(
            f"The prompt has {prompt_tokens} tokens, more than the {reserved} reserved for it "
            f"({RESERVED_PROMPT_HEADER}); it was not run.",
            code="prompt_exceeds_reservation",
        )
        self.prompt_tokens = prompt_tokens

    def headers(self) -> dict[str, str]:
        return {PROMPT_TOKENS_HEADER: str(self.prompt_tokens)}


def check_reservation(headers, prompt_tokens: int) -> None:
    """``prompt_tokens``: as usage will report them (every prompt once, whatever ``n``)."""
    raw = headers.get(RESERVED_PROMPT_HEADER)
    if raw is None:
        return
    try:
        reserved = int(raw)
    except ValueError:
        raise ServiceError(f"{RESERVED_PROMPT_HEADER} must be an integer, got {shown(raw)}.") from None
    if prompt_tokens > reserved:
        raise OverReservation(prompt_tokens, reserved)
