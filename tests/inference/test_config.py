"""Service configuration: TOML file, CLI flags and sampling parameters fail loudly and clearly."""

import argparse

import pytest
import torch

from inference.__main__ import _model_flag
from inference.config import EngineConfig, ModelSpec, ServerConfig, load_config
from inference.env import ConfigError
from inference.sampling_params import InvalidParam, SamplingParams

GOOD = """
[server]
port = 8101
threads = 2

[engine]
max_num_seqs = 8
quantize = "int8"

[[models]]
id = "chat"
source = "packaged:smollm2"
kind = "chat"

[[models]]
id = "big"
source = "/models/qwen"
kind = "chat"
max_output_length = 1024
engine = { max_model_len = 4096, dtype = "bfloat16" }
"""


def test_toml_config(tmp_path):
    path = tmp_path / "inference.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.port == 8101 and config.threads == 2
    chat, big = config.models
    assert chat.engine.max_num_seqs == 8 and chat.engine.quantize == "int8"
    assert big.engine.max_model_len == 4096 and big.engine.dtype == "bfloat16" and big.engine.max_num_seqs == 8
    assert big.max_output_length == 1024


@pytest.mark.parametrize(
    "text, message",
    [
        ("[server]\nport = 0\n[[models]]\nid='a'\nsource='x'\nkind='chat'", "port"),
        (
            "[server]\ntensor_parallel_size = 2\n[[models]]\nid='a'\nsource='x.gguf'\nkind='chat'\n"
            "engine={weights='gguf'}",
            "tensor parallelism shards dense weights",
        ),
        ("[[models]]\nid='a'\nsource='x'\nkind='speech'", "kind must be one of"),
        ("[[models]]\nid='a'\nsource='x'\nkind='chat'\n[[models]]\nid='a'\nsource='y'\nkind='chat'", "duplicate"),
        ("[[models]]\nid='a'\nsource='x'\nkind='chat'\nengine={dtype='float8'}", "dtype"),
        ("[[models]]\nid='a'\nsource='x'\nkind='chat'\nengine={max_num_seqs=0}", "max_num_seqs"),
        ("[[models]]\nid='a'\nsource='x'\nkind='chat'\nengine={colour='red'}", "colour"),
        ("[[models]]\nid='a'\nsource='x'\nkind='chat'\nspeed=3", "speed"),
        ("[server]\nport = 8100\n", "no models"),
        ("not toml [", "cannot read"),
        ("[[models]]\nid='e'\nsource='x'\nkind='embedding'\nlora_modules={sql='/a'}", "chat and completion models"),
        ("[[models]]\nid='a'\nsource='x'\nkind='chat'\nlora_modules={a='/a'}", "lora_modules takes"),
        (
            "[[models]]\nid='a'\nsource='x'\nkind='chat'\nlora_modules={b='/b'}\n[[models]]\nid='b'\nsource='y'\n"
            "kind='chat'",
            "duplicate model ids",
        ),  # fmt: skip
        (
            "[server]\ntensor_parallel_size = 2\n[[models]]\nid='a'\nsource='x'\nkind='chat'\nlora_modules={b='/b'}",
            "not served with tensor parallelism",
        ),  # fmt: skip
    ],
)
def test_bad_config_names_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_lora_flags_go_to_the_first_generative_model():
    from inference.__main__ import _lora_flag, build_config

    models = [_model_flag("e=packaged:minilm:embedding"), _model_flag("c=packaged:smollm2:chat")]
    loras = [_lora_flag("sql=/adapters/sql"), _lora_flag("poem=/adapters/poem")]
    args = argparse.Namespace(config=None, model=models, host=None, port=None, threads=None, tensor_parallel_size=None,
                              quantize=None, no_fused_decode=False, lora=loras,
                              tally_path="/data/tally.sqlite3")  # fmt: skip
    config = build_config(args)
    assert config.models[1].lora_modules == {"sql": "/adapters/sql", "poem": "/adapters/poem"}
    assert config.tally_path == "/data/tally.sqlite3"  # --tally-path
    assert config.models[0].lora_modules == {}
    with pytest.raises(argparse.ArgumentTypeError):
        _lora_flag("no-path")
    args.model = [_model_flag("e=packaged:minilm:embedding")]
    with pytest.raises(ConfigError, match="--lora needs a chat or completion model"):
        build_config(args)


def test_model_flag():
    spec = _model_flag("my-llama=/models/llama:chat")
    assert (spec.id, spec.source, spec.kind) == ("my-llama", "/models/llama", "chat")
    assert _model_flag("s=packaged:smollm2:chat").source == "packaged:smollm2"
    with pytest.raises(argparse.ArgumentTypeError):
        _model_flag("no-equals-sign")


def test_engine_device_choice():
    assert EngineConfig(device="cpu").resolved_device() == "cpu"
    assert EngineConfig().resolved_device() in ("cpu", "cuda")
    with pytest.raises(ConfigError):
        EngineConfig(device="tpu")
    with pytest.raises(ConfigError):
        ServerConfig(models=[ModelSpec(id="a", source="x", kind="chat")], port=70000)


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"top_k": -2}, "top_k"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"logprobs": 21}, "logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logit_bias": {5: 101.0}}, "logit_bias"),
        ({"priority": -1_000_001}, "priority"),
    ],
)
def test_sampling_params_name_the_bad_parameter(kwargs, param):
    with pytest.raises(InvalidParam) as err:
        SamplingParams(**kwargs)
    assert err.value.param == param


def test_a_vanishing_temperature_samples_greedily():
    """5e-324 once turned the logits into inf and the probabilities into NaN (a 500 the hub's fuzz found)."""
    from inference.layers.sampler import sample

    logits = torch.randn(2, 50, generator=torch.Generator().manual_seed(0))
    params = [SamplingParams(temperature=5e-324), SamplingParams(temperature=1e-30, top_p=0.5)]
    assert all(p.greedy for p in params) and not SamplingParams(temperature=1e-5).greedy
    result = sample(logits, params, [([], []), ([], [])], [None, None])
    assert result.token_ids == logits.argmax(-1).tolist()


def test_top_p_zero_keeps_the_most_likely_token():
    """OpenAI accepts top_p = 0; the cut once dropped every token (NaN probabilities)."""
    from inference.layers.sampler import sample

    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    params = [SamplingParams(temperature=1.5, top_p=0.0, seed=s) for s in range(3)]
    result = sample(logits, params, [([], [])] * 3, [None] * 3)
    assert result.token_ids == logits.argmax(-1).tolist()


def test_listening_beyond_loopback_needs_a_shared_secret(monkeypatch):
    monkeypatch.delenv("INFERENCE_API_KEY", raising=False)
    models = [ModelSpec(id="a", source="x", kind="chat")]
    with pytest.raises(ConfigError, match="INFERENCE_API_KEY"):
        ServerConfig(models=models, host="0.0.0.0")
    with pytest.raises(ConfigError, match="at least 16"):
        ServerConfig(models=models, host="0.0.0.0", api_key="short")
    assert ServerConfig(models=models, host="0.0.0.0", api_key="k" * 16).api_key == "k" * 16
    assert ServerConfig(models=models, host="127.0.0.1").api_key is None  # loopback: no secret needed
    monkeypatch.setenv("INFERENCE_API_KEY", "e" * 20)
    assert ServerConfig(models=models, host="::").api_key == "e" * 20


def test_a_row_short_of_min_tokens_draws_none_of_its_ends():
    """``banned`` (the engine's ends of a sequence short of ``min_tokens``): never drawn, greedy or sampled, even
    where the model puts all its mass on them; the logprobs stay the model's; other rows are untouched."""
    from inference.layers.sampler import sample

    logits = torch.zeros(3, 40)
    logits[:, 7] = logits[:, 9] = 50.0  # the ends, far the likeliest
    params = [SamplingParams(temperature=0.0, logprobs=0), SamplingParams(temperature=1.0, seed=3),
              SamplingParams(temperature=0.0)]  # fmt: skip
    gens = [None, torch.Generator().manual_seed(3), None]
    result = sample(logits, params, [([], [])] * 3, gens, banned=[[7, 9], [7, 9], []])
    assert result.token_ids[0] not in (7, 9) and result.token_ids[1] not in (7, 9) and result.token_ids[2] == 7
    assert result.logprobs[0][0] == pytest.approx(float(torch.log_softmax(logits[0], -1)[result.token_ids[0]]))
    assert logits[0, 7] == 50.0  # the caller's logits are left as they were
