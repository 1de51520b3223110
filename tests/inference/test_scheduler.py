"""The scheduler, the paged KV cache and the sampler through the whole engine, on a tiny random-weight Llama with a
tokenizer (``checkpoints.tiny_chat_checkpoint``): continuous batching, chunked prefill, preemption, seeds and
``n``, stop strings, penalties and abort. Whatever else is in the batch, a sequence gets the tokens it gets alone.
The same engine on the packaged models, against transformers: ``test_engine.py``."""

from __future__ import annotations

import pytest

from inference.loader.safetensors import load_model
from inference.sampling_params import SamplingParams
from inference.tokenizer.tokenizer import Tokenizer
from tests.support import checkpoints
from tests.support.models import engine_on, run_to_end

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
    preempted = []
    preempt = engine.scheduler._preempt_last
    engine.scheduler._preempt_last = lambda: preempted.append(preempt()) or preempted[-1]
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
