"""One engine scheduler driving the ranks of a tensor-parallel model.

Rank 0 runs the ``LLMEngine`` (scheduler, KV block manager, sampler) with its ``ModelRunner`` wrapped in
``TensorParallelRunner``: every step's inputs (``StepInputs``: token ids, positions, cache slots and tables, as
plain data) are broadcast to the other ranks before rank 0 runs its own slice. Each other rank runs ``follow``: a
``ModelRunner`` over its slice and its own KV cache (its heads only, the same blocks as rank 0's), executing each
step it receives until rank 0 sends ``None``. The collectives inside the model pair the ranks' forward passes up.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from inference.config import EngineConfig
from inference.engine.block_manager import BlockManager
from inference.engine.llm_engine import _DTYPES
from inference.engine.model_runner import ModelRunner, StepLogits
from inference.engine.quarantine import EngineBroken
from inference.engine.scheduler import ScheduledStep
from inference.layers.kernel_switch import use_kernels


class TensorParallelRunner:
    """Rank 0's runner (``engine.runner``): broadcasts, then runs."""

    def __init__(self, runner: ModelRunner):
        self.runner = runner
        self.kernels = runner.kernels
        self.blocks = runner.blocks
        # the other ranks size their caches as rank 0's (on a GPU rank 0 measured its free memory)
        dist.broadcast_object_list([(runner.blocks.num_blocks, runner.blocks.block_size)], src=0)

    def run(self, step: ScheduledStep) -> StepLogits:
        """A failure in rank 0's preparation can be retried (nothing was sent). One in the broadcast, or in the
        forward pass after it, can not (``EngineBroken``): the other ranks wait in the pass's collectives, or one
        of them is gone (a rank that fails leaves, and rank 0's next collective with it fails: at once on gloo,
        after the process group's timeout on NCCL). The sampler runs after this, on rank 0 alone, so its failures
        are retried as on one rank."""
        inputs = self.runner.prepare(step)
        try:
            dist.broadcast_object_list([inputs.for_other_ranks()], src=0)
            logits, prompt_logits = self.runner.execute(inputs)
        except Exception as exc:
            raise EngineBroken(f"a step across the ranks failed (rank 0's part or a collective): {exc!r}") from exc
        return StepLogits(sample_seqs=inputs.sample_seqs, logits=logits, prompt_logits=prompt_logits)

    def stop(self) -> None:
        """Release the other ranks from ``follow``."""
        dist.broadcast_object_list([None], src=0)


def follow(model: torch.nn.Module, cfg: EngineConfig) -> int:
    """A rank above 0, with its slice of the model: a KV cache of rank 0's blocks over its own heads, then every
    step rank 0 broadcasts, until it sends ``None``; returns the steps run."""
    box: list = [None]
    dist.broadcast_object_list(box, src=0)
    num_blocks, block_size = box[0]
    kernels = cfg.resolved_kernels()
    use_kernels(model, kernels)
    device = next(model.parameters()).device
    runner = ModelRunner(model, BlockManager(num_blocks, block_size), _DTYPES[cfg.resolved_dtype()], device, kernels)
    steps = 0
    while True:
        box: list = [None]
        dist.broadcast_object_list(box, src=0)
        if box[0] is None:
            return steps
        with torch.inference_mode():
            runner.execute(box[0])
        steps += 1
