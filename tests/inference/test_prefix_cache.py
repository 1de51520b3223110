"""Automatic prefix caching: the block manager's keys, sharing, reference counts and LRU eviction; and through the
whole engine, greedy answers with the cache equal to those without it, token for token, when prompts hit fully,
partly, after evictions, in chunks, under preemption, with n > 1 (the prompt computed once), with a grammar, with
prompt logprobs (which bypass the cache) and on Gemma 3's sliding-window layers."""

from __future__ import annotations

import pytest
import torch

from inference.config import EngineConfig
from inference.engine.block_manager import BlockManager
from inference.engine.guided import GuideCompiler
from inference.engine.llm_engine import LLMEngine
from inference.engine.sequence import Sequence
from inference.loader.safetensors import load_model
from inference.sampling_params import SamplingParams
from inference.tokenizer.tokenizer import Tokenizer
from tests.support import checkpoints
from tests.support.models import engine_on, run_to_end, watch_preemptions

# --- the block manager ------------------------------------------------------------------------------------------


def _seq(tokens: list[int], **kw) -> Sequence:
    return Sequence("r", 0, tokens, SamplingParams(max_tokens=1), **kw)


def _computed(blocks: BlockManager, tokens: list[int]) -> Sequence:
    """A sequence whose whole prompt was computed (blocks allocated and registered)."""
    seq = _seq(tokens)
    seq.cached_tokens = 0
    blocks.take(seq, blocks.match(seq))
    blocks.grow(seq, len(tokens))
    seq.num_computed = len(tokens)
    blocks.register(seq)
    return seq


def test_full_prompt_blocks_are_shared_by_reference_and_kept_after_free():
    blocks = BlockManager(num_blocks=8, block_size=4)
    a = _computed(blocks, list(range(10)))  # 2 full blocks registered, the third (2 tokens) not
    assert blocks.num_cached == 2 and blocks.num_free == 5
    b = _seq(list(range(8)) + [99, 98, 97])
    hits = blocks.match(b)
    assert hits == a.block_table[:2] and blocks.revived(hits) == 0  # in use by a: nothing leaves the free queue
    blocks.take(b, hits)
    assert b.num_computed == 8 and [blocks.ref_count[h] for h in hits] == [2, 2]
    blocks.free(a)
    assert blocks.num_free == 6  # a's third block; the shared two are b's still
    blocks.free(b)
    assert blocks.num_free == 8 and blocks.num_cached == 2  # kept for the next prompt
    c = _seq(list(range(8)) + [5])
    assert blocks.match(c) == hits and blocks.revived(hits) == 2


def test_a_fully_cached_prompt_still_computes_its_last_token():
    blocks = BlockManager(num_blocks=8, block_size=4)
    a = _computed(blocks, list(range(12)))
    assert blocks.match(_seq(list(range(12)))) == a.block_table[:2]  # 8 of 12: the last block's logits are needed
    assert blocks.match(_seq(list(range(13)))) == a.block_table[:3]


def test_keys_chain_the_whole_prefix_and_the_images():
    blocks = BlockManager(num_blocks=8, block_size=4)
    _computed(blocks, [1, 2, 3, 4, 5, 6, 7, 8, 0])
    assert blocks.match(_seq([9, 9, 9, 9, 5, 6, 7, 8, 0])) == []  # the same second block after another first
    assert len(blocks.match(_seq([1, 2, 3, 4, 5, 6, 7, 8, 0]))) == 2
    assert _seq([1, 2, 3, 4, 0]).prefix_keys(4) != _seq([1, 2, 3, 4, 0], mm=_image(1.0)).prefix_keys(4)
    assert _seq([1, 2, 3, 4, 0], mm=_image(2.0)).prefix_keys(4) != _seq([1, 2, 3, 4, 0], mm=_image(1.0)).prefix_keys(4)
    assert _seq([1, 2, 3, 4, 0], mm=_image(2.0)).prefix_keys(4) == _seq([1, 2, 3, 4, 0], mm=_image(2.0)).prefix_keys(4)


def test_prompts_of_different_cache_salts_share_no_block():
    """vLLM's ``cache_salt`` (the hub's per tenant): the same prompt under another salt, or none, matches nothing."""
    blocks = BlockManager(num_blocks=8, block_size=4)
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 0]

    def salted(salt: str | None) -> Sequence:
        return Sequence("r", 0, prompt, SamplingParams(max_tokens=1, cache_salt=salt))

    computed = salted("tenant-a")
    blocks.grow(computed, len(prompt))
    computed.num_computed = len(prompt)
    blocks.register(computed)
    assert blocks.match(salted("tenant-a")) == computed.block_table[:2]
    assert blocks.match(salted("tenant-b")) == [] and blocks.match(salted(None)) == []
    with pytest.raises(ValueError, match="cache_salt"):
        SamplingParams(cache_salt="")


def _image(value: float):
    from inference.models.inputs import ImageInput, MultiModalPrompt

    image = ImageInput(pixels=torch.full((1, 3, 2, 2), value), size=(2, 2), num_tokens=1)
    return MultiModalPrompt(images=[image], positions=torch.tensor([0]))


def test_eviction_takes_the_least_recently_freed_and_tails_first():
    blocks = BlockManager(num_blocks=4, block_size=2)
    a = _computed(blocks, [1, 2, 3, 4, 9])  # blocks 0, 1 keyed ([1, 2], [3, 4]), 2 not (one token)
    blocks.free(a)  # the tail first: the free queue is 3 (never used), 2, 1, 0
    b = _computed(blocks, [7, 7, 8])  # takes 3 and 2 (no key): a's prefix survives; 3 gets [7, 7]'s key
    assert len(blocks.match(_seq([1, 2, 3, 4, 5]))) == 2 and blocks.evictions == 0
    blocks.free(b)  # the queue: 1, 0, 2, 3
    c = _seq([5, 5, 6, 6, 7, 7, 8, 8])
    blocks.take(c, [])
    blocks.grow(c, 8)  # all four: 1 and 0 (a's prefix) are evicted first, then 2, then 3 (b's [7, 7])
    assert c.block_table == [1, 0, 2, 3] and blocks.evictions == 3 and blocks.num_cached == 0


# --- through the engine ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = checkpoints.tiny_chat_checkpoint(tmp_path_factory.mktemp("tiny-chat"))
    return load_model(directory).eval(), Tokenizer.from_dir(directory)


def _greedy(tokens: int = 12, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True, **kw)


def _prompts(vocab: int, shared: int, tails: list[int], seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    prefix = torch.randint(3, vocab, (shared,), generator=gen).tolist()
    return [prefix + torch.randint(3, vocab, (t,), generator=gen).tolist() for t in tails]


def _answers(engine: LLMEngine, prompts: list[list[int]], params: SamplingParams, one_by_one: bool, n: int = 1):
    """Request id → its choices' token ids (and prompt logprobs); one request at a time, or all together."""
    out = {}
    for group in [[p] for p in prompts] if one_by_one else [prompts]:
        for p in group:
            engine.add_request(str(prompts.index(p)), p, params, n=n)
        for (rid, index), r in run_to_end(engine).items():
            out[(rid, index)] = r["ids"]
    return out


def test_hits_partial_hits_and_chunks_give_the_answers_without_the_cache(tiny):
    model, tok = tiny
    prompts = _prompts(model.config.vocab_size, 37, [5, 1, 12, 30])
    prompts += [prompts[0][:20] + [5, 6, 7], prompts[2]]  # a partial hit, then a full one (all but the last token)
    off = _answers(engine_on(model, tok, enable_prefix_caching=False, block_size=4), prompts, _greedy(), True)
    for options in ({}, {"max_batched_tokens": 7}):
        engine = engine_on(model, tok, block_size=4, **options)
        assert _answers(engine, prompts, _greedy(), True) == off, options
        # the shared 36 of 37 (whole blocks) for the next three, 20 for the partial hit, 48 of 49 for the repeat
        assert engine.blocks.hit_tokens == 3 * 36 + 20 + 48 and engine.blocks.queried_tokens == sum(map(len, prompts))
        assert engine.blocks.num_free == engine.blocks.num_blocks  # every reference given back


def test_evictions_and_preemption_stay_exact(tiny):
    """A cache of 20 blocks of 4 for prompts of 40-60 tokens: blocks are evicted between requests, and requests
    running together preempt each other (recomputed on their cached prefix)."""
    model, tok = tiny
    prompts = _prompts(model.config.vocab_size, 24, [16, 30, 20, 25])
    off = _answers(engine_on(model, tok, enable_prefix_caching=False), prompts, _greedy(16), True)
    engine = engine_on(model, tok, kv_cache_tokens=80, block_size=4, max_model_len=80)
    assert _answers(engine, prompts, _greedy(16), True) == off
    assert engine.blocks.evictions > 0
    preempted = watch_preemptions(engine)
    assert _answers(engine, prompts, _greedy(16), False) == off
    assert preempted and engine.blocks.num_free == engine.blocks.num_blocks


def test_n_choices_compute_the_prompt_once(tiny):
    model, tok = tiny
    prompt = _prompts(model.config.vocab_size, 41, [0])[0]
    engine = engine_on(model, tok, block_size=4)
    computed = []
    run = engine.runner.run
    engine.runner.run = lambda step: computed.append(sum(step.num_new_tokens)) or run(step)
    engine.add_request("n", prompt, _greedy(8), n=3)
    answers = [r["ids"] for r in run_to_end(engine).values()]
    assert answers[0] == answers[1] == answers[2]  # greedy: the siblings computed on the first's blocks agree
    # the first computes 41 prompt tokens, each sibling only its last (40 of 41 cached); then 3 per decode step
    assert computed[0] == 41 and sum(computed) == 41 + 2 * 1 + 3 * 7
    off = engine_on(model, tok, enable_prefix_caching=False, block_size=4)
    off.add_request("n", prompt, _greedy(8))
    assert run_to_end(off)[("n", 0)]["ids"] == answers[0]


def test_a_grammar_and_prompt_logprobs_with_the_cache(tiny):
    model, tok = tiny
    prompts = _prompts(model.config.vocab_size, 30, [3, 4])
    compiler = GuideCompiler(tok.tokenizer_json, tok.stop_token_ids, model.config.vocab_size)
    guided = SamplingParams(max_tokens=10, temperature=0.0, guide=compiler.compile('start: /[0-9]{2,6}/ "."'))
    echo = _greedy(4, prompt_logprobs=2, logprobs=2)
    for params in (guided, echo):
        off_engine = engine_on(model, tok, enable_prefix_caching=False, block_size=4)
        off = [run_to_end(off_engine) for p in prompts if not off_engine.add_request("x", p, params)]
        on_engine = engine_on(model, tok, block_size=4)
        on = [run_to_end(on_engine) for p in prompts if not on_engine.add_request("x", p, params)]
        assert on == off
    assert on_engine.blocks.hit_tokens == 0  # prompt logprobs need every position's logits: no hits taken
    assert off[1][("x", 0)]["lp"] and len(off[1][("x", 0)]["lp"]) == 4


def test_sliding_window_layers(tmp_path):
    """Gemma 3's local layers (a window of 8 tokens, prompts of 35-52 whose first 32 are cached) read cached blocks
    exactly, beside its global layer."""
    path = checkpoints.gemma3_checkpoint(tmp_path / "gemma3", short=True)
    model = load_model(path).eval()
    prompts = _prompts(checkpoints.VOCAB, 33, [7, 2, 19])
    results = []
    for caching in (False, True):
        cfg = EngineConfig(kv_cache_tokens=512, block_size=4, enable_prefix_caching=caching)
        engine = LLMEngine(model, checkpoints.IdTokenizer(), checkpoints.IdDetokenizer, cfg)
        results.append(_answers(engine, prompts, _greedy(16), True))
    assert results[0] == results[1] and engine.blocks.hit_tokens == 2 * 32
