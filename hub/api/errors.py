"""One error hierarchy for the public API, rendered once as OpenAI's error object.

``{"error": {"message", "type", "param", "code"}}`` with the status codes the OpenAI SDK maps
to its exception classes (400 BadRequestError, 401 AuthenticationError, 403
PermissionDeniedError, 404 NotFoundError, 409, 413, 415, 422, 429 RateLimitError, >=500
InternalServerError).
"""

from __future__ import annotations

import json
import logging
import math

from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions

from accounts.database import database_unreachable

log = logging.getLogger(__name__)

SHOWN_CHARS = 200  # the most of a client's value an error message repeats
MAX_MESSAGE_CHARS = 1000  # and the longest message, whatever it quotes


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A client's value as an error message quotes it: at most ``limit`` characters, then how many more."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


class ApiError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> dict:
        message = shown(self.message, MAX_MESSAGE_CHARS)  # a safety net: messages quote values through shown()
        return {"error": {"message": message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(ApiError):
    status = 400
    type = "invalid_request_error"


class InvalidJson(InvalidRequest):
    code = "invalid_json"


class AuthenticationError(ApiError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="llm-hub"'}


class PermissionDenied(ApiError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(ApiError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model_id: str, *, param: str | None = "model"):
        # Same text whether the model exists for someone else or not at all.
        super().__init__(f"The model '{shown(model_id)}' does not exist or you do not have access to it.", param=param)


class UnknownUrl(NotFound):
    code = "unknown_url"


class MethodNotAllowed(ApiError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, method: str, path: str, allowed: list[str] | None = None):
        super().__init__(f"Method {method} is not allowed for {path}.")
        self.allowed = allowed or []

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)} if self.allowed else {}


class PayloadTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RateLimited(ApiError):
    """429: a requests- or tokens-per-minute limit, or the key's concurrent streams. ``retry_after`` (s) becomes
    ``Retry-After``, which the OpenAI SDKs wait for before retrying; None: retrying cannot help."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, code: str | None = None, kind: str = "requests"):
        super().__init__(message, code=code)
        self.type = kind
        self.retry_after: float | None = None
        self.extra_headers: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.retry_after is None:
            headers["x-should-retry"] = "false"
        else:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
            headers["retry-after-ms"] = str(max(1, math.ceil(self.retry_after * 1000)))
        return headers


class QuotaExceeded(ApiError):
    """429 ``insufficient_quota``: a token budget is spent; the SDKs are told not to retry."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message, param=param, code=code)
        self.extra_headers: dict[str, str] = {}  # the limiter's x-ratelimit-*, where the key has rate limits

    def headers(self) -> dict[str, str]:
        return {**self.extra_headers, "x-should-retry": "false"}


class UpstreamError(ApiError):
    """The model's deployment failed or answered with something that is not an OpenAI response."""

    status = 502
    type = "api_error"
    code = "upstream_error"


class ServiceUnavailable(ApiError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


def error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers().items():
        response[name] = value
    return response


def error_bytes(error: ApiError) -> bytes:
    return json.dumps(error.body()).encode()


def internal_error() -> ApiError:
    return ApiError("The server had an error while processing your request.", code="internal_error")


def for_unexpected(exc: BaseException, where: str) -> ApiError:
    """The answer to an exception no handler expected: the database being unreachable is a 503 (logged without a
    traceback: it is not our bug); anything else is logged with its traceback and answered as OpenAI's 500."""
    if database_unreachable(exc):
        log.warning("database unreachable on %s: %s", where, str(exc).strip() or exc.__class__.__name__)
        return ServiceUnavailable("The hub's database is unreachable right now; please retry shortly.")
    log.error("unhandled error on %s", where, exc_info=exc)
    return internal_error()


def from_drf(exc: drf_exceptions.APIException, request) -> ApiError:
    """Map DRF's own exceptions (raised by parsers, negotiation, dispatch) into ours."""
    if isinstance(exc, drf_exceptions.ParseError):
        return InvalidJson(f"We could not parse the JSON body of your request. ({exc.detail})")
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return UnsupportedMediaType(
            f"Unsupported Content-Type '{shown(request.content_type)}'; send 'application/json'."
        )
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        view = getattr(request, "parser_context", {}).get("view") if hasattr(request, "parser_context") else None
        allowed = list(getattr(view, "allowed_methods", []))
        return MethodNotAllowed(request.method, request.path, allowed)
    if isinstance(exc, drf_exceptions.NotFound):
        return NotFound(str(exc.detail))
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        return AuthenticationError(str(exc.detail))
    if isinstance(exc, drf_exceptions.ValidationError):
        return InvalidRequest(json.dumps(exc.detail) if not isinstance(exc.detail, str) else exc.detail)
    if exc.status_code == 413:
        return PayloadTooLarge(str(exc.detail))
    if exc.status_code < 500:
        return InvalidRequest(str(exc.detail))
    return internal_error()


def drf_exception_handler(exc: Exception, context: dict):
    """REST_FRAMEWORK['EXCEPTION_HANDLER']: every DRF view answers errors in OpenAI's shape."""
    request = context.get("request")
    if isinstance(exc, ApiError):
        error = exc
    elif isinstance(exc, drf_exceptions.APIException):
        error = from_drf(exc, request)
    else:
        return None  # unexpected: let ApiExceptionMiddleware log it and answer a JSON 500
    return error_response(error)
