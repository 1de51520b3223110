"""The hub's ASGI application: Channels' router with the API edge in front, and CORS for the API routes in
front of that (a browser's preflight is answered without a key: hub/api/cors.py).

Django serves the pages and JSON routes; the generation routes (chat completions, completions,
embeddings, streaming or not) are a Channels consumer, matched ahead of the Django catch-all, and so
are the console's two streams (live usage, the playground's chat).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402
from django.urls import re_path  # noqa: E402

from hub.api.cors import ApiCorsMiddleware  # noqa: E402
from hub.api.edge import ApiEdgeMiddleware  # noqa: E402
from hub.api.gateway import ROUTES, GatewayConsumer  # noqa: E402
from hub.api.paths import BASE_PATHS  # noqa: E402
from hub.console.live import PlaygroundRelay, UsageStream  # noqa: E402
from hub.metrics import MetricsMiddleware  # noqa: E402

_GENERATION = rf"^/?({'|'.join(BASE_PATHS)})/({'|'.join(ROUTES)})/?$"
_STORED_CHATS = rf"^/?({'|'.join(BASE_PATHS)})/chat/completions/?$"


async def _chat_completions(scope, receive, send):
    """``POST /chat/completions`` creates (the gateway); any other method is Django's: ``GET`` lists the stored
    chat completions, the rest get its 405."""
    app = gateway_app if scope["method"] == "POST" else django_asgi_app
    return await app(scope, receive, send)


gateway_app = GatewayConsumer.as_asgi()

# The console's streams, signed in by its session cookie (hub/console/live.py).
_TENANT = r"^/?console/t/(?P<tenant>[-a-zA-Z0-9_]+)"
_CONSOLE_STREAMS = [
    re_path(rf"{_TENANT}/usage/live/?$", SessionMiddlewareStack(UsageStream.as_asgi())),
    re_path(r"^/?console/usage/live/?$", SessionMiddlewareStack(UsageStream.as_asgi())),
    re_path(rf"{_TENANT}/playground/chat/completions/?$", SessionMiddlewareStack(PlaygroundRelay.as_asgi())),
]

application = ProtocolTypeRouter(
    {
        "http": MetricsMiddleware(  # every request counted, timed and seen in flight (GET /metrics)
            ApiCorsMiddleware(
                ApiEdgeMiddleware(
                    URLRouter(
                        [
                            re_path(_STORED_CHATS, _chat_completions),
                            re_path(_GENERATION, gateway_app),
                            *_CONSOLE_STREAMS,
                            re_path(r"", django_asgi_app),
                        ]
                    )
                )
            )
        ),
    }
)

from accounts import spool  # noqa: E402

spool.replay_soon()  # rows a previous run spooled while the database was down
