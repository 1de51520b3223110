"""``python -m inference serve``: load the configured models and serve the OpenAI-compatible API.

python -m inference serve                                  # the three packaged default models
python -m inference serve --config inference.toml          # models and port from a TOML file
python -m inference serve --model my-llama=/models/llama-3-8b:chat --port 8101
python -m inference convert path/to/model.gguf             # convert and cache only
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from inference.config import DEFAULT_MODELS, QUANTIZE_MODES, EngineConfig, ModelSpec, ServerConfig, load_config
from inference.env import ConfigError


def _model_flag(value: str) -> ModelSpec:
    """ID=SOURCE:KIND, e.g. smollm2=packaged:smollm2:chat or llama=/models/llama:chat."""
    try:
        model_id, rest = value.split("=", 1)
        source, kind = rest.rsplit(":", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--model wants ID=SOURCE:KIND, got {value!r}") from None
    return ModelSpec(id=model_id, source=source, kind=kind)


def _lora_flag(value: str) -> tuple[str, str]:
    """NAME=PATH: a PEFT LoRA adapter directory, served as the model NAME."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--lora wants NAME=PATH, got {value!r}")
    return name, path


def build_config(args: argparse.Namespace) -> ServerConfig:
    if args.config:
        config = load_config(Path(args.config))
    else:
        config = ServerConfig(models=list(args.model or DEFAULT_MODELS))
    if args.host:
        config.host = args.host
    if args.port:
        config.port = args.port
    if args.threads:
        config.threads = args.threads
    if args.tensor_parallel_size:
        config.tensor_parallel_size = args.tensor_parallel_size
    if args.tally_path:
        config.tally_path = args.tally_path
    if args.quantize:  # the generative models': encoders and speech models only by their own engine.quantize
        for spec in config.models:
            if spec.kind not in ("embedding", "rerank", "audio", "tts"):
                spec.engine = EngineConfig(**{**spec.engine.__dict__, "quantize": args.quantize})
    if args.lora:  # vLLM's --lora-modules: on the first chat or completion model
        base = next((s for s in config.models if s.kind in ("chat", "completion")), None)
        if base is None:
            raise ConfigError("--lora needs a chat or completion model to run on")
        base.lora_modules = {**base.lora_modules, **dict(args.lora)}
        base.__post_init__()
    if args.no_fused_decode:
        for spec in config.models:
            spec.engine = EngineConfig(**{**spec.engine.__dict__, "fused_decode": False})
    config.__post_init__()
    return config


def serve(config: ServerConfig) -> int:
    """Engines on this (main) thread, HTTP on a second one; see ``inference.engine.worker`` for why."""
    import signal
    import threading

    import torch
    import uvicorn

    from inference.engine.worker import EngineLoop
    from inference.server.app import create_app
    from inference.server.journal import Journal
    from inference.server.metrics import Metrics
    from inference.server.registry import ModelRegistry, load

    if config.threads:
        torch.set_num_threads(config.threads)
    journal = Journal(config.tally_path) if config.tally_path else None  # before the models load: a bad path fails fast
    metrics = Metrics()
    engines = EngineLoop()
    ranks = None
    if config.tensor_parallel_size > 1:
        from inference.server.tensor_parallel import start_ranks

        ranks = start_ranks(config)  # the other ranks load their slices; this process is rank 0
    registry = ModelRegistry([load(spec, metrics, engines, ranks) for spec in config.models])
    app = create_app(registry, metrics, api_key=config.api_key, journal=journal)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning"))

    def serve_http() -> None:
        try:
            server.run()
        finally:  # stopped, or it could not bind: the engines stop with it
            engines.stop()

    def on_signal(signum, frame) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    http = threading.Thread(target=serve_http, name="http", daemon=True)
    http.start()
    while not server.started and http.is_alive():
        time.sleep(0.05)
    if server.started:
        print(f"inference service: http://{config.host}:{config.port}/v1  models: {', '.join(registry.models)}",
              flush=True)  # fmt: skip
    engines_done = threading.Event()
    if ranks is not None:
        ranks.watch(engines, engines_done)
    engines.run()
    engines_done.set()
    server.should_exit = True  # the engines stopped: by a signal (already set), or broken (EngineBroken)
    http.join(timeout=30)
    if engines.broken is not None:  # a rank waits in a collective that never completes: do not wait on it
        print(f"inference service: the engines broke ({engines.broken}); exiting to be restarted", flush=True)
        return 1
    if ranks is not None:
        ranks.stop()
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve models over an OpenAI-compatible HTTP API")
    s.add_argument("--config", help="TOML file with [server], [engine] and [[models]]")
    s.add_argument("--model", action="append", type=_model_flag, help="ID=SOURCE:KIND (repeatable)")
    s.add_argument("--lora", action="append", type=_lora_flag,
                   help="NAME=PATH: a PEFT LoRA adapter on the first chat or completion model, served as NAME "
                   "(repeatable; vLLM's --lora-modules)")  # fmt: skip
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    s.add_argument(
        "--tally-path",
        help="keep what each hub call counted in this SQLite file too, so that calls "
        "running when the service was killed are metered after a restart (default: INFERENCE_TALLY_PATH)",
    )
    s.add_argument("--tensor-parallel-size", type=int, help="split the model over N processes (GPUs; gloo on the CPU)")
    s.add_argument("--quantize", choices=list(QUANTIZE_MODES), help="override every generative model's engine.quantize")
    s.add_argument("--no-fused-decode", action="store_true", help="decode on the torch path (engine.fused_decode off)")
    c = sub.add_parser("convert", help="convert a GGUF file into the cache (HF layout) and print the directory")
    c.add_argument("gguf")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command == "convert":
            from inference.loader.convert import ensure_converted

            print(ensure_converted(Path(args.gguf)))
            return 0
        return serve(build_config(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
