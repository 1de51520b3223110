"""A tiny Qwen3 reasoning model whose greedy answer is a script the test writes, for the paths that depend on what
the model says (its think block, a grammar after it).

Its final norm's weights are zero, so every logit is exactly 0 (on the int4 CPU path too): the answer is decided by
``logit_bias`` alone. Each token of the script gets a bias a little lower than the one before, and the presence and
frequency penalties (4 per use) push every token the model has said below every one it has not, so greedy decoding
says the script in order, each token once, and ends with ``<|im_end|>``. A grammar masks what it forbids, as it
would for a real model. The tokenizer is Qwen3's kind: byte-level BPE, ``<|im_start|>`` / ``<|im_end|>`` special,
``<think>`` / ``</think>`` and ``<tool_call>`` / ``</tool_call>`` added as plain (non-special) tokens, with the
generation-prompt and thinking logic of Qwen3's chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.support.checkpoints import _ASCII_CORPUS, _save

VOCAB = 420  # the model's rows: the tokenizer's ~406 ids and padding
# what the BPE learns from: its words become single tokens, so that a script can say each token once
CORPUS = ["Paris is the capital.\n\nThe answer: Lyon, Hmm.\n", "{}", '{"city": "Paris"}'] * 20
# Qwen3's chat template, its generation prompt and thinking switch verbatim; history turns kept simple
QWEN3_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
    "        {{- '<think>\\n\\n</think>\\n\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}"
)
# DeepSeek-R1's way: the generation prompt opens the block, the model starts inside it
OPENED_TEMPLATE = QWEN3_TEMPLATE.replace("assistant\\n' }}", "assistant\\n<think>\\n' }}")


def _tokenizer(template: str):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)  # fmt: skip
    backend.train_from_iterator(_ASCII_CORPUS + CORPUS, trainer)
    backend.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    backend.add_tokens([AddedToken(t, special=False, normalized=False)
                        for t in ("<think>", "</think>", "<tool_call>", "</tool_call>")])  # fmt: skip
    assert backend.get_vocab_size() <= VOCAB
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                   chat_template=template)  # fmt: skip


def scripted_checkpoint(path: Path, opened: bool = False) -> Path:
    """The model and its tokenizer. ``opened``: DeepSeek-R1's template (the prompt opens the think block)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=512, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    model = Qwen3ForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.zero_()  # every logit 0: logit_bias decides
    path = _save(model, path)
    tokenizer = _tokenizer(OPENED_TEMPLATE if opened else QWEN3_TEMPLATE)
    tokenizer.save_pretrained(path)
    generation = {"eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>")}
    (path / "generation_config.json").write_text(json.dumps(generation))
    return path


def script(tokenizer, *pieces: str) -> dict:
    """The request fields that make the model say ``pieces`` (texts, each encoded alone; ``<think>`` and the like
    are one token each) and then ``<|im_end|>``: greedy, ``logit_bias`` and the penalties."""
    ids = [t for piece in pieces for t in tokenizer.encode(piece, add_special_tokens=False)]
    ids.append(tokenizer.token_to_id("<|im_end|>"))
    if len(set(ids)) != len(ids) or len(ids) > 38:
        raise ValueError(f"a script says each token once, at most 38 of them: {ids}")
    bias = {str(t): round(100 - 0.1 * i, 1) for i, t in enumerate(ids)}
    return {"temperature": 0, "logit_bias": bias, "presence_penalty": 2, "frequency_penalty": 2}
