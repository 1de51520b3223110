"""LLaVA-1.5 and LLaVA-NeXT against transformers on tiny random-weight checkpoints (written by transformers,
offline): preprocessing, image token counts, prompt placement, logits, and greedy generation through our
engine (chunked prefill splitting the image tokens, batched with a text-only request)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.config import EngineConfig
from inference.engine.llm_engine import LLMEngine
from inference.layers.context import ForwardContext, forward_context
from inference.loader.safetensors import load_model
from inference.models.vision_config import ConfigError, LlavaConfig
from inference.multimodal.processor import ImageProcessor
from inference.multimodal.prompt import ImageMarkers, expand_image_tokens, flatten_images, split_markers
from inference.sampling_params import SamplingParams
from inference.tokenizer.detokenizer import IncrementalDetokenizer
from inference.tokenizer.tokenizer import Tokenizer
from tests.support.checkpoints import IMAGE_TOKEN, llava_checkpoint

ARCHS = ["llava-1.5", "llava-next"]
# (height, width): wide, tall, square, tiny, and sizes whose unpadding rounds
SIZES = [(50, 80), (90, 41), (64, 64), (7, 9), (33, 100), (120, 31)]


@pytest.fixture(scope="module", params=ARCHS)
def checkpoint(request, tmp_path_factory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp(request.param)
    return request.param, llava_checkpoint(path, next_=request.param == "llava-next")


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


def _hf(path: Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(path)


def _conversation(n_images: int) -> list[dict]:
    user = [{"type": "text", "text": "What is in this image?"}] + [{"type": "image"}] * n_images
    return [
        {"role": "system", "content": [{"type": "text", "text": "You are LLava, a helpful assistant."}]},
        {"role": "user", "content": user},
    ]


def test_processor_matches_transformers(checkpoint):
    arch, path = checkpoint
    from transformers import AutoProcessor

    theirs = AutoProcessor.from_pretrained(path)
    ours = ImageProcessor.from_dir(path, load_model(path).llava_config)
    for k, (h, w) in enumerate(SIZES):
        image = _image(h, w, seed=k)
        expected = theirs.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]
        mine = ours(image)
        assert mine.size == (h, w)
        tiles = mine.pixels.shape[0]
        assert tiles == (1 if arch == "llava-1.5" else expected.shape[0]), (h, w)
        torch.testing.assert_close(mine.pixels, expected.reshape(-1, *mine.pixels.shape[1:])[:tiles], atol=1e-6, rtol=0)
        text = theirs(images=[image], text=IMAGE_TOKEN, return_tensors="pt")["input_ids"][0]
        assert mine.num_tokens == int((text == theirs.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)).sum()), (h, w)


def _our_prompt(tokenizer: Tokenizer, images, image_token_id: int, fmt: str = "parts"):
    """Our chat path: image parts -> markers -> the template -> image tokens expanded."""
    request = [
        {"role": "system", "content": [{"type": "text", "text": "You are LLava, a helpful assistant."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is in this image?"}]
         + [{"type": "image_url", "url": "data:", "detail": "auto"} for _ in images]},
    ]  # fmt: skip
    markers = ImageMarkers.new()
    flat, found = flatten_images(request, markers)
    assert len(found) == len(images)
    if fmt == "parts":
        ids = tokenizer.apply_chat_template(split_markers(flat, markers), parts=True)
    else:
        marks = {markers.marker(k): IMAGE_TOKEN for k in range(len(images))}
        ids = tokenizer.apply_chat_template(flat, placeholders=marks)
    return expand_image_tokens(ids, image_token_id, images)


def test_logits_match_transformers(checkpoint):
    """Two images of different shapes in one prompt: same prompt ids as the HF processor, same logits."""
    _, path = checkpoint
    hf, processor = _hf(path)
    pictures = [_image(50, 80, 1), _image(90, 41, 2)]
    text = processor.apply_chat_template(_conversation(2), add_generation_prompt=True)
    inputs = processor(images=pictures, text=text, return_tensors="pt")
    with torch.no_grad():
        expected = hf(**inputs).logits[0]

    model = load_model(path)
    images = [ImageProcessor.from_dir(path, model.llava_config)(p) for p in pictures]
    ids, mm = _our_prompt(Tokenizer.from_dir(path), images, model.image_token_id)
    assert ids == inputs["input_ids"][0].tolist()
    input_ids = torch.tensor(ids)
    embeds = model.embed_tokens(input_ids)
    embeds[mm.positions] = model.encode_images(mm.images)
    with forward_context(ForwardContext.for_prompts([len(ids)])):
        logits = model.compute_logits(model(input_ids, torch.arange(len(ids)), embeds))
    torch.testing.assert_close(logits, expected, atol=2e-5, rtol=1e-5)


def test_string_templates_get_the_image_token_where_the_marker_was(checkpoint):
    """A template that only knows strings (Vicuna's plain one): the marker becomes the image token, images first;
    an ``<image>`` typed by the user stays text and adds no image."""
    _, path = checkpoint
    model = load_model(path)
    tokenizer = Tokenizer.from_dir(path)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'].upper() + ': ' + m['content'] + ' ' }}{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    image = ImageProcessor.from_dir(path, model.llava_config)(_image(40, 40))
    ids, mm = _our_prompt(tokenizer, [image], model.image_token_id, fmt="string")
    text = tokenizer.decode(ids, skip_special_tokens=False)
    assert text.startswith("SYSTEM: You are LLava") and "USER: " + IMAGE_TOKEN * image.num_tokens + "\nWhat is" in text
    typed = tokenizer.apply_chat_template([{"role": "user", "content": f"{IMAGE_TOKEN} what?"}])
    assert model.image_token_id not in typed
    with pytest.raises(ValueError, match="0 image tokens for 1 images"):
        expand_image_tokens(typed, model.image_token_id, [image])


def test_engine_generation_matches_transformers(checkpoint):
    """Greedy tokens from our engine (prefill chunks of 16 tokens, so the image tokens are split across steps,
    beside a text-only request) equal transformers' ``generate``."""
    _, path = checkpoint
    hf, processor = _hf(path)
    picture = _image(70, 45, 3)
    text = processor.apply_chat_template(_conversation(1), add_generation_prompt=True)
    inputs = processor(images=[picture], text=text, return_tensors="pt")
    with torch.no_grad():
        out = hf.generate(**inputs, max_new_tokens=12, do_sample=False, min_new_tokens=12)
    expected = out[0, inputs["input_ids"].shape[1] :].tolist()

    model = load_model(path)
    tokenizer = Tokenizer.from_dir(path)
    image = ImageProcessor.from_dir(path, model.llava_config)(picture)
    ids, mm = _our_prompt(tokenizer, [image], model.image_token_id)
    engine = LLMEngine(model, tokenizer, IncrementalDetokenizer, EngineConfig(max_batched_tokens=16, kernels="off"))
    params = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
    engine.add_request("img", ids, params, 2, mm)  # n=2: the tower runs once for both
    engine.add_request("txt", tokenizer.apply_chat_template([{"role": "user", "content": "hi"}]), params)
    tokens: dict[tuple[str, int], list[int]] = {}
    while engine.has_work:
        for delta in engine.step():
            tokens.setdefault((delta.request_id, delta.index), []).extend(delta.token_ids)
    assert tokens[("img", 0)] == expected and tokens[("img", 1)] == expected
    assert len(tokens[("txt", 0)]) == 12


def test_config_refuses_what_we_cannot_run(checkpoint):
    _, path = checkpoint
    import json

    hf = json.loads((path / "config.json").read_text())
    with pytest.raises(ConfigError, match="language model 'qwen3' is not supported"):
        LlavaConfig.from_hf({**hf, "text_config": {**hf["text_config"], "model_type": "qwen3"}})
    with pytest.raises(ConfigError, match="vision tower 'siglip_vision_model' is not supported"):
        LlavaConfig.from_hf({**hf, "vision_config": {**hf["vision_config"], "model_type": "siglip_vision_model"}})
    with pytest.raises(ConfigError, match="outside the tower"):
        LlavaConfig.from_hf({**hf, "vision_feature_layer": -9})


@pytest.mark.interpreter
def test_vision_tower_on_the_kernels_matches_the_torch_path(checkpoint):
    """What the engine runs on CUDA: the tower's non-causal attention, LayerNorm and QuickGELU (and the projector's
    GELU) on our Triton kernels (here under Triton's interpreter, or compiled with INFERENCE_TEST_DEVICE=cuda)."""
    import os

    from inference.layers.kernel_switch import use_kernels

    _, path = checkpoint
    device = os.environ.get("INFERENCE_TEST_DEVICE", "cpu")
    model = load_model(path, device=device)
    image = ImageProcessor.from_dir(path, model.llava_config)(_image(50, 80, 4))
    expected = model.encode_images([image])
    switched = use_kernels(model.vision_tower, True) + use_kernels(model.multi_modal_projector, True)
    assert switched == 3 * 4 + 2 + 1  # per layer 2 norms, attention, activation; pre/post norms; projector act
    torch.testing.assert_close(model.encode_images([image]), expected, atol=2e-5, rtol=1e-4)
