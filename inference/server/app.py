"""The inference service's HTTP API (Starlette): OpenAI routes plus health, metrics, tokenize."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference.engine.quarantine import EngineBroken
from inference.errors import RequestError
from inference.multimodal.fetch import FetchPolicy
from inference.server import lora_admin
from inference.server.embeddings import embeddings
from inference.server.errors import NotFound, ServerError, ServiceError, render
from inference.server.generate import chat_completions, completions
from inference.server.journal import Journal, keep
from inference.server.limits import MAX_BODY_BYTES, MAX_JSON_DEPTH
from inference.server.messages import read_messages
from inference.server.metrics import Metrics
from inference.server.moderation import moderations
from inference.server.parse import ROUTES_OF_KIND, parse_chat
from inference.server.prompt import chat_prompt_ids
from inference.server.registry import ModelRegistry
from inference.server.rerank import rerank, score
from inference.server.speech import transcriptions, translations
from inference.server.streams import ClientGone
from inference.server.synthesis import speech
from inference.server.tally import Ledger, Tallied, requests_usage
from inference.server.template_inputs import read_turn
from inference.server.vision import held_for

log = logging.getLogger("inference.server")


async def _json(request: Request) -> dict:
    if "json" not in request.headers.get("content-type", ""):
        raise ServiceError("Send a JSON body with Content-Type: application/json.", status=415)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ServiceError("Request body too large.", status=413)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServiceError(f"We could not parse the JSON body of your request ({exc}).", code="invalid_json") from None
    except RecursionError:  # nested deeper than the parser's recursion limit (about 1,000 levels)
        raise _too_deep() from None
    if not isinstance(data, dict):
        raise ServiceError("The request body must be a JSON object.")
    stack = [(data, 1)]  # iterative: no depth can overflow the stack here
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        stack += [(child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)
                  if isinstance(child, (dict, list))]  # fmt: skip
    return data


def _too_deep() -> ServiceError:
    return ServiceError(f"The JSON body of your request is nested too deeply: at most {MAX_JSON_DEPTH} levels.",
                        code="invalid_json")  # fmt: skip


def _post(handler, json_body: bool = True):
    """``handler(request, body)`` for a JSON route; ``handler(request)`` when it reads its own body (a form)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await (handler(request, await _json(request)) if json_body else handler(request))
        except RequestError as error:  # the one place a request's error becomes its answer
            return render(error)
        except ClientGone:  # the client left before a non-streamed answer was ready: its generation is aborted
            log.info("client gone on %s %s; the generation was aborted", request.method, request.url.path)
            return Response(status_code=499)
        except EngineBroken:  # sent after the engines stopped: the service is exiting, to be restarted
            return ServerError("The model's engine has stopped and this service is restarting; try again shortly.",
                               code="engine_stopped", status=503).response()  # fmt: skip
        except Exception:  # noqa: BLE001 - logged here, answered as JSON, never a traceback to the client
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return ServerError("The server had an error while processing your request.").response()

    return endpoint


async def list_models(request: Request) -> JSONResponse:
    registry: ModelRegistry = request.app.state.registry
    return JSONResponse({"object": "list", "data": [m.card() for m in registry.models.values()]})


async def get_model(request: Request) -> JSONResponse:
    try:
        return JSONResponse(request.app.state.registry.get(request.path_params["model"]).card())
    except ServiceError as error:
        return error.response()


async def health(request: Request) -> JSONResponse:
    models = {
        m.id: {
            "kind": m.kind,
            "running": m.engine.num_running,
            "waiting": m.engine.num_waiting,
            "load_seconds": m.load_seconds,
            **({"kv_cache": m.engine.blocks.occupancy()} if hasattr(m.engine, "blocks") else {}),
            **({"lora_adapters": [a.id for a in m.adapters]} if m.adapters else {}),
        }  # fmt: skip
        for m in request.app.state.registry.bases  # one per engine: an adapter runs on its base model's
    }
    broken = next((m.worker.loop.broken for m in request.app.state.registry.bases if m.worker.loop.broken),
                  None)  # fmt: skip
    if broken is not None:  # the engines stopped (EngineBroken) and the service is exiting: take it out of service
        return JSONResponse({"status": "broken", "error": str(broken), "models": models}, status_code=503)
    return JSONResponse({"status": "ok", "models": models})


async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


async def tokenize(request: Request, body: dict) -> JSONResponse:
    model = request.app.state.registry.get(body.get("model"))
    if "messages" in body and model.kind not in ROUTES_OF_KIND:  # vLLM's: the prompt a chat request gets
        ids = await chat_prompt_ids(parse_chat(body, model), model, request.app.state.image_policy)
    elif "messages" in body:
        opens, continues = read_turn(body)
        try:
            ids = model.tokenizer.apply_chat_template(read_messages(body), add_generation_prompt=opens,
                                                      continue_final_message=continues)  # fmt: skip
        except ValueError as exc:  # the template refused the conversation, as a chat request's 400
            raise ServiceError(str(exc), param="messages") from None
    elif isinstance(body.get("prompt"), str) and body.get("return_offsets") is True:
        # each token's span of the text, [start, end) in characters: a vector store cuts its chunks there
        ids, offsets = model.tokenizer.encode_with_offsets(body["prompt"])
        return JSONResponse({"tokens": ids, "count": len(ids), "max_model_len": model.max_model_len,
                             "offsets": offsets})  # fmt: skip
    elif isinstance(body.get("prompt"), str):
        ids = model.tokenizer.encode(body["prompt"], add_special_tokens=bool(body.get("add_special_tokens", True)))
    else:
        raise ServiceError("Give 'prompt' (a string) or 'messages'.", param="prompt")
    return JSONResponse({"tokens": ids, "count": len(ids), "max_model_len": model.max_model_len})


async def detokenize(request: Request, body: dict) -> JSONResponse:
    model = request.app.state.registry.get(body.get("model"))
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and 0 <= t < model.vocab_size for t in tokens):
        raise ServiceError("'tokens' must be a list of token ids of this model.", param="tokens")
    return JSONResponse({"prompt": model.tokenizer.decode(tokens, skip_special_tokens=False)})


async def _not_found(request: Request, exc) -> JSONResponse:
    return NotFound(f"Invalid URL ({request.method} {request.url.path})", code="unknown_url").response()


async def _method_not_allowed(request: Request, exc) -> JSONResponse:
    return ServiceError(f"Method {request.method} is not allowed for {request.url.path}.", status=405).response()


async def _server_error(request: Request, exc) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return ServerError("The server had an error while processing your request.").response()


class RequireKey:
    """Every route but ``/health`` (probes) needs ``Authorization: Bearer <api_key>``: the hub's shared secret."""

    OPEN = frozenset({"/health"})

    def __init__(self, app, api_key: str) -> None:
        self.app, self.expected = app, f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.OPEN:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                error = ServiceError("This inference service needs its API key (Authorization: Bearer ...).",
                                     code="invalid_api_key", status=401)  # fmt: skip
                return await error.response()(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(
    registry: ModelRegistry, metrics_: Metrics, image_policy: FetchPolicy | None = None, api_key: str | None = None,
    journal: Journal | None = None,
) -> Starlette:  # fmt: skip
    """``image_policy``: how vision requests may fetch images (default: from the INFERENCE_IMAGE_* variables);
    ``api_key``: the shared secret every request but ``/health`` must carry (None: none, loopback only);
    ``journal``: the file the tally's ledger is kept in too (``journal.py``; None: in memory only)."""
    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", _post(chat_completions), methods=["POST"]),
        Route("/v1/completions", _post(completions), methods=["POST"]),
        Route("/v1/embeddings", _post(embeddings), methods=["POST"]),
        Route("/v1/rerank", _post(rerank), methods=["POST"]),
        Route("/v2/rerank", _post(rerank), methods=["POST"]),  # Cohere's v2 path, as vLLM serves it too
        Route("/v1/score", _post(score), methods=["POST"]),
        Route("/v1/moderations", _post(moderations), methods=["POST"]),
        Route("/v1/audio/transcriptions", _post(transcriptions, json_body=False), methods=["POST"]),
        Route("/v1/audio/translations", _post(translations, json_body=False), methods=["POST"]),
        Route("/v1/audio/speech", _post(speech), methods=["POST"]),
        Route("/v1/requests/{usage_id}", requests_usage, methods=["GET"]),  # what a hub call counted (tally.py)
        Route("/tokenize", _post(tokenize), methods=["POST"]),
        Route("/detokenize", _post(detokenize), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if lora_admin.allowed():  # vLLM's runtime LoRA routes, only when the operator turns them on
        routes += [
            Route("/v1/load_lora_adapter", _post(lora_admin.load_lora_adapter), methods=["POST"]),
            Route("/v1/unload_lora_adapter", _post(lora_admin.unload_lora_adapter), methods=["POST"]),
        ]

    ledger = Ledger(journaled=journal is not None)
    if journal is not None and (loaded := journal.load(ledger)):
        log.info("%d calls read back from the tally journal %s", loaded, journal.path)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        keeping = asyncio.ensure_future(keep(ledger, journal)) if journal else None
        yield
        if keeping is not None:
            keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeping
            journal.close()
        registry.stop()

    middleware = [Middleware(RequireKey, api_key=api_key)] if api_key else []
    app = Starlette(
        routes=routes,
        exception_handlers={404: _not_found, 405: _method_not_allowed, 500: _server_error, Exception: _server_error},
        lifespan=lifespan,
        middleware=[*middleware, Middleware(Tallied, ledger=ledger)],
    )
    app.state.ledger = ledger
    app.state.registry = registry
    app.state.metrics = metrics_
    app.state.image_policy = image_policy or FetchPolicy.from_env()
    metrics_.watch_images(held_for(app.state.image_policy))
    return app
