"""Django middleware: on API paths, no HTML ever, and no traceback ever.

Views raise ``ApiError`` subclasses or DRF exceptions (rendered by DRF's handler); anything
else that escapes a view on an API path is logged and answered as OpenAI's JSON 500 (503 when the database
is unreachable; a 503 page on the console's). Django's
own HTML answers on API paths (CSRF failure, 404 from the resolver) are replaced with JSON too.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse
from django.template.loader import render_to_string

from accounts.database import database_unreachable
from hub.api import errors
from hub.api.paths import is_api_path

log = logging.getLogger("hub.api")
RETRY_AFTER_SECONDS = 30


class ApiExceptionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            is_api_path(request.path)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return errors.error_response(self._for_status(request, response.status_code))
        return response

    @staticmethod
    def _for_status(request, status: int) -> errors.ApiError:
        if status == 404:
            return errors.UnknownUrl(f"Invalid URL ({request.method} {request.path})")
        if status == 405:
            return errors.MethodNotAllowed(request.method, request.path)
        if status == 403:
            return errors.PermissionDenied("You are not allowed to perform this request.")
        if status < 500:
            return errors.InvalidRequest("The request could not be processed.")
        return errors.internal_error()

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            if database_unreachable(exception):  # the console: a 503 page, not a 500 one
                log.warning("database unreachable on %s %s: %s", request.method, request.path, exception)
                # rendered without the request: its context processors would ask the database for the user
                response = HttpResponse(render_to_string("console/unavailable.html"), status=503)
                response["Retry-After"] = str(RETRY_AFTER_SECONDS)
                return response
            return None
        if isinstance(exception, errors.ApiError):
            return errors.error_response(exception)
        if isinstance(exception, Http404):
            return errors.error_response(errors.UnknownUrl(f"Invalid URL ({request.method} {request.path})"))
        if isinstance(exception, DjangoPermissionDenied):
            return errors.error_response(errors.PermissionDenied("You are not allowed to perform this request."))
        return errors.error_response(errors.for_unexpected(exception, f"{request.method} {request.path}"))
