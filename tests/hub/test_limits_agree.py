"""The hub refuses what the inference service would, first (``hub/api/validation.py``); the service keeps its own
limits (``inference/server/limits.py``): two services that import nothing of each other at run time, so this test
holds the shared limits equal, and the hub's body limit within the service's."""

from __future__ import annotations

from django.conf import settings

from hub.api import validation
from inference.server import limits


def test_the_sampling_limits_are_the_services():
    assert validation.MAX_N == limits.MAX_N
    assert validation.MAX_TOP_LOGPROBS == limits.MAX_TOP_LOGPROBS
    assert validation.MAX_COMPLETION_LOGPROBS == limits.MAX_COMPLETION_LOGPROBS
    assert validation.MAX_BAD_WORDS == limits.MAX_BAD_WORDS


def test_the_roles_and_image_details_are_the_services():
    assert tuple(validation.ROLES) == tuple(limits.ROLES)
    assert tuple(validation.DETAILS) == tuple(limits.IMAGE_DETAILS)


def test_the_hubs_body_limit_fits_within_the_services():
    """A body the hub takes (``HUB_MAX_BODY_BYTES``: 8 MiB unless set; this run's value, the default when the
    environment does not set it) must not be one the service refuses as too large (16 MiB): the hub's limit must
    not exceed the service's. The gateway relays the parsed body re-encoded compactly (httpx: no spaces, UTF-8
    unescaped) plus a few fields of its own, so the default's headroom covers what it adds."""
    assert settings.HUB_MAX_BODY_BYTES <= limits.MAX_BODY_BYTES
