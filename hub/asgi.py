"""The hub's ASGI application: Channels' router with the API edge in front.

Django serves the pages and JSON routes; Channels consumers (the streaming routes) join the
``http`` router as they are added, ahead of the Django catch-all.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from hub.api.edge import ApiEdgeMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": ApiEdgeMiddleware(URLRouter([re_path(r"", django_asgi_app)])),
    }
)
