"""A request that makes a step fail fails alone (``inference/engine/quarantine.py``): the requests batched with it get
the tokens they get alone, the engine frees everything and goes on serving. On the tiny random-weight Llama of
``test_scheduler.py``, with a fault put in the model's forward pass, its sampler, a detokenizer or the scheduler."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
import torch
from openai import OpenAI

from inference.config import EngineConfig, ModelSpec
from inference.engine import llm_engine
from inference.engine.embedding_engine import EmbeddingEngine
from inference.engine.output import RequestFailed
from inference.engine.quarantine import EngineBroken
from inference.engine.worker import EngineLoop
from inference.loader.safetensors import load_model
from inference.sampling_params import SamplingParams
from inference.server import registry
from inference.server.app import create_app
from inference.server.metrics import Metrics
from inference.tokenizer.detokenizer import IncrementalDetokenizer
from inference.tokenizer.tokenizer import Tokenizer
from tests.support import checkpoints, encoders
from tests.support.models import engine_on
from tests.support.processes import free_port

PROMPTS = {
    "a": "The capital of France is",
    "b": "def fibonacci(n):\n    ",
    "c": "Once upon a time, in a small village by the sea,",
}
POISON_PROMPT = "1, 2, 3, 4,"
POISON_ID = 7  # at position 1 of the poisoned prompt only: a sampled token never reaches position 1


class Poisoned(RuntimeError):
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = checkpoints.tiny_chat_checkpoint(tmp_path_factory.mktemp("tiny-chat"))
    return load_model(directory).eval(), Tokenizer.from_dir(directory)


@pytest.fixture
def encode(tiny):
    return lambda text: tiny[1].encode(text, add_special_tokens=True)


@pytest.fixture
def poison(encode) -> list[int]:
    ids = encode(POISON_PROMPT)
    return [ids[0], POISON_ID, *ids[1:]]


@pytest.fixture
def faulty(tiny):
    """``fail(when)`` makes the model's forward raise ``Poisoned`` whenever ``when(ids, positions)`` holds."""
    handles = []

    def fail(when):
        def hook(module, args):
            if when(args[0], args[1]):
                raise Poisoned("the forward pass met the poisoned token")

        handles.append(tiny[0].register_forward_pre_hook(hook))

    yield fail
    for handle in handles:
        handle.remove()


def poisoned(ids: torch.Tensor, positions: torch.Tensor) -> bool:
    return bool(((ids == POISON_ID) & (positions == 1)).any())


def greedy() -> SamplingParams:
    return SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)


def run(engine, steps: int | None = None) -> tuple[dict[str, list[int]], dict[str, Exception]]:
    """Step until idle (or ``steps`` steps): each request's tokens, and the errors of the requests that failed."""
    tokens: dict[str, list[int]] = {}
    failed: dict[str, Exception] = {}
    while engine.has_work and steps != 0:
        for out in engine.step():
            if isinstance(out, RequestFailed):
                failed[out.request_id] = out.error
            else:
                tokens.setdefault(out.request_id, []).extend(out.token_ids)
        steps = None if steps is None else steps - 1
    return tokens, failed


@pytest.fixture(scope="module")
def alone(tiny):
    out = {}
    for key, text in PROMPTS.items():
        engine = engine_on(*tiny)
        engine.add_request(key, tiny[1].encode(text, add_special_tokens=True), greedy())
        out[key] = run(engine)[0][key]
    assert len({tuple(ids) for ids in out.values()}) == len(PROMPTS)
    return out


def idle_and_free(engine) -> bool:
    return not engine.has_work and not engine.requests and engine.blocks.num_in_use == 0 and not engine.outputs


def test_the_request_that_fails_a_step_fails_alone(tiny, encode, poison, faulty, alone):
    faulty(poisoned)
    engine = engine_on(*tiny)
    engine.add_request("a", encode(PROMPTS["a"]), greedy())
    engine.add_request("poison", poison, greedy())
    for key in "bc":
        engine.add_request(key, encode(PROMPTS[key]), greedy())
    tokens, failed = run(engine)
    assert tokens == alone
    assert list(failed) == ["poison"] and isinstance(failed["poison"], Poisoned)
    # the four prompts' step, then the poisoned request alone; "a" ran alone before it, "b" and "c" after
    assert engine.failed_steps == 2
    assert idle_and_free(engine) and not engine.quarantine.suspects


def test_a_request_failing_as_it_joins_running_ones_leaves_them_their_tokens(tiny, encode, poison, faulty, alone):
    faulty(poisoned)
    engine = engine_on(*tiny)
    for key, text in PROMPTS.items():
        engine.add_request(key, encode(text), greedy())
    tokens, failed = run(engine, steps=4)
    assert not failed
    engine.add_request("poison", poison, greedy())  # its prefill joins the three decoding sequences' step
    more, failed = run(engine)
    for key, ids in more.items():
        tokens[key] += ids
    assert tokens == alone and list(failed) == ["poison"]
    assert idle_and_free(engine)
    engine.add_request("a", encode(PROMPTS["a"]), greedy())  # served as before
    assert run(engine)[0] == {"a": alone["a"]}


class UndecodableDetokenizer(IncrementalDetokenizer):
    def add(self, token_id: int) -> str:
        raise Poisoned(f"cannot decode {token_id}")


def test_a_sequence_that_fails_on_its_own_fails_its_request_and_no_step(tiny, encode, poison, alone):
    """Its text, not the forward pass: its own work after the step ran, so nothing runs again."""

    def detokenizer(tokenizer, prompt_ids):
        return (UndecodableDetokenizer if prompt_ids == poison else IncrementalDetokenizer)(tokenizer, prompt_ids)

    engine = llm_engine.LLMEngine(*tiny, detokenizer, EngineConfig(kv_cache_tokens=1024))
    engine.add_request("poison", poison, greedy(), n=2)
    for key, text in PROMPTS.items():
        engine.add_request(key, encode(text), greedy())
    tokens, failed = run(engine)
    assert tokens == alone and list(failed) == ["poison"] and isinstance(failed["poison"], Poisoned)
    assert engine.failed_steps == 0 and idle_and_free(engine)


def test_a_sampler_that_fails_once_costs_no_request_its_tokens(tiny, encode, alone, monkeypatch):
    """Nothing of a failed step was kept: each request runs it again, alone, and goes on as if it never failed."""
    calls = []

    def sample_failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Poisoned("the sampler failed")
        return real(*args, **kwargs)

    real = llm_engine.sample
    monkeypatch.setattr(llm_engine, "sample", sample_failing_once)
    engine = engine_on(*tiny)
    for key, text in PROMPTS.items():
        engine.add_request(key, encode(text), greedy())
    tokens, failed = run(engine)
    assert tokens == alone and not failed and engine.failed_steps == 1
    assert idle_and_free(engine)


def test_seeded_requests_draw_alone_what_they_drew_before_a_sampler_failed(tiny, encode, poison, monkeypatch):
    """The sampler fails on one request's row after the others drew theirs: the retries draw the same."""

    def seeded(seed: int) -> SamplingParams:
        return SamplingParams(max_tokens=16, temperature=1.0, seed=seed, ignore_eos=True)

    def run_seeded(with_poison: bool) -> dict[str, list[int]]:
        engine = engine_on(*tiny)
        for seed, (key, text) in enumerate(PROMPTS.items()):
            engine.add_request(key, encode(text), seeded(seed))
        if with_poison:
            engine.add_request("poison", poison, bad)
        tokens, failed = run(engine)
        assert list(failed) == (["poison"] if with_poison else [])
        return tokens

    bad = seeded(99)
    real = llm_engine.sample

    def sample_failing_on_the_poison(logits, params, *args, **kwargs):
        result = real(logits, params, *args, **kwargs)  # every row drew
        if any(p is bad for p in params):
            raise Poisoned("the sampler failed on the poisoned row")
        return result

    expected = run_seeded(with_poison=False)
    monkeypatch.setattr(llm_engine, "sample", sample_failing_on_the_poison)
    assert run_seeded(with_poison=True) == expected


def test_a_broken_model_fails_every_request_and_the_engine_still_serves(tiny, encode, faulty, alone):
    broken = [True]
    faulty(lambda ids, positions: broken[0])
    engine = engine_on(*tiny)
    for key, text in PROMPTS.items():
        engine.add_request(key, encode(text), greedy())
    tokens, failed = run(engine)
    assert not tokens and sorted(failed) == ["a", "b", "c"]
    assert engine.failed_steps == 4  # the batch, then each alone
    assert idle_and_free(engine)
    broken[0] = False
    engine.add_request("b", encode(PROMPTS["b"]), greedy())
    assert run(engine)[0] == {"b": alone["b"]}


def _serve(engine, requests: dict[str, list[int]]) -> tuple[dict, list[int], object]:
    """The requests through an ``EngineLoop``, all in its inbox before its first step: request id -> its tokens or
    the exception its queue got; the failed requests the metrics hook counted at each step; the worker."""
    failures: list[int] = []
    loop = EngineLoop()
    worker = loop.add(engine, "tiny", on_step=lambda engine, seconds, failed: failures.append(failed))

    async def answer(queue: asyncio.Queue):
        ids: list[int] = []
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                return item
            ids += item.token_ids
            if item.finish_reason:
                return ids

    async def all_of_them():
        queues = [worker.submit(request_id, prompt_ids, greedy()) for request_id, prompt_ids in requests.items()]
        loop.start_thread()
        return await asyncio.wait_for(asyncio.gather(*map(answer, queues)), timeout=120)  # a dead loop fails

    try:
        answers = dict(zip(requests, asyncio.run(all_of_them()), strict=True))
    finally:
        loop.stop()
    return answers, failures, worker


def test_through_the_engine_loop_only_the_failing_request_gets_an_error(tiny, encode, poison, faulty, alone):
    faulty(poisoned)
    engine = engine_on(*tiny)
    requests = {key: encode(text) for key, text in PROMPTS.items()}
    answers, failures, worker = _serve(engine, {**requests, "poison": poison})
    assert isinstance(answers.pop("poison"), Poisoned)
    assert answers == alone and sum(failures) == 1
    assert not worker._queues and idle_and_free(engine)


def test_a_step_that_raises_outside_the_model_fails_the_requests_in_flight_and_forgets_them(
    tiny, encode, alone, monkeypatch
):
    engine = engine_on(*tiny)
    real = engine.scheduler.schedule
    calls = []

    def schedule_failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the prompts' step, one decode step, then this
            raise Poisoned("the scheduler failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.scheduler, "schedule", schedule_failing_once)
    answers, failures, worker = _serve(engine, {key: encode(text) for key, text in PROMPTS.items()})
    assert all(isinstance(answer, Poisoned) for answer in answers.values())
    assert sum(failures) == 3 and not worker._queues and idle_and_free(engine)
    answers, _, _ = _serve(engine, {"c": encode(PROMPTS["c"])})
    assert answers == {"c": alone["c"]}


def test_an_embedding_input_that_fails_the_batch_fails_alone(tmp_path):
    model = load_model(encoders.qwen2_checkpoint(tmp_path))
    inputs = {"a": [[5, 9, 14]], "poison": [[4, 2, 8]], "b": [[11, 3], [6, 6, 6, 6]]}
    engine = EmbeddingEngine(model)
    for key, ids in inputs.items():
        engine.add_request(key, ids)
    expected = {r.request_id: r.values for r in engine.step()}
    handle = model.register_forward_pre_hook(lambda module, args: _raise_on(args[0], 2))
    try:
        for key, ids in inputs.items():
            engine.add_request(key, ids)
        results = {r.request_id: r for r in engine.step()}  # one batch: it fails, then each request alone
    finally:
        handle.remove()
    assert isinstance(results.pop("poison"), RequestFailed)
    assert set(results) == {"a", "b"} and not engine.has_work and not engine.requests
    for key, result in results.items():
        torch.testing.assert_close(result.values, expected[key], atol=1e-5, rtol=0)


def _raise_on(ids: torch.Tensor, token: int) -> None:
    if bool((ids == token).any()):
        raise Poisoned("the embedding forward met the poisoned token")


def test_the_metrics_count_failed_requests():
    metrics = Metrics()
    hook = metrics.on_step("tiny")
    engine = SimpleNamespace(num_waiting=0, num_running=3)
    hook(engine, 0.01, 0)
    hook(engine, 0.02, 2)
    assert 'inference_failed_requests_total{model="tiny"} 2.0' in metrics.render().decode()


# --- over HTTP: the service with the OpenAI SDK ------------------------------------------------------------------


@pytest.fixture
def service(tmp_path):
    """The service in this process (so that its model can be given a fault): HTTP on a loopback port, the engine
    loop on a thread of its own; yields (url, the loaded model)."""
    import uvicorn

    directory = checkpoints.tiny_chat_checkpoint(tmp_path / "tiny")
    metrics, engines = Metrics(), EngineLoop()
    loaded = registry.load(ModelSpec(id="tiny", source=str(directory), kind="completion"), metrics, engines)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(registry.ModelRegistry([loaded]), metrics), port=port,
                                           log_level="warning"))  # fmt: skip
    http = threading.Thread(target=server.run, daemon=True)
    http.start()
    engines.start_thread()
    while not server.started and http.is_alive():
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", loaded
    finally:
        server.should_exit = True
        http.join(timeout=30)
        engines.stop()


def test_over_http_the_failing_requests_get_openai_errors_and_the_others_their_answers(service, tiny, poison):
    url, loaded = service
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

    def complete(prompt) -> str:
        return client.completions.create(model="tiny", prompt=prompt, max_tokens=16, temperature=0).choices[0].text

    def streamed(prompt) -> str:
        stream = client.completions.create(model="tiny", prompt=prompt, max_tokens=16, temperature=0, stream=True)
        return "".join(chunk.choices[0].text for chunk in stream if chunk.choices)

    alone = {key: complete(text) for key, text in PROMPTS.items()}
    handle = loaded.engine.model.register_forward_pre_hook(
        lambda module, args: _raise_on_poison(args[0], args[1])
    )  # fmt: skip
    try:
        with ThreadPoolExecutor(5) as pool:
            answers = {key: pool.submit(complete, text) for key, text in PROMPTS.items()}
            whole = pool.submit(complete, poison)
            stream = pool.submit(streamed, poison)
            answers = {key: future.result() for key, future in answers.items()}
            with pytest.raises(openai.InternalServerError) as refused:
                whole.result()
            with pytest.raises(openai.APIError) as broken:
                stream.result()
    finally:
        handle.remove()
    assert answers == alone
    error = {"message": "The model failed while generating: Poisoned.", "type": "server_error", "param": None,
             "code": None}  # fmt: skip
    assert refused.value.response.json() == {"error": error}
    assert broken.value.message == error["message"]
    assert 'inference_failed_requests_total{model="tiny"} 2.0' in httpx.get(f"{url}/metrics").text
    assert httpx.get(f"{url}/health").json()["models"]["tiny"]["running"] == 0
    assert complete(PROMPTS["a"]) == alone["a"]


def _raise_on_poison(ids: torch.Tensor, positions: torch.Tensor) -> None:
    if poisoned(ids, positions):
        raise Poisoned("the forward pass met the poisoned token")


def test_a_broken_engine_fails_its_requests_and_takes_the_service_out(service, monkeypatch):
    """``EngineBroken`` (a tensor-parallel rank 0 that failed after its broadcast: ``test_tensor_parallel.py``) is
    never retried: the request fails, the engines stop, /health answers 503 so that the service is taken out, and
    a new request is refused at once instead of waiting for an engine that no longer steps."""
    url, loaded = service

    def broken(step):
        raise EngineBroken("rank 0 failed in a step the other ranks are running")

    monkeypatch.setattr(loaded.engine.runner, "run", broken)
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.InternalServerError) as refused:  # the request that broke it
        client.completions.create(model="tiny", prompt=PROMPTS["a"], max_tokens=4)
    assert refused.value.status_code == 500 and refused.value.response.json()["error"]["type"] == "server_error"
    with pytest.raises(openai.InternalServerError) as refused:  # one sent after: refused at once
        client.completions.create(model="tiny", prompt=PROMPTS["a"], max_tokens=4)
    assert refused.value.status_code == 503 and refused.value.response.json()["error"]["code"] == "engine_stopped"
    health = httpx.get(f"{url}/health")
    assert health.status_code == 503 and health.json()["status"] == "broken"
    assert loaded.engine.failed_steps == 0 and not loaded.engine.requests  # failed at once, not retried


BREAK_THE_ENGINE = """
import sys
sys.path.insert(0, sys.argv.pop(1))
from inference.engine import llm_engine
from inference.engine.quarantine import EngineBroken

def step(self):  # the first step with work breaks, as a tensor-parallel rank 0 failing after its broadcast
    self.scheduler.schedule()
    raise EngineBroken("the test broke it")

llm_engine.LLMEngine.step = step
from inference.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_service_exits_to_be_restarted_when_its_engine_breaks(tmp_path):
    """``python -m inference serve`` with its engine broken on its first step (the wrapper replaces the step in the
    service's own process): the request gets OpenAI's error, and the process exits 1 instead of hanging."""
    script = tmp_path / "broken_serve.py"
    script.write_text(BREAK_THE_ENGINE)
    directory = checkpoints.tiny_chat_checkpoint(tmp_path / "tiny")
    port = free_port()
    root = str(Path(__file__).resolve().parents[2])
    cmd = [sys.executable, str(script), root, "serve", "--port", str(port), "--model", f"tiny={directory}:completion"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        body = {"model": "tiny", "prompt": "Hello", "max_tokens": 3}
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=60)
        assert answer.status_code == 500 and answer.json()["error"]["type"] == "server_error"
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1, output
    assert "the engines broke (the test broke it); exiting to be restarted" in output
