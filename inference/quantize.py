"""CPU int8 weights: per-output-channel symmetric int8 for every Linear and the output projection.

Decoding on the CPU is bound by reading weights; int8 halves the bytes of bf16 and quarters fp32.
Gemma 3's 262 144 x 640 output projection alone is 670 MB in fp32 per generated token. Uses
``torch.ops.aten._weight_int8pack_mm`` (int8 weights, bf16 activations, fp32 scales per row).
"""

from __future__ import annotations

import torch
from torch import nn


class Int8Linear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        w = weight.detach().float()
        scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # [out]
        self.register_buffer("weight_int8", torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.detach().float())
        self.out_features, self.in_features = w.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out] in x's dtype."""
        shape = x.shape
        out = torch.ops.aten._weight_int8pack_mm(
            x.reshape(-1, shape[-1]).to(torch.bfloat16), self.weight_int8, self.scales
        )
        out = out.to(x.dtype).reshape(*shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias.to(x.dtype)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear (fused ones keep their ``split``) and give the model an int8 head."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                q = Int8Linear(child.weight, child.bias)
                if hasattr(child, "split"):  # MergedLinear: keep how to split its output
                    q.split = child.split
                setattr(module, child_name, q)
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    if getattr(model, "lm_head", "absent") is None and embed is not None:
        model.lm_head = Int8Linear(embed.weight, None)  # tied: the embedding stays float for lookups
    return model
