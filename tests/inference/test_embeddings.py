"""BERT sentence embeddings: a tiny random BERT against transformers, and the real all-MiniLM-L6-v2
against sentence-transformers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer
from transformers import BertModel as HFBertModel

from inference.layers.context import ForwardContext, forward_context
from inference.loader.safetensors import iter_safetensors, load_model
from inference.models.bert import BertModel
from inference.packaged import minilm_dir
from tests.support import checkpoints as rc
from tests.support.samples import SENTENCES

LENGTHS = (17, 5, 30)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = rc.bert_checkpoint(tmp_path_factory.mktemp("bert"))
    return path, load_model(path), HFBertModel.from_pretrained(path, attn_implementation="eager").eval()


def _inputs() -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and token type ids (a second segment in the last third of each sequence)."""
    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, rc.VOCAB, (n,), generator=gen).tolist() for n in LENGTHS]
    types = [[0] * (n - n // 3) + [1] * (n // 3) for n in LENGTHS]
    return ids, types


def _hf_states(hf, ids: list[list[int]], types: list[list[int]]) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [
            hf(torch.tensor([i]), token_type_ids=torch.tensor([t])).last_hidden_state[0]
            for i, t in zip(ids, types, strict=True)
        ]


def _flat(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor([x for row in rows for x in row])


def test_tiny_bert_matches_transformers(tiny):
    _, ours, hf = tiny
    ids, types = _inputs()
    positions = torch.cat([torch.arange(n) for n in LENGTHS])
    with torch.inference_mode(), forward_context(ForwardContext.for_prompts(list(LENGTHS), causal=False)):
        hidden = ours(_flat(ids), positions, _flat(types))
    expected = torch.cat(_hf_states(hf, ids, types))
    diff = (hidden - expected).abs().max().item()
    print(f"tiny BERT: max |hidden - transformers| = {diff:.3g}")
    assert hidden.shape == (sum(LENGTHS), 64) and diff < 1e-4


def test_tiny_bert_embed_is_normalised_mean_of_the_hidden_states(tiny):
    _, ours, hf = tiny
    ids, _ = _inputs()
    zeros = [[0] * n for n in LENGTHS]
    expected = torch.stack([F.normalize(s.mean(0), dim=0) for s in _hf_states(hf, ids, zeros)])
    vectors = ours.embed(ids)
    assert vectors.dtype == torch.float32 and vectors.shape == (len(LENGTHS), 64)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(len(LENGTHS)))
    assert (vectors - expected).abs().max() < 1e-5
    # each sequence is embedded on its own: batching does not change a vector
    assert (ours.embed([ids[1]])[0] - vectors[1]).abs().max() < 1e-5


def test_bert_loads_prefixed_names_and_ignores_the_pooler(tiny):
    path, ours, _ = tiny
    weights = list(iter_safetensors(path))
    assert any(name.startswith("pooler.") for name, _ in weights)
    model = BertModel(ours.config)
    model.load_weights((f"bert.{name}", tensor) for name, tensor in weights)  # BertFor*-style checkpoint names
    ids, _ = _inputs()
    torch.testing.assert_close(model.embed(ids), ours.embed(ids), rtol=0, atol=0)
    with pytest.raises(KeyError, match="cls.predictions.bias"):
        model.load_weights([*weights, ("cls.predictions.bias", torch.zeros(rc.VOCAB))])


def test_embed_rejects_empty_and_overlong_inputs(tiny):
    _, ours, _ = tiny
    with pytest.raises(ValueError, match="empty"):
        ours.embed([[1, 2], []])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ours.embed([[1] * (ours.config.max_position_embeddings + 1)])


@pytest.mark.real_model
def test_minilm_matches_sentence_transformers():
    directory = minilm_dir()
    reference = SentenceTransformer(str(directory), device="cpu")
    assert reference.max_seq_length == 256
    expected = reference.encode(SENTENCES, convert_to_tensor=True, batch_size=4).float()

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to 128; we batch flat, without padding
    tokenizer.enable_truncation(max_length=reference.max_seq_length)
    ids = [encoding.ids for encoding in tokenizer.encode_batch(SENTENCES)]
    assert max(map(len, ids)) == 256 and min(map(len, ids)) == 3  # truncation happened; "ok" is [CLS] ok [SEP]

    vectors = load_model(directory).embed(ids)
    cosine = F.cosine_similarity(vectors, expected, dim=-1)
    print(f"all-MiniLM-L6-v2: cosine vs sentence-transformers min {cosine.min().item():.7f}")
    assert vectors.shape == (len(SENTENCES), 384)
    assert cosine.min() >= 0.9999
