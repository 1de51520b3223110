"""OpenAI-shaped errors of the inference service (it must not import the hub's)."""

from __future__ import annotations

from starlette.responses import JSONResponse


class ServiceError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code
        if status is not None:
            self.status = status

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


class NotFound(ServiceError):
    status = 404


class ServerError(ServiceError):
    status = 500
    type = "server_error"


def model_not_found(model: str) -> NotFound:
    return NotFound(f"The model '{model}' does not exist.", param="model", code="model_not_found")


def context_length_exceeded(max_len: int, prompt: int, completion: int, what: str = "messages") -> ServiceError:
    return ServiceError(
        f"This model's maximum context length is {max_len} tokens. However, you requested "
        f"{prompt + completion} tokens ({prompt} in the {what}, {completion} in the completion). "
        f"Please reduce the length of the {what} or completion.",
        param=what,
        code="context_length_exceeded",
    )
