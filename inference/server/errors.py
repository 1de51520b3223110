"""OpenAI-shaped errors of the inference service (it must not import the hub's)."""

from __future__ import annotations

from starlette.responses import JSONResponse

SHOWN_CHARS = 200  # the most of a client's value an error message repeats
MAX_MESSAGE_CHARS = 1000  # and the longest message, whatever it quotes


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A client's value as an error message quotes it: at most ``limit`` characters, then how many more."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


class ServiceError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code
        if status is not None:
            self.status = status

    def body(self) -> dict:
        message = shown(self.message, MAX_MESSAGE_CHARS)  # a safety net: messages quote values through shown()
        return {"error": {"message": message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


class NotFound(ServiceError):
    status = 404


class ServerError(ServiceError):
    status = 500
    type = "server_error"


def model_not_found(model: str) -> NotFound:
    return NotFound(f"The model '{shown(model)}' does not exist.", param="model", code="model_not_found")


def context_length_exceeded(max_len: int, prompt: int, completion: int, what: str = "messages") -> ServiceError:
    return ServiceError(
        f"This model's maximum context length is {max_len} tokens. However, you requested "
        f"{prompt + completion} tokens ({prompt} in the {what}, {completion} in the completion). "
        f"Please reduce the length of the {what} or completion.",
        param=what,
        code="context_length_exceeded",
    )
