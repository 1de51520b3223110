"""vLLM's runtime LoRA routes: ``POST /v1/load_lora_adapter`` (``{"lora_name", "lora_path"}``, and ``model``: the
base model, by default the first chat or completion model) and ``POST /v1/unload_lora_adapter`` (``{"lora_name"}``).
Served only with ``INFERENCE_ALLOW_RUNTIME_LORA=1`` (vLLM's ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``), behind the
service's shared secret like every route: they change what the service serves.

The adapter is attached or detached on the engines' thread between two steps (``EngineWorker.call``), so no step
sees half an adapter. A slot is never used twice, so the prefix cache never gives a new adapter an old one's blocks.
An adapter is unloaded only when no request uses it (a 409 otherwise); it leaves the model list first, so no new
request can take it meanwhile. The hub learns of a change when ``manage.py sync_models`` runs again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse

from inference.env import ConfigError, env_bool
from inference.server.errors import NotFound, ServiceError
from inference.server.registry import LoadedModel

log = logging.getLogger("inference.lora")


def allowed() -> bool:
    return env_bool("INFERENCE_ALLOW_RUNTIME_LORA", False)


def _name(body: dict) -> str:
    name = body.get("lora_name")
    if not isinstance(name, str) or not name:
        raise ServiceError("'lora_name' must be a non-empty string.", param="lora_name")
    return name


async def load_lora_adapter(request: Request, body: dict) -> JSONResponse:
    from inference.loader.lora import attach

    registry = request.app.state.registry
    name, path = _name(body), body.get("lora_path")
    if not isinstance(path, str) or not path:
        raise ServiceError("'lora_path' must be the adapter's directory.", param="lora_path")
    if name in registry.models:
        raise ServiceError(f"The model name '{name}' is already served.", param="lora_name")
    generative = [b for b in registry.bases if b.kind in ("chat", "completion")]
    base_id = body.get("model")
    base = next((b for b in generative if base_id is None or b.id == base_id), None)
    if base is None:
        raise ServiceError("'model' must name a chat or completion model served here.", param="model")
    slot = registry.next_lora_slot()
    try:
        targets = await base.worker.call(lambda engine: attach(engine.model, Path(path).expanduser(), slot))
    except ConfigError as exc:
        raise ServiceError(str(exc), param="lora_path") from None
    adapter = base.adapter(name, slot, path)
    base.adapters.append(adapter)
    registry.models[name] = adapter
    log.info("LoRA adapter %s loaded on %s at run time: %d projections (%s)", name, base.id, targets, path)
    return JSONResponse({"object": "lora_adapter", "id": name, "parent": base.id, "root": path, "loaded": True})


async def unload_lora_adapter(request: Request, body: dict) -> JSONResponse:
    from inference.loader.lora import detach

    registry = request.app.state.registry
    name = _name(body)
    adapter: LoadedModel | None = registry.models.get(name)
    if adapter is None or adapter.lora_id is None:
        raise NotFound(f"No LoRA adapter named '{name}' is loaded.", param="lora_name", code="lora_not_found")
    base = registry.models[adapter.parent]
    del registry.models[name]  # no new request can name it from here on

    def unload(engine) -> bool:
        seqs = [*engine.scheduler.running, *engine.scheduler.waiting]
        if any(seq.params.lora_id == adapter.lora_id for seq in seqs):
            return False
        detach(engine.model, adapter.lora_id)
        return True

    if not await base.worker.call(unload):
        registry.models[name] = adapter
        raise ServiceError(f"The LoRA adapter '{name}' is in use; unload it when its requests are done.",
                           param="lora_name", code="lora_in_use", status=409)  # fmt: skip
    base.adapters.remove(adapter)
    log.info("LoRA adapter %s unloaded from %s", name, base.id)
    return JSONResponse({"object": "lora_adapter", "id": name, "parent": base.id, "loaded": False})
