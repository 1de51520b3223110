"""The scheduler, the paged KV cache and the sampler through the whole engine, on a tiny random-weight Llama with a
tokenizer (``checkpoints.tiny_chat_checkpoint``): continuous batching, chunked prefill, preemption, seeds and
``n``, stop strings, penalties, abort and priorities. Whatever else is in the batch, a sequence gets the tokens it
gets alone. The same engine on the packaged models, against transformers: ``test_engine.py``."""

from __future__ import annotations

import pytest

from inference.loader.safetensors import load_model
from inference.sampling_params import SamplingParams
from inference.tokenizer.tokenizer import Tokenizer
from tests.support import checkpoints
from tests.support.models import engine_on, run_to_end, watch_preemptions

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    "1, 2, 3, 4,",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = checkpoints.tiny_chat_checkpoint(tmp_path_factory.mktemp("tiny-chat"))
    return load_model(directory).eval(), Tokenizer.from_dir(directory)


@pytest.fixture
def make(tiny):
    return lambda **options: engine_on(*tiny, **options)


@pytest.fixture
def encode(tiny):
    return lambda text: tiny[1].encode(text, add_special_tokens=True)


def collect(engine, results: dict, steps: int | None = None, finished: list | None = None) -> dict:
    """Step ``steps`` times (None: until idle), adding each request's tokens to ``results`` (and finish order)."""
    while engine.has_work and (steps is None or steps > 0):
        for d in engine.step():
            results.setdefault(d.request_id, []).extend(d.token_ids)
            if d.finish_reason is not None and finished is not None:
                finished.append(d.request_id)
        steps = None if steps is None else steps - 1
    return results


def greedy(max_tokens: int = 24, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, **kw)


@pytest.fixture
def alone(make, encode):
    """Each prompt decoded on its own: the reference for every batching test."""
    out = {}
    for i, text in enumerate(PROMPTS):
        engine = make()
        engine.add_request(str(i), encode(text), greedy())
        out[str(i)] = run_to_end(engine)[(str(i), 0)]["ids"]
    assert len({tuple(ids) for ids in out.values()}) == len(PROMPTS)  # four different answers to tell apart
    return out


def test_requests_joining_mid_flight_get_the_same_tokens(make, encode, alone):
    engine = make()
    engine.add_request("0", encode(PROMPTS[0]), greedy())
    engine.add_request("1", encode(PROMPTS[1]), greedy())
    results: dict = {}
    for _ in range(5):  # two sequences decode; then two more join the running batch
        for d in engine.step():
            results.setdefault(d.request_id, []).extend(d.token_ids)
    engine.add_request("2", encode(PROMPTS[2]), greedy())
    engine.add_request("3", encode(PROMPTS[3]), greedy())
    for key, r in run_to_end(engine).items():
        results.setdefault(key[0], []).extend(r["ids"])
    assert results == alone


def test_chunked_prefill_and_mixed_steps(make, encode, alone):
    engine = make(max_batched_tokens=5)  # prompts split into 5-token chunks
    for i, text in enumerate(PROMPTS):
        engine.add_request(str(i), encode(text), greedy())
    assert {k[0]: r["ids"] for k, r in run_to_end(engine).items()} == alone


def test_preemption_when_the_cache_is_full(make, encode, alone):
    # 8 blocks of 8 tokens cannot hold four sequences of 34 to 63 tokens: some are preempted and recomputed
    engine = make(kv_cache_tokens=64, block_size=8, max_model_len=64)
    preempted = watch_preemptions(engine)
    for i, text in enumerate(PROMPTS):
        engine.add_request(str(i), encode(text), greedy())
    assert {k[0]: r["ids"] for k, r in run_to_end(engine).items()} == alone
    assert preempted, "the cache was never full: nothing was preempted"
    assert engine.blocks.num_free == engine.blocks.num_blocks


def test_seed_reproduces_and_n_gives_distinct_choices(make, encode):
    ids = encode(PROMPTS[2])

    def sampled(seed, n=1):
        engine = make()
        engine.add_request("s", ids, SamplingParams(max_tokens=16, temperature=1.0, seed=seed, ignore_eos=True), n=n)
        return [r["ids"] for _, r in sorted(run_to_end(engine).items())]

    assert sampled(7) == sampled(7)
    assert sampled(7) != sampled(8)
    choices = sampled(11, n=3)
    assert len(choices) == 3 and len({tuple(c) for c in choices}) == 3


def test_stop_string_across_tokens_is_not_in_the_output(make, encode, tiny):
    ids = encode(PROMPTS[2])
    engine = make()
    engine.add_request("full", ids, greedy(24))
    full = run_to_end(engine)[("full", 0)]
    text, pieces = full["text"], [tiny[1].decode([i]) for i in full["ids"]]
    assert "".join(pieces) == text
    # a stop string that starts inside a token of several characters and ends in a later token
    first = next(i for i, piece in enumerate(pieces) if len(piece) > 1)
    start = len("".join(pieces[:first])) + 1
    stop = text[start : start + 6]
    assert len(stop) == 6 and start + 6 > len("".join(pieces[: first + 1])), (text, pieces)
    engine.add_request("cut", ids, greedy(24, stop=[stop]))
    cut = run_to_end(engine)[("cut", 0)]
    assert cut["text"] == text[: text.index(stop)]
    assert cut["finish"] == "stop"


def test_repetition_and_frequency_penalties_change_the_output(make, encode):
    ids = encode(PROMPTS[3])
    outputs = []
    for params in [greedy(24), greedy(24, repetition_penalty=1.5), greedy(24, frequency_penalty=2.0)]:
        engine = make()
        engine.add_request("p", ids, params)
        outputs.append(run_to_end(engine)[("p", 0)]["ids"])
    plain, repeated, frequent = outputs
    assert repeated != plain and frequent != plain
    assert len(set(frequent)) >= len(set(plain))  # penalised output repeats itself less


def test_abort_frees_the_sequence_at_once(make, encode):
    engine = make()
    engine.add_request("a", encode(PROMPTS[1]), greedy(200))
    engine.add_request("b", encode(PROMPTS[2]), greedy(3))
    engine.step()
    assert engine.blocks.num_free < engine.blocks.num_blocks
    [delta] = engine.abort("a")
    assert delta.finish_reason == "abort"
    assert run_to_end(engine)[("b", 0)]["finish"] == "length"
    assert not engine.has_work and engine.blocks.num_free == engine.blocks.num_blocks


# --- priorities (vLLM's: a lower value runs first) ---------------------------------------------------------------


def test_waiting_requests_are_admitted_by_priority_then_arrival(make, encode, alone):
    engine = make(max_num_seqs=1)  # one at a time: the finishing order is the admission order
    for i, priority in [("0", 2), ("1", 0), ("2", 2), ("3", 1)]:
        engine.add_request(i, encode(PROMPTS[int(i)]), greedy(priority=priority))
    finished: list[str] = []
    assert collect(engine, {}, finished=finished) == alone
    assert finished == ["1", "3", "0", "2"]


def test_a_request_of_equal_or_lower_priority_waits_for_a_slot(make, encode, alone):
    engine = make(max_num_seqs=1)
    preempted = watch_preemptions(engine)
    engine.add_request("0", encode(PROMPTS[0]), greedy())
    results = collect(engine, {}, steps=2)
    engine.add_request("1", encode(PROMPTS[1]), greedy())
    engine.add_request("2", encode(PROMPTS[2]), greedy(priority=3))
    finished: list[str] = []
    assert collect(engine, results, finished=finished) == {k: alone[k] for k in "012"}
    assert finished == ["0", "1", "2"] and preempted == []


def test_a_higher_priority_request_preempts_the_last_started_lower_one_for_a_slot(make, encode, alone):
    engine = make(max_num_seqs=2)
    preempted = watch_preemptions(engine)
    engine.add_request("0", encode(PROMPTS[0]), greedy(priority=1))
    engine.add_request("2", encode(PROMPTS[2]), greedy(priority=1))
    results = collect(engine, {}, steps=3)
    engine.add_request("1", encode(PROMPTS[1]), greedy())  # the default priority, 0: before both
    collect(engine, results, steps=1)
    assert preempted == ["2"]
    assert [s.request_id for s in engine.scheduler.running] == ["0", "1"]
    assert [s.request_id for s in engine.scheduler.waiting] == ["2"]
    finished: list[str] = []
    # the preempted request is recomputed and gets the tokens it gets alone
    assert collect(engine, results, finished=finished) == {k: alone[k] for k in "012"}
    assert finished == ["0", "1", "2"]


def test_a_higher_priority_request_preempts_a_lower_one_for_kv_blocks(make, encode, alone):
    # 8 blocks of 8 tokens: request 2 (34 prompt tokens + 24) holds 7 of them after 15 tokens; request 3 needs 2
    engine = make(kv_cache_tokens=64, block_size=8, max_model_len=64)
    preempted = watch_preemptions(engine)
    engine.add_request("2", encode(PROMPTS[2]), greedy(priority=5))
    results = collect(engine, {}, steps=16)
    assert engine.blocks.num_free == 1 and preempted == []
    engine.add_request("3", encode(PROMPTS[3]), greedy())
    collect(engine, results, steps=1)
    assert preempted == ["2"] and [s.request_id for s in engine.scheduler.running] == ["3"]
    assert collect(engine, results) == {k: alone[k] for k in "23"}
    assert engine.blocks.num_free == engine.blocks.num_blocks


def test_a_full_cache_preempts_the_lowest_priority_first_even_if_it_started_first(make, encode, alone):
    # 17 + 24 and 11 + 24 tokens need 6 + 5 blocks of the 8: one is preempted mid-decode. With equal priorities that
    # would be the last started, request 1; here it is request 0, started first but of a lower priority
    engine = make(kv_cache_tokens=64, block_size=8, max_model_len=64)
    preempted = watch_preemptions(engine)
    engine.add_request("0", encode(PROMPTS[0]), greedy(priority=1))
    results = collect(engine, {}, steps=1)
    engine.add_request("1", encode(PROMPTS[1]), greedy())
    assert collect(engine, results) == {k: alone[k] for k in "01"}
    assert preempted and set(preempted) == {"0"}
