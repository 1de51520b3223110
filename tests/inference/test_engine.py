"""The engine on the real packaged models: exact greedy decoding, continuous batching, sampling."""

from __future__ import annotations

import pytest
import torch

from inference.sampling_params import SamplingParams
from tests.support.models import loaded, make_engine, model_dir, run_to_end

pytestmark = pytest.mark.real_model

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    "1, 2, 3, 4,",
]


def greedy(max_tokens: int = 24, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, **kw)


def encode(name: str, text: str) -> list[int]:
    return loaded(name)[1].encode(text, add_special_tokens=True)


@pytest.mark.parametrize("name", ["smollm2", "gemma3"])
def test_logits_and_greedy_match_transformers_on_the_real_models(name):
    """fp32 logits within 1e-3 (max abs) of transformers on the same converted checkpoint, over a
    batch of prompts; then 32 greedy tokens through the engine (paged KV cache) equal generate()."""
    from transformers import AutoModelForCausalLM

    from inference.layers.context import ForwardContext, forward_context

    ids = encode(name, PROMPTS[0])
    hf = AutoModelForCausalLM.from_pretrained(model_dir(name), dtype=torch.float32).eval()
    model, _ = loaded(name)
    batch = [encode(name, p) for p in PROMPTS[:3]]
    flat = torch.tensor([t for seq in batch for t in seq])
    positions = torch.cat([torch.arange(len(seq)) for seq in batch])
    with torch.inference_mode(), forward_context(ForwardContext.for_prompts([len(s) for s in batch])):
        ours = model.compute_logits(model(flat, positions))
    with torch.inference_mode():
        theirs = torch.cat([hf(torch.tensor([seq])).logits[0] for seq in batch])
    assert (ours - theirs).abs().max().item() < 1e-3
    hf.generation_config.eos_token_id = None  # plain argmax for 32 steps, like ignore_eos (no suppression)
    reference = hf.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False)[0, len(ids) :]
    assert len(reference) == 32
    engine = make_engine(name)
    engine.add_request("r", ids, greedy(32))
    assert run_to_end(engine)[("r", 0)]["ids"] == reference.tolist()


def test_max_tokens_and_eos():
    engine = make_engine("smollm2")
    engine.add_request("len", encode("smollm2", PROMPTS[3]), greedy(3))
    result = run_to_end(engine)[("len", 0)]
    assert len(result["ids"]) == 3 and result["finish"] == "length"
    tokenizer = loaded("smollm2")[1]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Say hi."}], add_generation_prompt=True)
    engine.add_request("eos", chat, SamplingParams(max_tokens=200, temperature=0.0))
    result = run_to_end(engine)[("eos", 0)]
    assert result["finish"] == "stop" and result["ids"][-1] in tokenizer.stop_token_ids
    assert "<|im_end|>" not in result["text"]


def alone_and_together(prompt: list[int], asks: dict[str, SamplingParams]) -> dict[str, dict]:
    """Each request's answer on SmolLM2 run alone, checked equal (ids and text) to its answer in one batch with
    the others."""
    alone = {}
    for name, params in asks.items():
        engine = make_engine("smollm2")
        engine.add_request(name, prompt, params)
        alone[name] = run_to_end(engine)[(name, 0)]
    engine = make_engine("smollm2")
    for name, params in asks.items():
        engine.add_request(name, prompt, params)
    together = {name: (r["ids"], r["text"]) for (name, _), r in run_to_end(engine).items()}
    assert together == {name: (r["ids"], r["text"]) for name, r in alone.items()}
    return alone


def test_min_tokens_holds_back_the_ends_and_a_stop_string_keeps_itself_when_asked():
    """vLLM's ``min_tokens``: no stop id is drawn, and no stop string ends the answer, before that many tokens (the
    answer goes on where it would have ended, the same tokens before); ``include_stop_str_in_output`` keeps the
    stop string that ended it. Each request's answer is the one it gets alone, batched with the others."""
    tokenizer = loaded("smollm2")[1]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Say hi."}], add_generation_prompt=True)
    asks = {
        "plain": SamplingParams(max_tokens=200, temperature=0.0),
        "longer": SamplingParams(max_tokens=200, temperature=0.0, min_tokens=30),
        "stop": SamplingParams(max_tokens=200, temperature=0.0, stop=["!"]),
        "stop late": SamplingParams(max_tokens=200, temperature=0.0, stop=["!"], min_tokens=10),
        "stop kept": SamplingParams(max_tokens=200, temperature=0.0, stop=["!"], include_stop_str_in_output=True),
    }
    alone = alone_and_together(chat, asks)

    plain, longer = alone["plain"], alone["longer"]
    ends = set(tokenizer.stop_token_ids)
    assert plain["finish"] == "stop" and plain["ids"][-1] in ends and len(plain["ids"]) < 30  # it would end early
    assert longer["ids"][: len(plain["ids"]) - 1] == plain["ids"][:-1]  # the same answer, until its end
    assert not ends & set(longer["ids"][:30]) and len(longer["ids"]) >= 30
    assert longer["text"].startswith(plain["text"]) and len(longer["text"]) > len(plain["text"])

    stopped, late, kept = alone["stop"]["text"], alone["stop late"]["text"], alone["stop kept"]["text"]
    assert "!" in plain["text"] and stopped == plain["text"][: plain["text"].index("!")]
    assert kept == stopped + "!" and alone["stop kept"]["finish"] == "stop"
    assert late.startswith(stopped + "!") and len(alone["stop late"]["ids"]) >= 10  # the early "!" did not end it


def test_bad_words_and_allowed_token_ids_shape_the_answer_the_same_in_a_batch():
    """vLLM's ``bad_words`` (one token, or several: the last banned only after the rest) and ``allowed_token_ids``
    (the only ids drawn, the end among them): the answer follows the plain one until the word, then goes around
    it; each request's answer is the one it gets alone."""
    from inference.server.token_controls import read_bad_words

    tokenizer = loaded("smollm2")[1]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         add_generation_prompt=True)  # fmt: skip
    plain_params = SamplingParams(max_tokens=30, temperature=0.0)
    engine = make_engine("smollm2")
    engine.add_request("plain", chat, plain_params)
    plain = run_to_end(engine)[("plain", 0)]
    assert plain["text"] == "The capital of France is Paris." and plain["finish"] == "stop"
    paris = tokenizer.encode(" Paris", add_special_tokens=False)
    capital_of = tokenizer.encode(" capital of", add_special_tokens=False)
    assert len(paris) == 1 and len(capital_of) == 2 and plain["ids"][1:3] == capital_of
    allowed = sorted(set(plain["ids"]) - set(paris))
    asks = {
        "plain": plain_params,
        "no paris": SamplingParams(max_tokens=30, temperature=0.0,
                                   bad_words_ids=read_bad_words({"bad_words": ["Paris"]}, tokenizer)),
        "no capital of": SamplingParams(max_tokens=30, temperature=0.0,
                                        bad_words_ids=read_bad_words({"bad_words": ["capital of"]}, tokenizer)),
        "allowed": SamplingParams(max_tokens=12, temperature=0.0, allowed_token_ids=allowed),
    }  # fmt: skip
    alone = alone_and_together(chat, asks)

    no_paris, no_capital_of = alone["no paris"], alone["no capital of"]
    assert no_paris["text"].startswith("The capital of France is ") and "Paris" not in no_paris["text"]
    assert no_paris["ids"][:5] == plain["ids"][:5]
    ids = no_capital_of["ids"]
    assert ids[:2] == plain["ids"][:2] and ids[2] != capital_of[1]  # " capital" written, " of" not after it
    assert all(ids[i : i + 2] != capital_of for i in range(len(ids) - 1))
    assert set(alone["allowed"]["ids"]) <= set(allowed) and alone["allowed"]["ids"] != plain["ids"]


def test_generated_control_tokens_are_written_only_when_asked():
    """vLLM's ``skip_special_tokens``: on by default (a control token the model generates is left out of the text),
    off writes it; the tokens are the same either way."""
    tokenizer = loaded("smollm2")[1]
    start = tokenizer.special_tokens["<|im_start|>"]
    engine = make_engine("smollm2")
    for name, skip in [("skipped", True), ("written", False)]:
        engine.add_request(name, encode("smollm2", PROMPTS[0]),
                           greedy(3, logit_bias={start: 100.0}, skip_special_tokens=skip))  # fmt: skip
    results = run_to_end(engine)
    assert results[("skipped", 0)]["ids"] == results[("written", 0)]["ids"] == [start] * 3
    assert (results[("skipped", 0)]["text"], results[("written", 0)]["text"]) == ("", "<|im_start|>" * 3)


def test_logprobs_are_the_models_distribution():
    ids = encode("smollm2", PROMPTS[0])
    engine = make_engine("smollm2")
    engine.add_request("lp", ids, greedy(4, logprobs=3))
    result = run_to_end(engine)[("lp", 0)]
    model, _ = loaded("smollm2")
    from inference.layers.context import ForwardContext, forward_context

    with torch.inference_mode(), forward_context(ForwardContext.for_prompts([len(ids)])):
        logits = model.compute_logits(model(torch.tensor(ids), torch.arange(len(ids)))[-1:])
    expected = torch.log_softmax(logits[0], -1)
    first = result["lp"][0]
    assert first.token_id == result["ids"][0] == int(expected.argmax())
    assert abs(first.logprob - float(expected.max())) < 1e-4
    assert [t for t, _ in first.top] == torch.topk(expected, 3).indices.tolist()
    assert len(result["lp"]) == 4


def test_logit_bias_forces_a_token():
    tokenizer = loaded("smollm2")[1]
    forced = tokenizer.encode(" banana", add_special_tokens=False)[0]
    engine = make_engine("smollm2")
    engine.add_request("b", encode("smollm2", PROMPTS[0]), greedy(5, logit_bias={forced: 100.0}))
    assert run_to_end(engine)[("b", 0)]["ids"] == [forced] * 5
