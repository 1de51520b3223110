"""CORS for the API routes (``/v1``, ``/v2``, ``/vision``), as OpenAI's API and vLLM answer a browser: a web page
may call the hub with a key (the OpenAI JS SDK's ``dangerouslyAllowBrowser``). Starlette's ``CORSMiddleware`` does
the work, in front of the edge: a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered
without a key, and every answer, errors included, carries ``Access-Control-Allow-Origin`` and exposes the headers
a client reads (``x-request-id``, the rate-limit headers, ``retry-after``).

``HUB_CORS_ALLOWED_ORIGINS``: ``*`` by default (the API is authenticated by its bearer key alone, never a cookie,
so another site's page can do nothing a key does not allow); a comma-separated list of origins allows those
alone; empty turns CORS off. The console (signed in by its session cookie) never gets these headers.
"""

from __future__ import annotations

from django.conf import settings
from starlette.middleware.cors import CORSMiddleware

from hub.api.paths import is_api_path

METHODS = ("GET", "POST", "DELETE", "OPTIONS")
EXPOSED = (
    "x-request-id", "retry-after", "x-should-retry", "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens", "x-hub-fallback-from",
)  # fmt: skip
MAX_AGE = 600  # seconds a browser may keep a preflight's answer


class ApiCorsMiddleware:
    def __init__(self, app) -> None:
        self.app = app
        self._cors: dict[tuple[str, ...], CORSMiddleware] = {}  # by the setting's origins, read per request

    def cors(self, origins: tuple[str, ...]) -> CORSMiddleware:
        if origins not in self._cors:
            self._cors[origins] = CORSMiddleware(
                self.app,
                allow_origins=origins,
                allow_methods=METHODS,
                allow_headers=["*"],
                expose_headers=EXPOSED,
                allow_private_network=True,  # a page on the internet may call a hub on a private network
                max_age=MAX_AGE,
            )
        return self._cors[origins]

    async def __call__(self, scope, receive, send) -> None:
        origins = tuple(settings.HUB_CORS_ALLOWED_ORIGINS)
        if origins and scope["type"] == "http" and is_api_path(scope["path"]):
            return await self.cors(origins)(scope, receive, send)
        return await self.app(scope, receive, send)
