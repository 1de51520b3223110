"""Tiny random-weight HF checkpoints written with transformers (a test-only dependency).

Every weight is re-drawn so that nothing sits at an identity-like init: norms away from 1 (or from 0
for Gemma's zero-centred ones), non-zero biases, projections scaled to keep activations O(1) so that
attention patterns and logits are far from uniform and a wrong detail shows up in the numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

VOCAB = 128


def _randomize(model: nn.Module, seed: int, embed_std: float, zero_centred_norms: bool = False) -> None:
    """``embed_std``: with tied embeddings a large one makes the input token dominate the last hidden state,
    so greedy decoding just repeats it; 0.1 keeps the generated tokens varied."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                if zero_centred_norms:  # Gemma: applied as 1 + w
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
                else:
                    p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            elif "embed" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * embed_std)
            elif p.dim() == 1:  # bare vectors (CLIP's class embedding, LLaVA-NeXT's image newline)
                p.copy_(torch.randn(p.shape, generator=gen))
            else:  # Linear [out, in], Conv2d [out, in, k, k]: scaled by the fan-in
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))


def _save(model: nn.Module, path: Path, max_shard_size: str | None = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, **kwargs)
    return path


def llama_checkpoint(path: Path) -> Path:
    """GQA (4 heads / 2 kv), head_dim 24 != 64/4, untied lm_head, q/k/v/o and MLP biases, llama3 rope scaling
    whose original context (16) is short enough that all three frequency bands occur."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attention_bias=True,
        mlp_bias=True,
        bos_token_id=None,
        eos_token_id=None,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500_000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    )
    model = LlamaForCausalLM(config)
    _randomize(model, seed=1, embed_std=1.0)
    return _save(model, path)


def qwen2_checkpoint(path: Path, sliding_window: bool = False, rope_parameters: dict | None = None) -> Path:
    """q/k/v biases, one kv head, tied embeddings, linear rope scaling, saved in several shards (with an
    index). ``sliding_window``: turn on Qwen2's window (12) for layers >= 1; otherwise the config still carries
    a window of 4 that must be ignored because ``use_sliding_window`` is off. ``rope_parameters``: another
    rope (yarn, dynamic) instead of the linear one."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        use_sliding_window=sliding_window,
        sliding_window=12 if sliding_window else 4,
        max_window_layers=1,
        bos_token_id=None,
        eos_token_id=None,
        rope_parameters=rope_parameters or {"rope_type": "linear", "rope_theta": 1_000_000.0, "factor": 2.0},
    )
    model = Qwen2ForCausalLM(config)
    _randomize(model, seed=2, embed_std=0.1)
    return _save(model, path, max_shard_size="100KB")


def qwen3_checkpoint(path: Path, tied: bool = False, sliding_window: bool = False) -> Path:
    """Qwen3: QK-norm, head_dim 24 != 64/4, GQA (4 heads / 2 kv), q/k/v/o biases (``attention_bias``), base 1M.
    ``tied``: tied embeddings (the small Qwen3s), else an lm_head; ``sliding_window``: Qwen2's window (12) on
    layers >= 1, else a window of 4 in the config that ``use_sliding_window`` off must make ignored."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tied,
        attention_bias=True,
        use_sliding_window=sliding_window,
        sliding_window=12 if sliding_window else 4,
        max_window_layers=1,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    )
    model = Qwen3ForCausalLM(config)
    _randomize(model, seed=6, embed_std=0.1 if tied else 1.0)
    return _save(model, path)


def gemma3_checkpoint(path: Path, short: bool = False) -> Path:
    """7 layers (sliding x5, full, sliding: the default pattern of 6), window 8, local base 10k and a global
    base of 1M with linear scaling, QK-norm, attention scale 24**-0.5 != head_dim**-0.5, final softcapping.
    ``short``: 3 layers (sliding, full, sliding) named in ``layer_types``: every kind of layer at less than half
    the cost, for the tests that run the whole engine under Triton's interpreter."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    layers = {"num_hidden_layers": 3, "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}
    config = Gemma3TextConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        **(layers if short else {"num_hidden_layers": 7}),
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=24,
        sliding_window=8,
        max_position_embeddings=512,
        final_logit_softcapping=30.0,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=None,
        rope_parameters={
            "full_attention": {"rope_type": "linear", "rope_theta": 1_000_000.0, "factor": 8.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
    )
    model = Gemma3ForCausalLM(config)
    _randomize(model, seed=3, embed_std=0.1, zero_centred_norms=True)
    return _save(model, path)


def bert_checkpoint(path: Path, vocab: int = VOCAB, seed: int = 4) -> Path:
    """A 2-layer BERT with two token types and a pooler (which our encoder must ignore)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    model = BertModel(config)
    _randomize(model, seed=seed, embed_std=1.0)
    return _save(model, path)


# --- a tiny text model with a tokenizer -----------------------------------------------------------------------

_ASCII_CORPUS = [
    "The capital of France is Paris. Once upon a time, in a small village by the sea, there lived a fisher.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10. The quick brown fox jumps over the lazy dog!",
]


def _ascii_bpe_tokenizer():
    """A byte-level BPE over printable ASCII and newline only (no lone high bytes: every id decodes to text), with
    ``VOCAB`` entries: <unk> <s> </s>, 96 characters, and merges learned from a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_level = bytes_to_unicode()  # GPT-2's byte -> character map, which byte-level tokens are written in
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=[byte_level[b] for b in [10, *range(32, 127)]],
        limit_alphabet=96,
        show_progress=False,
    )
    backend.train_from_iterator(_ASCII_CORPUS, trainer)
    assert backend.get_vocab_size() == VOCAB
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def tiny_chat_checkpoint(path: Path) -> Path:
    """``llama_checkpoint`` with its tokenizer (``</s>`` ends a sequence) saved beside it: a whole model the engine
    loads as it loads a packaged one, in a fraction of a second, for the scheduler's and sampler's tests."""
    path = llama_checkpoint(path)
    _ascii_bpe_tokenizer().save_pretrained(path)
    return path


# Llama Guard 3's chat template in its structure (its task, categories and instructions, as
# meta-llama/Llama-Guard-3-1B's), over the tiny ASCII vocabulary: <s> for <|begin_of_text|>, no header tokens
GUARD_CATEGORIES = ["Violent Crimes", "Non-Violent Crimes", "Sex Crimes", "Child Exploitation", "Defamation",
                    "Specialized Advice", "Privacy", "Intellectual Property", "Indiscriminate Weapons", "Hate",
                    "Self-Harm", "Sexual Content", "Elections", "Code Interpreter Abuse"]  # fmt: skip
GUARD_CHAT_TEMPLATE = (
    "{{ bos_token }}Task: Check if there is unsafe content in '{% if messages[-1]['role'] == 'user' %}User"
    "{% else %}Agent{% endif %}' messages in conversations according our safety policy with the below categories."
    "\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n"
    + "".join(f"S{i}: {name}.\n" for i, name in enumerate(GUARD_CATEGORIES, 1))
    + "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n"
    "{% for message in messages %}{% if message['role'] == 'user' %}User: {% else %}Agent: {% endif %}"
    "{{ message['content'] }}\n\n{% endfor %}<END CONVERSATION>\n\n"
    "Provide your safety assessment for ONLY THE LAST {% if messages[-1]['role'] == 'user' %}User{% else %}Agent"
    "{% endif %} message in the above conversation:\n - First line must read 'safe' or 'unsafe'.\n"
    " - If unsafe, a second line must include a comma-separated list of violated categories.\n"
)


def guard_checkpoint(path: Path) -> Path:
    """``llama_checkpoint`` with a 2,048-token context (a guard prompt lists its categories: ~700 tokens of this
    vocabulary) and the ASCII tokenizer carrying ``GUARD_CHAT_TEMPLATE``: a random-weight Llama Guard."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(llama_checkpoint(path))
    config.max_position_embeddings = 2048
    model = LlamaForCausalLM(config)
    _randomize(model, seed=7, embed_std=1.0)
    _save(model, path)
    tokenizer = _ascii_bpe_tokenizer()
    tokenizer.chat_template = GUARD_CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path


# every projection of a Llama layer
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_adapter(base_dir: Path, out_dir: Path, seed: int, targets=LORA_TARGETS, **config):
    """A PEFT LoRA adapter on a decoder checkpoint, A and B random (PEFT's own init leaves B zero: a no-op), saved by
    PEFT in ``out_dir``; returns (the PEFT model, in float32, as the reference; ``out_dir``)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    options = {"r": 8, "lora_alpha": 16, "init_lora_weights": False, **config}
    peft = get_peft_model(hf, LoraConfig(target_modules=targets, **options))
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)
    peft.save_pretrained(out_dir)
    return peft.eval(), out_dir


# --- LLaVA -----------------------------------------------------------------------------------------

# The vision examples' tiny models: a byte-level BPE (any text encodes), a CLIP tower on 32x32 tiles of 8x8
# patches, a Llama (1.5) or Mistral (NeXT) language model. Vicuna's conversation format, as llava-v1.6-vicuna.
IMAGE_TOKEN = "<image>"
LLAVA_CHAT_TEMPLATE = (  # llava-hf/llava-v1.6-vicuna-7b-hf's: images first in each message, then its text
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
_CORPUS = [
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful answers.",
    "What is in this image? The image shows a wooden boardwalk through a field of tall green grass under a sky.",
    "You are a helpful AI assistant named LLava; help people answer their question based on the image and text.",
]


def _byte_bpe_tokenizer(vocab_size: int = 320):
    """A byte-level BPE trained on a few sentences (offline, deterministic), with LLaVA's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", IMAGE_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )  # fmt: skip


def llava_checkpoint(path: Path, next_: bool = False) -> Path:
    """A random-weight LLaVA-1.5 (``LlavaForConditionalGeneration``) or LLaVA-NeXT
    (``LlavaNextForConditionalGeneration``, any-resolution tiles of 32 and an image newline) with its processor
    (tokenizer, image processor config, chat template) saved beside it, as llava-hf checkpoints are.

    CLIP: hidden 32, 3 layers, 2 heads of 16, quick_gelu, features from layer -2 without CLS. The language model
    has a 2048-token context so that the reference's examples (max_tokens=1000) fit."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaImageProcessorPil,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        LlavaProcessor,
        MistralConfig,
    )

    torch.manual_seed(0)
    tokenizer = _byte_bpe_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=16, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )  # fmt: skip
    text_kwargs = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=None,
    )  # fmt: skip
    mean, std = [0.48, 0.46, 0.41], [0.27, 0.26, 0.28]
    if next_:
        pinpoints = [[32, 64], [64, 32], [64, 64], [96, 32]]
        config = LlavaNextConfig(
            vision_config=vision, text_config=MistralConfig(**text_kwargs, sliding_window=None),
            image_token_index=image_token_id, image_grid_pinpoints=pinpoints, projector_hidden_act="gelu",
            vision_feature_layer=-2, vision_feature_select_strategy="default",
        )  # fmt: skip
        model = LlavaNextForConditionalGeneration(config)
        images = LlavaNextImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints,
            image_mean=mean, image_std=std,
        )  # fmt: skip
        processor_class = LlavaNextProcessor
    else:
        config = LlavaConfig(
            vision_config=vision, text_config=LlamaConfig(**text_kwargs), image_token_index=image_token_id,
            projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default",
        )  # fmt: skip
        model = LlavaForConditionalGeneration(config)
        # LLaVA-1.5's own preprocessing: pad to a square of the mean colour, then resize (no crop needed)
        images = LlavaImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_pad=True, image_mean=mean,
            image_std=std,
        )  # fmt: skip
        processor_class = LlavaProcessor
    _randomize(model, seed=5, embed_std=0.1)
    processor = processor_class(
        image_processor=images, tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        chat_template=LLAVA_CHAT_TEMPLATE, num_additional_image_tokens=1,
    )  # fmt: skip
    _save(model, path)
    processor.save_pretrained(path)
    return Path(path)


def whisper_checkpoint(path: Path, num_mel_bins: int = 80, source_positions: int = 1500) -> Path:
    """A 2+2-layer Whisper (d_model 64, 4 heads) over the real 1500 encoder positions (fewer: a decoder to test
    alone, on encoded windows the test makes up); 128 mel bins is large-v3's front."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=VOCAB,
        num_mel_bins=num_mel_bins,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=96,
        decoder_ffn_dim=96,
        max_target_positions=64,
        max_source_positions=source_positions,
        pad_token_id=VOCAB - 1,
        bos_token_id=VOCAB - 1,
        eos_token_id=VOCAB - 1,
        decoder_start_token_id=VOCAB - 2,
    )
    model = WhisperForConditionalGeneration(config)
    _randomize(model, seed=5, embed_std=0.1)
    return _save(model, path)


# --- running them -----------------------------------------------------------------------------------------------


def prefill_logits(model, prompts: list[list[int]]) -> torch.Tensor:
    """Our model on all prompts as one flat batch without cache -> logits [sum(lens), vocab]."""
    from inference.layers.context import ForwardContext, forward_context

    ids = torch.tensor([t for p in prompts for t in p])
    positions = torch.cat([torch.arange(len(p)) for p in prompts])
    with torch.inference_mode(), forward_context(ForwardContext.for_prompts([len(p) for p in prompts])):
        return model.compute_logits(model(ids, positions))


def hf_logits(hf, prompts: list[list[int]]) -> torch.Tensor:
    """A transformers model on each prompt alone -> logits [sum(lens), vocab], float32."""
    with torch.inference_mode():
        return torch.cat([hf(torch.tensor([p])).logits[0] for p in prompts]).float()


# --- a tokenizer for checkpoints without one -----------------------------------------------------------------


class IdTokenizer:
    """All the engine needs of a tokenizer: stop ids and ``decode``; token ids stand for themselves as text."""

    stop_token_ids: list[int] = []

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(f"<{i}>" for i in ids)


class IdDetokenizer:
    def __init__(self, tokenizer, prompt_ids):
        self.tokenizer = tokenizer

    def add(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def flush(self) -> str:
        return ""
