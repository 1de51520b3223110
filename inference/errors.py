"""A client's request that cannot be served as sent: raised wherever it is found (the request's parsing, its tools
and schemas, its prompt), answered once by the server (``server/app.py``) as OpenAI's error object, 400 unless
the error says otherwise. Below every floor that reads requests: it imports nothing of ours."""

from __future__ import annotations


class RequestError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code
        if status is not None:
            self.status = status
