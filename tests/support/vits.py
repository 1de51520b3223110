"""Tiny random-weight VITS checkpoints (HF ``VitsModel``, saved by transformers with its vocab and tokenizer
config, as MMS-TTS checkpoints are) for the text-to-speech tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz '-"
VOCAB = {"<pad>": 0, **{c: i + 1 for i, c in enumerate(LETTERS)}, "<unk>": len(LETTERS) + 1}


def vits_checkpoint(path: Path, stochastic: bool = True, speakers: int = 1, seed: int = 0,
                    tokenizer: dict | None = None) -> Path:  # fmt: skip
    """A 2-layer VITS (hidden 16, a 2-flow prior, a 2-stage HiFi-GAN upsampling 16x) at 16 kHz, its weight-norm
    layers saved as transformers saves them; ``tokenizer``: tokenizer_config.json's fields over MMS's."""
    from transformers import VitsConfig, VitsModel

    torch.manual_seed(seed)
    config = VitsConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, ffn_dim=32, flow_size=8,
        upsample_initial_channel=32, upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3], [1, 3]], duration_predictor_filter_channels=16,
        prior_encoder_num_flows=2, prior_encoder_num_wavenet_layers=2, posterior_encoder_num_wavenet_layers=2,
        duration_predictor_num_flows=2, spectrogram_bins=9, use_stochastic_duration_prediction=stochastic,
        num_speakers=speakers, speaker_embedding_size=8 if speakers > 1 else 0, sampling_rate=16000,
    )  # fmt: skip
    model = VitsModel(config).eval()
    with torch.no_grad():  # the flows' affine layers start at zero: give them values, so that they are tested
        for name, parameter in model.named_parameters():
            if name.endswith(("translate", "log_scale")):
                parameter.normal_(0.0, 0.3)
    model.save_pretrained(path)
    (path / "vocab.json").write_text(json.dumps(VOCAB))
    settings = {
        "add_blank": True,
        "normalize": True,
        "phonemize": False,
        "is_uroman": False,
        "language": "eng",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "tokenizer_class": "VitsTokenizer",
        **(tokenizer or {}),
    }
    (path / "tokenizer_config.json").write_text(json.dumps(settings))
    return path
