"""Tensor parallelism on the CPU (gloo): a model split over 2 processes (``inference.parallel.tensor_parallel``:
heads, MLP columns and rows, vocab-parallel embedding and head) gives the logits of the whole model on one
process within 1e-4 (fp32), and the same greedy next tokens, for Llama, Qwen2 (q/k/v biases), Qwen3 (q/k norms)
and Gemma 3 (tied embeddings, softcapping) tiny checkpoints; and through the engine (one scheduler on rank 0
driving both ranks, ``inference.engine.parallel_runner``), over the paged KV cache with chunked prefill, the same
greedy tokens and logprobs within 1e-4 as on one process. Each rank is its own process, as in serving."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from inference.config import EngineConfig
from inference.engine.llm_engine import LLMEngine
from inference.engine.parallel_runner import TensorParallelRunner, follow
from inference.engine.quarantine import EngineBroken
from inference.loader.safetensors import load_model
from inference.parallel.tensor_parallel import shard
from inference.sampling_params import SamplingParams
from tests.support import checkpoints as rc
from tests.support.checkpoints import IdDetokenizer, IdTokenizer
from tests.support.models import greedy_answers, run_to_end
from tests.support.processes import free_port

BUILDERS = {
    "llama": rc.llama_checkpoint,
    "qwen2": rc.qwen2_checkpoint,
    "qwen3": rc.qwen3_checkpoint,
    "gemma3": rc.gemma3_checkpoint,
}
PROMPTS = [[1, 5, 9, 33, 2, 7, 100, 12, 4], [3, 64, 65, 8], [17] * 13]
POISON = 77  # in no prompt of PROMPTS (the vocabulary has 128 ids)


def _rank(rank: int, size: int, port: int, path: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    torch.set_num_threads(1)
    model = shard(load_model(Path(path)).eval(), rank, size)
    logits = rc.prefill_logits(model, PROMPTS)
    if rank == 0:
        torch.save(logits, out)
    _leave()


def _leave() -> None:
    """Both ranks done: leave together, skipping the interpreter's teardown, where gloo's threads now and then
    abort the exit ("terminate called without an active exception") after all the work succeeded."""
    dist.barrier()
    os._exit(0)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_two_ranks_give_the_whole_models_logits(name, tmp_path):
    path = BUILDERS[name](tmp_path / name)
    whole = rc.prefill_logits(load_model(path).eval(), PROMPTS)
    out = tmp_path / "logits.pt"
    mp.spawn(_rank, args=(2, free_port(), str(path), str(out)), nprocs=2, join=True)
    split = torch.load(out)
    assert split.shape == whole.shape
    assert (split - whole).abs().max().item() < 1e-4
    assert torch.equal(split.argmax(-1), whole.argmax(-1))


def test_heads_that_do_not_divide_are_refused(tmp_path):
    model = load_model(rc.llama_checkpoint(tmp_path / "llama")).eval()  # 4 heads, 2 key-value heads
    with pytest.raises(ValueError, match="attention heads divisible by 3"):
        shard(model, 0, 3)


# chunked prefill (5 tokens a step) over 4-token blocks: prompts cross blocks and steps, decodes join prefills
ENGINE = {"kv_cache_tokens": 512, "block_size": 4, "max_batched_tokens": 5}
GREEDY = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True, logprobs=0)


def _serve(engine: LLMEngine) -> dict:
    for i, prompt in enumerate(PROMPTS):
        engine.add_request(str(i), prompt, GREEDY)
    return greedy_answers(run_to_end(engine))


def _engine_rank(rank: int, size: int, port: int, path: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    torch.set_num_threads(1)
    model = shard(load_model(Path(path)).eval(), rank, size)
    if rank:
        follow(model, EngineConfig(**ENGINE))
    else:
        engine = LLMEngine(model, IdTokenizer(), IdDetokenizer, EngineConfig(**ENGINE))
        engine.runner = TensorParallelRunner(engine.runner)
        answers = _serve(engine)
        engine.runner.stop()
        torch.save(answers, out)
    _leave()


@pytest.mark.parametrize("name", ["llama", "qwen2", "gemma3"])
def test_one_scheduler_drives_two_ranks_through_the_paged_cache(name, tmp_path):
    path = BUILDERS[name](tmp_path / name)
    alone = _serve(LLMEngine(load_model(path).eval(), IdTokenizer(), IdDetokenizer, EngineConfig(**ENGINE)))
    out = tmp_path / "answers.pt"
    mp.spawn(_engine_rank, args=(2, free_port(), str(path), str(out)), nprocs=2, join=True)
    split = torch.load(out)
    assert {k: ids for k, (ids, _) in split.items()} == {k: ids for k, (ids, _) in alone.items()}
    for key, (_, logprobs) in split.items():
        assert max(abs(a - b) for a, b in zip(logprobs, alone[key][1], strict=True)) < 1e-4


@pytest.mark.live
def test_the_service_serves_a_model_over_two_ranks(tmp_path):
    """``python -m inference serve --tensor-parallel-size 2``: the same greedy completions (plain and streamed) as
    one process serving the same float model, and a clean stop (no traceback from either rank)."""
    import httpx

    from tests.support.inference import inference_service

    directory = rc.tiny_chat_checkpoint(tmp_path / "tiny")
    model = ["--model", f"tiny={directory}:completion", "--threads", "1"]
    bodies = [{"model": "tiny", "prompt": p, "max_tokens": 12, "temperature": 0} for p in ("Hello there", "A cat")]
    answers = {}
    for size in (1, 2):
        args = [*model, "--tensor-parallel-size", str(size)] if size > 1 else [*model, "--quantize", "none"]
        with inference_service(*args, timeout=120) as url:
            texts = [httpx.post(f"{url}/v1/completions", json=b, timeout=60).json()["choices"][0]["text"]
                     for b in bodies]  # fmt: skip
            with httpx.stream("POST", f"{url}/v1/completions", json={**bodies[0], "stream": True}) as response:
                streamed = "".join(
                    json.loads(line[6:])["choices"][0]["text"]
                    for line in response.iter_lines()
                    if line.startswith("data: {") and json.loads(line[6:])["choices"]
                )  # fmt: skip
        answers[size] = (texts, streamed)
    assert answers[2] == answers[1] and answers[1][0][0] == answers[1][1]


def _broken_rank(rank: int, size: int, port: int, path: str, out: str, poisoned_rank: int = 0,
                 leave: bool = False) -> None:  # fmt: skip
    """Rank ``poisoned_rank``'s forward pass raises on the poisoned prompt (``leave``: the rank exits once its
    second step is done, between two steps); rank 0 records how its engine ended."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size,
                            timeout=timedelta(seconds=30))  # fmt: skip
    torch.set_num_threads(1)
    model = shard(load_model(Path(path)).eval(), rank, size)

    def hook(module, args):
        if bool((args[0] == POISON).any()):
            raise RuntimeError(f"the poisoned prompt on rank {rank}")

    steps = [0]

    def gone(module, args, output):
        steps[0] += 1
        if steps[0] == 2:
            os._exit(0)

    if rank == poisoned_rank:
        model.register_forward_hook(gone) if leave else model.register_forward_pre_hook(hook)
    if rank:
        try:  # rank 0 leaving fails its step's collective (or it times out); a poisoned rank raises itself
            follow(model, EngineConfig(**ENGINE))
        finally:
            os._exit(0)
    engine = LLMEngine(model, IdTokenizer(), IdDetokenizer, EngineConfig(**ENGINE))
    engine.runner = TensorParallelRunner(engine.runner)
    engine.add_request("ok", PROMPTS[0], GREEDY)
    engine.add_request("poison", [POISON, 5, 6], GREEDY)
    try:
        run_to_end(engine)
        outcome = "served"
    except EngineBroken as exc:
        outcome = f"{type(exc).__name__}: {exc}; {engine.failed_steps} steps retried"
    torch.save(outcome, out)
    os._exit(0)  # no barrier: rank 1 is in a collective that will never complete


def test_a_rank_0_failure_after_the_broadcast_breaks_the_engine_instead_of_retrying(tmp_path):
    """The other rank is waiting in the failed step's collectives: running a step again would pair collectives of
    different steps (or hang). So the failure is ``EngineBroken``, which the engine never retries (the service then
    exits to be restarted: ``test_step_failures.py``)."""
    path = rc.llama_checkpoint(tmp_path / "llama")
    out = tmp_path / "outcome.pt"
    mp.spawn(_broken_rank, args=(2, free_port(), str(path), str(out)), nprocs=2, join=True)
    assert torch.load(out) == (
        "EngineBroken: a step across the ranks failed (rank 0's part or a collective): RuntimeError('the poisoned "
        "prompt on rank 0'); 0 steps retried"
    )


@pytest.mark.parametrize("leave", [False, True], ids=["fails-in-its-pass", "leaves-between-steps"])
def test_a_failure_on_another_rank_breaks_rank_0s_engine(tmp_path, leave):
    """Rank 1 fails in its forward pass and leaves, or leaves between two steps: rank 0's next collective with it
    (in the pass, or the step's broadcast) fails (gloo: at once), and that is ``EngineBroken`` too, never retried
    (a retry would wait on a rank that is gone)."""
    path = rc.llama_checkpoint(tmp_path / "llama")
    out = tmp_path / "outcome.pt"
    mp.spawn(_broken_rank, args=(2, free_port(), str(path), str(out), 1, leave), nprocs=2, join=True)
    outcome = torch.load(out)
    assert outcome.startswith("EngineBroken: a step across the ranks failed (rank 0's part or a collective): ")
    assert outcome.endswith("; 0 steps retried") and "poisoned" not in outcome, (
        outcome
    )  # rank 1's own error stays there


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of ``pid``'s child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return found


@pytest.mark.live
def test_the_service_exits_when_another_rank_dies(tmp_path):
    """A rank process killed while the service is idle: rank 0 would find out only at its next collective (on
    NCCL, after the process group's timeout), so it watches them: the service stops at once and exits 1, to be
    restarted, saying which rank died."""
    import signal
    import time

    from tests.support.inference import start_service

    directory = rc.tiny_chat_checkpoint(tmp_path / "tiny")
    service = start_service("--model", f"tiny={directory}:completion", "--threads", "1", "--tensor-parallel-size",
                            "2", timeout=120)  # fmt: skip
    try:
        [(rank_pid, _)] = [c for c in _children(service.process.pid) if "spawn_main" in c[1]]
        os.kill(rank_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while service.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        code = service.process.poll()
    finally:
        output = service.process.stop(timeout=10)
    assert code == 1, output
    assert "rank 1 exited (code -9)" in output, output
