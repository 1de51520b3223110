"""The hub's ASGI application: Channels' router with the API edge in front.

Django serves the pages and JSON routes; the generation routes (chat completions, completions,
embeddings, streaming or not) are a Channels consumer, matched ahead of the Django catch-all.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from hub.api.edge import ApiEdgeMiddleware  # noqa: E402
from hub.api.gateway import ROUTES, GatewayConsumer  # noqa: E402
from hub.api.paths import BASE_PATHS  # noqa: E402

_GENERATION = rf"^/?({'|'.join(BASE_PATHS)})/({'|'.join(ROUTES)})/?$"

application = ProtocolTypeRouter(
    {
        "http": ApiEdgeMiddleware(
            URLRouter([re_path(_GENERATION, GatewayConsumer.as_asgi()), re_path(r"", django_asgi_app)])
        ),
    }
)
