"""Django middleware: on API paths, no HTML ever, and no traceback ever.

Views raise ``ApiError`` subclasses or DRF exceptions (rendered by DRF's handler); anything
else that escapes a view on an API path is logged and answered as OpenAI's JSON 500 (503 when the database
is unreachable; a plain 503 on the console's pages). Django's
own HTML answers on API paths (CSRF failure, 404 from the resolver) are replaced with JSON too.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse

from hub.api import errors
from hub.api.paths import is_api_path

log = logging.getLogger("hub.api")
UNREACHABLE = "The hub's database is unreachable right now; please retry shortly.\n"


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
            if errors.database_unreachable(exception):  # the console: a plain 503, not a 500 page
                log.warning("database unreachable on %s %s: %s", request.method, request.path, exception)
                return HttpResponse(UNREACHABLE, status=503, content_type="text/plain; charset=utf-8")
            return None
        if isinstance(exception, errors.ApiError):
            return errors.error_response(exception)
        if isinstance(exception, Http404):
            return errors.error_response(errors.UnknownUrl(f"Invalid URL ({request.method} {request.path})"))
        if isinstance(exception, DjangoPermissionDenied):
            return errors.error_response(errors.PermissionDenied("You are not allowed to perform this request."))
        return errors.error_response(errors.for_unexpected(exception, f"{request.method} {request.path}"))
