"""``POST /responses/input_tokens``: how many input tokens a Responses API request would have, counted by our
inference service exactly as it would count them: the same chat request the relay would send (the stored
conversation, ``instructions``, tools and ``text.format`` rendered into the prompt, images), with a reservation of
no tokens, which the service refuses before running anything, naming the prompt's exact count. A prompt longer than
the model's whole context is counted too (the service's 400 names its count): ``truncation: "auto"`` cuts such a
context. The mcp tools' servers are listed for their functions, but no call is run. Nothing is generated, so
nothing is metered (as OpenAI does not bill the count). An external deployment cannot be asked so."""

from __future__ import annotations

import httpx

from hub.api import errors
from hub.api.relay_common import error_from_upstream
from hub.api.responses_chat import response_message, response_param
from hub.api.responses_relay import ResponsePlan
from hub.api.upstream import PROMPT_TOKENS_HEADER, RESERVED_PROMPT_HEADER, Target, upstreams


async def count(plan: ResponsePlan, targets: list[Target], request_id: str) -> int:
    if not targets:
        raise errors.ServiceUnavailable(
            f"No deployment of the model '{errors.shown(plan.model_id)}' is available right now."
        )
    own = [target for target in targets if not target.external]
    if not own:
        raise errors.InvalidRequest(
            f"'{errors.shown(plan.model_id)}' is served by an external deployment: this hub counts input tokens only "
            "on its own inference service.", param="model",
        )  # fmt: skip
    await plan.prepare(None, run=False)  # the mcp tools' functions are in the prompt; approved calls are not run
    client = upstreams.client()
    for target in upstreams.order(own, None):
        route, body = plan.upstream(target, stream=True)
        headers = {**target.headers(request_id), RESERVED_PROMPT_HEADER: "-1"}  # every prompt is over it
        try:
            response = await client.post(target.url(route), json={**body, "n": 1}, headers=headers)
        except httpx.TransportError:
            upstreams.bench(target)
            continue
        # 413: over the reservation; 400 with the count: the prompt alone is longer than the model's context (it is
        # counted all the same: truncation's cut asks how much is too much)
        if response.status_code in (400, 413) and PROMPT_TOKENS_HEADER in response.headers:
            return int(response.headers[PROMPT_TOKENS_HEADER])
        if response.status_code == 200:  # a service that does not check reservations ran it: not ours to guess
            raise errors.UpstreamError("The model's deployment cannot count a prompt without running it.")
        error = error_from_upstream(response.status_code, response.content)  # the request's own error
        error.param, error.message = response_param(error.param), response_message(error.message)
        raise error
    raise errors.ServiceUnavailable(
        f"No deployment of the model '{errors.shown(plan.model_id)}' is reachable right now."
    )
