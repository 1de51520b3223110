"""Embedding families against transformers and sentence-transformers on tiny random checkpoints: XLM-RoBERTa
(bge-m3's positions offset by the padding index), BERT with CLS pooling, decoders (Qwen2, Qwen3) with last-token
pooling, JinaBERT (ALiBi, GEGLU) against a transcription of its published code; the pooling read from the
checkpoint's sentence-transformers files; batch invariance; kernels = torch."""

from __future__ import annotations

import json
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer

from inference.engine.embedding_engine import EmbeddingEngine, embed, hidden_states
from inference.loader.safetensors import load_model
from inference.models.config import ConfigError
from inference.models.jina_bert import JinaBertModel, alibi_slopes
from inference.models.pooling import Pooling, pool, read_pooling
from inference.models.xlm_roberta import XLMRobertaModel
from tests.support import encoders

LENGTHS = (17, 5, 30, 1)

# name -> (checkpoint writer, pooling mode, Normalize module, legacy sentence-transformers files)
FAMILIES = {
    "xlm-roberta-cls": (encoders.xlm_roberta_checkpoint, "cls", True, False),
    "xlm-roberta-mean-unnormalised": (encoders.xlm_roberta_checkpoint, "mean", False, True),
    "bert-cls": (encoders.bert_checkpoint, "cls", True, True),
    "bert-max": (encoders.bert_checkpoint, "max", True, False),
    "qwen2-lasttoken": (encoders.qwen2_checkpoint, "lasttoken", True, False),
    "qwen3-lasttoken": (encoders.qwen3_checkpoint, "lasttoken", True, False),
    "qwen3-headless-lasttoken": (partial(encoders.qwen3_checkpoint, headless=True), "lasttoken", True, False),
}


def _ids() -> list[list[int]]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(3, encoders.VOCAB, (n,), generator=gen).tolist() for n in LENGTHS]


def _checkpoint(tmp_path_factory, name: str):
    writer, mode, normalize, legacy = FAMILIES[name]
    path = writer(tmp_path_factory.mktemp(name))
    return encoders.write_sentence_transformers_files(path, 64, mode, normalize, legacy)


def _sentence_transformers(path, ids: list[list[int]]) -> torch.Tensor:
    """sentence-transformers' own pipeline on each sequence alone (no padding) → [S, H]."""
    st = SentenceTransformer(str(path), device="cpu").eval()
    with torch.inference_mode():
        return torch.cat([st({"input_ids": torch.tensor([i]), "attention_mask": torch.ones(1, len(i))})
                          ["sentence_embedding"] for i in ids])  # fmt: skip


@pytest.mark.parametrize("name", list(FAMILIES))
def test_embeddings_match_sentence_transformers_and_do_not_depend_on_the_batch(tmp_path_factory, name):
    path = _checkpoint(tmp_path_factory, name)
    model = load_model(path)
    _, mode, normalize, _ = FAMILIES[name]
    assert model.pooling == Pooling(mode, normalize)
    ids = _ids()
    ours = embed(model, ids)
    expected = _sentence_transformers(path, ids)
    cosine = F.cosine_similarity(ours, expected, dim=-1)
    print(f"{name}: min cosine {cosine.min().item():.8f}, max |diff| {(ours - expected).abs().max().item():.3g}")
    assert ours.shape == (len(LENGTHS), 64) and cosine.min() >= 0.99999
    norms = torch.ones(len(LENGTHS)) if normalize else expected.norm(dim=-1)
    torch.testing.assert_close(ours.norm(dim=-1), norms)
    if not normalize:
        assert (norms - 1).abs().max() > 0.1  # really left unnormalised
    alone = torch.cat([embed(model, [i]) for i in ids])
    shuffled = embed(model, ids[::-1]).flip(0)
    torch.testing.assert_close(alone, ours, atol=1e-5, rtol=0)
    torch.testing.assert_close(shuffled, ours, atol=1e-5, rtol=0)


def test_xlm_roberta_hidden_states_match_transformers(tmp_path):
    """Positions start at padding_idx + 1; the pooler is ignored; pytorch_model.bin loads as safetensors do."""
    from transformers import XLMRobertaModel as HFXLMRobertaModel

    path = encoders.xlm_roberta_checkpoint(tmp_path / "st")
    ours = load_model(path)
    assert isinstance(ours, XLMRobertaModel) and ours.pooling == Pooling("cls", True)  # bge-m3's card: no files
    hf = HFXLMRobertaModel.from_pretrained(path, attn_implementation="eager").eval()
    ids = _ids()
    with torch.inference_mode():
        expected = torch.cat([hf(torch.tensor([i])).last_hidden_state[0] for i in ids])
    hidden = ours.encode(ids)
    diff = (hidden - expected).abs().max().item()
    print(f"tiny XLM-R: max |hidden - transformers| = {diff:.3g}")
    assert hidden.shape == (sum(LENGTHS), 64) and diff < 1e-4
    # the longest input fills the table from padding_idx + 1 to its end; one more token has no position
    assert ours.max_input_len == 66 - 2 and EmbeddingEngine(ours).max_model_len == 64
    ours.encode([[5] * 64])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ours.encode([[5] * 65])
    from_bin = load_model(encoders.xlm_roberta_checkpoint(tmp_path / "bin", torch_bin=True))
    assert not list((tmp_path / "bin").glob("*.safetensors"))
    torch.testing.assert_close(from_bin.encode(ids), hidden, atol=0, rtol=0)


def test_default_pooling_without_sentence_transformers_files(tmp_path):
    bert = load_model(encoders.bert_checkpoint(tmp_path / "bert"))
    assert bert.pooling == Pooling("mean", True)  # all-MiniLM-L6-v2's, as before
    qwen = load_model(encoders.qwen2_checkpoint(tmp_path / "qwen"))
    assert (
        getattr(qwen, "pooling", None) is None
    )  # a decoder without files: its last token, normalised (Qwen3-Embedding's card)
    ids = _ids()
    last_rows = torch.tensor(LENGTHS).cumsum(0) - 1
    expected = F.normalize(hidden_states(qwen, ids)[last_rows], dim=-1)
    torch.testing.assert_close(embed(qwen, ids), expected)


def test_read_pooling_formats_and_refusals(tmp_path):
    default = Pooling("mean", True)
    assert read_pooling(tmp_path, default) is default
    encoders.write_sentence_transformers_files(tmp_path, 64, "lasttoken", False, legacy=True)
    assert read_pooling(tmp_path, default) == Pooling("lasttoken", False)
    config = tmp_path / "1_Pooling" / "config.json"
    config.write_text(json.dumps({"embedding_dimension": 64, "pooling_mode": ["cls", "mean"]}))
    with pytest.raises(ConfigError, match="concatenated"):
        read_pooling(tmp_path, default)
    config.write_text(json.dumps({"embedding_dimension": 64, "pooling_mode": "weightedmean"}))
    with pytest.raises(ConfigError, match="weightedmean"):
        read_pooling(tmp_path, default)
    config.write_text(json.dumps({"embedding_dimension": 64, "pooling_mode": "mean"}))
    assert read_pooling(tmp_path, default) == Pooling("mean", False)
    modules = json.loads((tmp_path / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="Dense"):
        read_pooling(tmp_path, default)


def test_pool_modes_by_hand():
    hidden = torch.arange(12, dtype=torch.float32).view(6, 2)  # sequences of 1, 3 and 2 tokens
    lengths = [1, 3, 2]
    raw = {mode: pool(hidden, lengths, Pooling(mode, normalize=False)) for mode in ("cls", "mean", "max", "lasttoken")}
    torch.testing.assert_close(raw["cls"], hidden[[0, 1, 4]])
    torch.testing.assert_close(raw["lasttoken"], hidden[[0, 3, 5]])
    torch.testing.assert_close(raw["max"], hidden[[0, 3, 5]])
    torch.testing.assert_close(raw["mean"], torch.stack([hidden[0], hidden[1:4].mean(0), hidden[4:6].mean(0)]))
    sqrt = pool(hidden, lengths, Pooling("mean_sqrt_len_tokens", normalize=False))
    torch.testing.assert_close(sqrt, raw["mean"] * torch.tensor([1.0, 3.0, 2.0]).sqrt()[:, None])


def test_engine_embeds_a_decoder_checkpoint(tmp_path_factory):
    path = _checkpoint(tmp_path_factory, "qwen2-lasttoken")
    model = load_model(path)
    engine = EmbeddingEngine(model, max_batched_tokens=40)
    ids = _ids()
    engine.add_request("a", ids[:2])
    engine.add_request("b", ids[2:])
    results = engine.step() + engine.step()  # 22 tokens, then 31: one request per step
    assert [r.request_id for r in results] == ["a", "b"] and not engine.has_work
    torch.testing.assert_close(torch.cat([r.values for r in results]), embed(model, ids), atol=1e-5, rtol=0)
    assert [r.prompt_tokens for r in results] == [22, 31]

    # by priority (a lower value first), then arrival: a batch's request (2) waits behind later interactive ones
    engine.add_request("batch", ids[:2], priority=2)
    engine.add_request("late", ids[2:])
    engine.add_request("later", ids[:1])
    order = [r.request_id for r in engine.step() + engine.step() + engine.step()]
    assert order == ["late", "later", "batch"] and not engine.has_work


@pytest.mark.interpreter
@pytest.mark.parametrize("name", ["xlm-roberta-cls", "qwen3-lasttoken"])
def test_embeddings_on_the_kernels_equal_the_torch_path(tmp_path_factory, name):
    from inference.layers.kernel_switch import use_kernels

    model = load_model(_checkpoint(tmp_path_factory, name))
    ids = _ids()
    expected = embed(model, ids)
    assert use_kernels(model) > 0
    torch.testing.assert_close(embed(model, ids), expected, atol=1e-5, rtol=1e-5)


# --- JinaBERT: against a plain-torch transcription of jinaai/jina-bert-implementation's JinaBertModel ----------


def _published_alibi_slopes(n_heads: int) -> list[float]:
    """``JinaBertEncoder.rebuild_alibi_tensor``'s ``_get_alibi_head_slopes``, as published."""

    def get_slopes_power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return get_slopes_power_of_2(n_heads)
    closest_power_of_2 = 2 ** math.floor(math.log2(n_heads))
    return (
        get_slopes_power_of_2(closest_power_of_2)
        + _published_alibi_slopes(2 * closest_power_of_2)[0::2][: n_heads - closest_power_of_2]
    )


def _jina_reference(state: dict[str, torch.Tensor], config: dict, ids: list[int]) -> torch.Tensor:
    """One unpadded sequence → last hidden state [n, H]: embeddings LayerNorm(word + token type 0); per layer
    softmax(QK^T / sqrt(d) + alibi) V, LayerNorm(dense + x); GLU MLP layernorm(wo(gelu(gated) * non_gated) + x)."""
    H, heads, inner = config["hidden_size"], config["num_attention_heads"], config["intermediate_size"]
    d, eps, n = H // heads, config["layer_norm_eps"], len(ids)

    def linear(x, p):
        return F.linear(x, state[f"{p}.weight"], state.get(f"{p}.bias"))

    def layer_norm(x, p):
        return F.layer_norm(x, (H,), state[f"{p}.weight"], state[f"{p}.bias"], eps)

    x = state["embeddings.word_embeddings.weight"][ids] + state["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, "embeddings.LayerNorm")
    relative = (torch.arange(n)[None, :] - torch.arange(n)[:, None]).abs()
    alibi = -torch.tensor(_published_alibi_slopes(heads))[:, None, None] * relative  # [heads, n, n]
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (
            linear(x, f"{p}.attention.self.{m}").view(n, heads, d).transpose(0, 1) for m in ("query", "key", "value")
        )
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + alibi
        context = (scores.softmax(-1) @ v).transpose(0, 1).reshape(n, H)
        x = layer_norm(linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        h = linear(x, f"{p}.mlp.gated_layers")
        gated, non_gated = h[:, :inner], h[:, inner:]
        x = layer_norm(linear(F.gelu(gated) * non_gated, f"{p}.mlp.wo") + x, f"{p}.mlp.layernorm")
    return x


def test_alibi_slopes_by_formula():
    # a power of two n: 2^(-8 i / n), i = 1..n
    assert alibi_slopes(8) == [2.0**-i for i in range(1, 9)]
    assert alibi_slopes(4) == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]
    # otherwise: the slopes of the power of two below, then every other slope of twice that many
    assert alibi_slopes(6) == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    twelve = [2.0**-i for i in range(1, 9)] + [2 ** (-0.5 * i) for i in (1, 3, 5, 7)]
    torch.testing.assert_close(torch.tensor(alibi_slopes(12)), torch.tensor(twelve), rtol=1e-12, atol=0)
    for n in (1, 2, 3, 5, 6, 12, 16, 24):
        torch.testing.assert_close(torch.tensor(alibi_slopes(n)), torch.tensor(_published_alibi_slopes(n)))


@pytest.fixture(scope="module")
def jina(tmp_path_factory):
    path, state = encoders.jina_bert_checkpoint(tmp_path_factory.mktemp("jina"))
    return path, state, load_model(path)


def test_jina_bert_matches_the_published_architecture(jina):
    _, state, model = jina
    assert isinstance(model, JinaBertModel) and model.pooling == Pooling("mean", True)  # jina v2's card
    ids = _ids()
    expected = torch.cat([_jina_reference(state, encoders.JINA_CONFIG, i) for i in ids])
    hidden = model.encode(ids)
    diff = (hidden - expected).abs().max().item()
    print(f"tiny JinaBERT: max |hidden - reference| = {diff:.3g}")
    assert hidden.shape == (sum(LENGTHS), 96) and diff < 1e-4
    vectors = embed(model, ids)
    means = torch.stack([F.normalize(h.mean(0), dim=0) for h in expected.split(list(LENGTHS))])
    assert F.cosine_similarity(vectors, means, dim=-1).min() >= 0.99999
    torch.testing.assert_close(torch.cat([embed(model, [i]) for i in ids]), vectors, atol=1e-5, rtol=0)


@pytest.mark.interpreter
def test_jina_bert_on_the_kernels_equals_the_torch_path(jina):
    from inference.layers.kernel_switch import use_kernels

    _, _, model = jina
    ids = _ids()
    expected = embed(model, ids)
    try:
        assert use_kernels(model) > 0
        torch.testing.assert_close(embed(model, ids), expected, atol=1e-5, rtol=1e-5)
    finally:
        use_kernels(model, False)


def test_headless_decoder_checkpoint_loads_as_an_embedding_model(tmp_path):
    """``Qwen3Model`` (a body saved without ``model.`` and without lm_head): last token + normalise by default, no
    logits, and it pickles by name as the prepared-weights cache stores it."""
    import io

    path = encoders.qwen3_checkpoint(tmp_path, headless=True)
    assert json.loads((path / "config.json").read_text())["architectures"] == ["Qwen3Model"]
    model = load_model(path)
    assert type(model).__name__ == "Qwen3Model" and model.pooling == Pooling("lasttoken", True)
    with pytest.raises(TypeError, match="no logits"):
        model.compute_logits(torch.zeros(1, 64))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    ids = _ids()
    torch.testing.assert_close(embed(again, ids), embed(model, ids), atol=0, rtol=0)


def test_jina_bert_in_bfloat16_stays_close(jina):
    """The ALiBi bias is built and applied in float32 whatever the model's dtype."""
    path, _, model = jina
    ids = _ids()
    half = embed(load_model(path, dtype=torch.bfloat16), ids)
    assert F.cosine_similarity(half, embed(model, ids), dim=-1).min() >= 0.999


def test_alibi_is_refused_on_causal_attention():
    from inference.layers.attention import Attention

    with pytest.raises(ValueError, match="ALiBi"):
        Attention(2, 2, 8, 1.0, causal=True, alibi_slopes=[0.5, 0.25])
    assert Attention(2, 2, 8, 1.0, causal=False, alibi_slopes=[0.5, 0.25]).alibi_slopes == [0.5, 0.25]
