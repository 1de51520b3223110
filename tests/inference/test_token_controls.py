"""vLLM's token-level controls: ``allowed_token_ids`` and bad words in the sampler (a row's bans never leave it
nothing to take), bad words found where the answer ends with the rest of them, and the requests' fields read with
vLLM's meanings (``inference/server/token_controls.py``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from inference.engine.output import OutputProcessor
from inference.errors import RequestError
from inference.layers.sampler import sample
from inference.sampling_params import InvalidParam, SamplingParams
from inference.server.token_controls import read_allowed_token_ids, read_bad_words, read_truncation
from inference.tokenizer.tokenizer import Tokenizer
from tests.support.models import model_dir


def _logits(rows: int, vocab: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def test_a_row_takes_only_its_allowed_ids_greedy_or_sampled_and_reports_the_models_logprobs():
    logits = _logits(3)
    allowed = [4, 9, 31]
    params = [
        SamplingParams(temperature=0.0, allowed_token_ids=allowed, logprobs=0),
        SamplingParams(temperature=1.0, seed=5, allowed_token_ids=allowed),
        SamplingParams(temperature=0.0),
    ]
    for step in range(20):
        gens = [None, torch.Generator().manual_seed(step), None]
        result = sample(logits, params, [([], [])] * 3, gens)
        assert result.token_ids[0] == max(allowed, key=lambda t: logits[0, t])
        assert result.token_ids[1] in allowed
        assert result.token_ids[2] == int(logits[2].argmax())  # the other rows are untouched
    chosen = result.token_ids[0]
    assert result.logprobs[0][0] == pytest.approx(float(torch.log_softmax(logits[0], -1)[chosen]))


def test_bans_never_leave_a_row_nothing_to_take():
    """A request whose own controls conflict (its one allowed id banned this step) still gets a token: its allowed
    one. A grammar's mask that excludes every allowed id leaves the grammar's choice."""
    logits = _logits(2)
    params = [SamplingParams(temperature=0.0, allowed_token_ids=[7]), SamplingParams(temperature=0.0)]
    assert sample(logits, params, [([], [])] * 2, [None, None], banned=[[7], [7]]).token_ids[0] == 7
    mask = torch.zeros(1, 40, dtype=torch.bool)
    mask[0, 12] = True
    grammar = sample(logits, params, [([], [])] * 2, [None, None], allowed=([0], mask))
    assert grammar.token_ids[0] == 12


def _processor(bad_words: list[list[int]], output: list[int], min_tokens: int = 0) -> OutputProcessor:
    params = SamplingParams(bad_words_ids=bad_words, min_tokens=min_tokens)
    seq = SimpleNamespace(params=params, output_ids=output)
    return OutputProcessor(seq, detokenizer=None, stop_token_ids={2}, max_model_len=100)


@pytest.mark.parametrize(
    ("output", "banned"),
    [
        ([], [5]),  # a one-token word is always banned; the three-token one has nothing of it written yet
        ([1, 8], [5]),
        ([8, 9], [5, 10]),  # the output ends with the word's first two tokens: its last is banned
        ([8, 9, 3], [5]),
        ([9], [5]),
    ],
)
def test_a_bad_words_last_token_is_banned_where_the_answer_ends_with_the_rest(output, banned):
    assert _processor([[5], [8, 9, 10]], output).banned() == banned


def test_the_ends_are_banned_with_the_bad_words_while_short_of_min_tokens_unless_a_grammar_ends_it():
    processor = _processor([[5]], [1], min_tokens=3)
    assert processor.banned() == [2, 5] and processor.banned(ends=False) == [5]
    assert _processor([[5]], [1, 1, 1], min_tokens=3).banned() == [5]


def test_empty_allowed_token_ids_and_bad_words_are_refused_by_the_params():
    with pytest.raises(InvalidParam, match="allowed_token_ids"):
        SamplingParams(allowed_token_ids=[])
    with pytest.raises(InvalidParam, match="bad_words"):
        SamplingParams(bad_words_ids=[[]])


def test_allowed_token_ids_are_read_within_the_vocabulary():
    assert read_allowed_token_ids({}, 10) is None
    assert read_allowed_token_ids({"allowed_token_ids": [3, 1, 3]}, 10) == [1, 3]
    for value in ([], [10], [-1], [True], "1", [1.0]):
        with pytest.raises(RequestError) as error:
            read_allowed_token_ids({"allowed_token_ids": value}, 10)
        assert error.value.param == "allowed_token_ids"


def test_bad_words_are_tokenized_alone_and_after_a_space_as_vllm_does():
    tokenizer = Tokenizer.from_dir(model_dir("smollm2"))

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    assert ids("hello") != ids(" hello") and len(ids(" hello")) == 1
    assert read_bad_words({"bad_words": ["hello", " hello"]}, tokenizer) == [ids("hello"), ids(" hello")] * 2
    words = read_bad_words({"bad_words": ["Paris is"]}, tokenizer)
    assert words == [ids("Paris is"), ids(" Paris is")] and len(words[0]) == 2
    assert read_bad_words({}, tokenizer) == []
    for value in ([""], ["  "], "hello", [1], ["w"] * 129):
        with pytest.raises(RequestError) as error:
            read_bad_words({"bad_words": value}, tokenizer)
        assert error.value.param == "bad_words"


def test_truncate_prompt_tokens_is_a_count_kept_or_the_context_length():
    assert read_truncation({}, 100) is None
    assert read_truncation({"truncate_prompt_tokens": -1}, 100) == 100
    assert read_truncation({"truncate_prompt_tokens": 100}, 100) == 100
    for value in (0, -2, 101, True, 1.5, "3"):
        with pytest.raises(RequestError) as error:
            read_truncation({"truncate_prompt_tokens": value}, 100)
        assert error.value.param == "truncate_prompt_tokens"
