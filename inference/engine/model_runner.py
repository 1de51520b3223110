"""Turns a scheduled step into tensors, runs the model over the paged KV cache, returns logits."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import torch

from inference.cpu.fused_decoder import FusedDecoder
from inference.engine.block_manager import BlockManager
from inference.engine.cuda_graphs import DecodeGraphs
from inference.engine.scheduler import ScheduledStep
from inference.engine.sequence import Sequence
from inference.layers.context import ForwardContext, forward_context

log = logging.getLogger("inference.model_runner")


@dataclass
class StepLogits:
    sample_seqs: list[Sequence]  # sequences that get a new token this step
    logits: torch.Tensor  # [len(sample_seqs), vocab] float32
    # prompt logprobs: per sequence asking for them, (positions, logits [n, vocab]) of this chunk
    prompt_logits: dict[int, tuple[int, torch.Tensor]]


@dataclass
class StepInputs:
    """One step's forward pass as data: ``tables`` the attention's slot tables (CPU tensors), ``sample_rows`` the
    rows to sample, ``prompt_rows`` seq_id -> (first position, first row, end row) of prompt logprobs;
    ``with_images`` and ``sample_seqs`` are rank 0's own (sequences), not sent to other ranks."""

    input_ids: list[int]
    positions: list[int]
    slots: list[int]
    cu: list[int]
    context_lens: list[int]
    is_decode: bool
    prompt_lens: list[int] | None
    tables: dict
    sample_rows: list[int]
    prompt_rows: dict[int, tuple[int, int, int]]
    with_images: list = field(default_factory=list)
    sample_seqs: list = field(default_factory=list)
    lora_ids: list[int] | None = None  # each row's LoRA adapter slot (-1: none); None: no adapter in the step

    def for_other_ranks(self) -> StepInputs:
        if self.with_images:
            raise ValueError("images are not served with tensor parallelism")
        return dataclasses.replace(self, sample_seqs=[])


class ModelRunner:
    def __init__(
        self,
        model: torch.nn.Module,
        blocks: BlockManager,
        kv_dtype: torch.dtype,
        device: torch.device,
        kernels: bool = False,
        graphs_for: tuple[int, int] | None = None,
        fused_decode: bool = True,
    ):
        """``graphs_for``: (max_num_seqs, max_model_len) to capture decode CUDA graphs for (CUDA, kernels).
        ``fused_decode``: on the CPU, generated rows through the fused C++ decode step where the model allows
        (``inference/cpu/fused_decoder.py``)."""
        self.model = model
        self.kernels = kernels  # the model's layers run on the Triton kernels: give them block tables
        self.blocks = blocks
        self.device = device
        slots = blocks.num_blocks * blocks.block_size
        for layer in model.attention_layers():
            # zeros, not empty: padded gathers read slot 0 and masked NaNs would still poison 0 * v
            shape = (slots, layer.num_kv_heads, layer.head_dim)
            layer.k_cache = torch.zeros(shape, dtype=kv_dtype, device=device)
            # MLA: the values are the keys' latent part, so one buffer serves both (written twice, alike)
            layer.v_cache = layer.k_cache if layer.shared_kv else torch.zeros(shape, dtype=kv_dtype, device=device)
        self.fused = FusedDecoder.for_model(model) if fused_decode and device.type == "cpu" and not kernels else None
        self.graphs: DecodeGraphs | None = None
        if graphs_for is not None and kernels and device.type == "cuda":
            max_num_seqs, max_model_len = graphs_for
            try:
                self.graphs = DecodeGraphs(model, max_num_seqs, -(-max_model_len // blocks.block_size),
                                           blocks.block_size, device)  # fmt: skip
            except Exception:  # noqa: BLE001 - a model the graphs cannot capture still runs, eagerly
                log.exception("decode CUDA graphs could not be captured; decoding eagerly")

    def _context_slots(self, seqs: list[Sequence], max_len: int) -> torch.Tensor:
        """[S, max_len] cache slot of every position of every sequence (0 past its end)."""
        bs = self.blocks.block_size
        width = max(len(s.block_table) for s in seqs)
        tables = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, seq in enumerate(seqs):
            tables[i, : len(seq.block_table)] = torch.tensor(seq.block_table, dtype=torch.long)
        pos = torch.arange(max_len)
        return tables[:, pos // bs] * bs + pos % bs

    def _kernel_tensors(self, seqs: list[Sequence], cu: list[int], context_lens: list[int]) -> dict:
        """What the attention kernels read: block tables [S, max_blocks] int32 and lengths (``execute`` moves them to
        the device)."""
        width = max(len(s.block_table) for s in seqs)
        tables = torch.zeros(len(seqs), width, dtype=torch.int32)
        for i, seq in enumerate(seqs):
            tables[i, : len(seq.block_table)] = torch.tensor(seq.block_table, dtype=torch.int32)
        return {
            "block_tables": tables,
            "context_lens_t": torch.tensor(context_lens, dtype=torch.int32),
            "cu_seqlens_q_t": torch.tensor(cu, dtype=torch.int32),
            "max_seqlen_q": max(b - a for a, b in zip(cu, cu[1:], strict=False)),
            "block_size": self.blocks.block_size,
        }

    def _image_embeds(self, ids: torch.Tensor, with_images: list[tuple[int, Sequence, int, int]]) -> torch.Tensor:
        """[T, hidden] input vectors: token embeddings, with each prompt's image tokens in this step replaced by
        its images' features (the vision tower runs once per request, when its first image token is reached)."""
        x = self.model.embed_tokens(ids)
        for offset, seq, start, n in with_images:
            mm = seq.mm
            local, rows = mm.rows(start, start + n)
            if not local.numel():
                continue
            if mm.embeds is None:
                mm.embeds = self.model.encode_images(mm.images)
            x[offset + local.to(x.device)] = mm.embeds[rows.to(mm.embeds.device)].to(x.dtype)
        return x

    def prepare(self, step: ScheduledStep) -> StepInputs:
        """What a forward pass over ``step`` needs, in plain lists and CPU tensors (a tensor-parallel rank 0 sends
        it to the other ranks, which have no sequences)."""
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        cu = [0]
        context_lens: list[int] = []
        sample_rows: list[int] = []
        sample_seqs: list[Sequence] = []
        prompt_rows: dict[int, tuple[int, int, int]] = {}
        with_images: list[tuple[int, Sequence, int, int]] = []  # (offset in the batch, seq, first position, n)
        lora = any(seq.params.lora_id is not None for seq in step.seqs)
        lora_ids: list[int] | None = [] if lora else None
        for seq, n in zip(step.seqs, step.num_new_tokens, strict=True):
            if lora_ids is not None:
                lora_ids.extend([-1 if seq.params.lora_id is None else seq.params.lora_id] * n)
            start = seq.num_computed
            if seq.mm is not None and start <= seq.mm.last_position:
                with_images.append((len(input_ids), seq, start, n))
            for p in range(start, start + n):
                input_ids.append(seq.token_at(p))
                positions.append(p)
                slots.append(self.blocks.slot(seq, p))
            cu.append(cu[-1] + n)
            context_lens.append(start + n)
            if seq.params.prompt_logprobs is not None and start < seq.num_prompt:
                prompt_rows[seq.seq_id] = (start, cu[-2], cu[-2] + min(n, seq.num_prompt - start))
            if start + n == seq.num_tokens:  # everything known is computed: sample the next token
                sample_rows.append(cu[-1] - 1)
                sample_seqs.append(seq)
        tables = (
            self._kernel_tensors(step.seqs, cu, context_lens)
            if self.kernels
            else {"context_slots": self._context_slots(step.seqs, max(context_lens))}
        )
        return StepInputs(
            input_ids, positions, slots, cu, context_lens, step.is_decode,
            None if self.kernels else [seq.num_prompt for seq in step.seqs],  # the CPU path: rows by role
            tables, sample_rows, prompt_rows, with_images, sample_seqs, lora_ids,
        )  # fmt: skip

    @torch.inference_mode()
    def execute(self, inputs: StepInputs) -> tuple[torch.Tensor, dict[int, tuple[int, torch.Tensor]]]:
        """The forward pass: (logits of the rows to sample [S, vocab] float32, prompt logits per sequence)."""
        device = self.device
        tables = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.tables.items()}
        ctx = ForwardContext(
            cu_seqlens_q=inputs.cu,
            context_lens=inputs.context_lens,
            slot_mapping=torch.tensor(inputs.slots, dtype=torch.long, device=device),
            is_decode=inputs.is_decode,
            # the CPU path computes every row alike whatever the batch (the kernels' path: issue 28)
            prompt_lens=inputs.prompt_lens,
            lora_ids=inputs.lora_ids,
            **tables,
        )
        ids = torch.tensor(inputs.input_ids, dtype=torch.long, device=device)
        pos = torch.tensor(inputs.positions, dtype=torch.long, device=device)
        embeds = self._image_embeds(ids, inputs.with_images) if inputs.with_images else None
        cu = inputs.cu
        # a step with LoRA rows runs the plain forward: the graphs and the fused decode never call the projections,
        # whose hooks add the adapters (inference/layers/lora.py)
        plain = inputs.lora_ids is not None
        graphs = self.graphs is not None and not plain and inputs.is_decode
        if graphs and self.graphs.fits(len(cu) - 1, ctx.block_tables.shape[1]):
            hidden = self.graphs.run(ids, pos, ctx)
        elif embeds is not None:
            with forward_context(ctx):
                hidden = self.model(ids, pos, embeds)
        elif self.fused is not None and ctx.prompt_lens is not None and not plain:
            hidden = self._forward_fused(ids, pos, ctx)
        else:
            with forward_context(ctx):
                hidden = self.model(ids, pos)
        rows = inputs.sample_rows
        logits = self.model.compute_logits(hidden[rows]) if rows else hidden.new_zeros(0, 0)
        prompt_logits = {
            seq_id: (first, self.model.compute_logits(hidden[a:b]))
            for seq_id, (first, a, b) in inputs.prompt_rows.items()
        }
        return logits.float(), prompt_logits

    def _forward_fused(self, ids: torch.Tensor, pos: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        """[T, hidden]: generated rows through the fused decoder, prompt rows (if any) through the model first, as a
        step of their own (their keys are then in the cache for generated rows of the same sequence)."""
        prompt, generated = ctx.row_roles()
        if generated is None:
            with forward_context(ctx):
                return self.model(ids, pos)
        if prompt is None and ctx.is_decode:  # one generated row per sequence: its slots are its sequence's row
            return self.fused(ids, pos, ctx.slot_mapping, ctx.context_slots)
        # each generated row's own sequence: its cache slots are that sequence's row of context_slots
        owner = torch.repeat_interleave(torch.arange(ctx.num_seqs), torch.tensor(ctx.cu_seqlens_q).diff())
        if prompt is None:
            return self.fused(ids, pos, ctx.slot_mapping, ctx.context_slots[owner])
        hidden = torch.empty(ctx.num_tokens, self.fused.hidden_size)
        with forward_context(ctx.prompt_only()):
            hidden[prompt] = self.model(ids[prompt], pos[prompt])
        keys = ctx.context_slots[owner[generated]]
        hidden[generated] = self.fused(ids[generated], pos[generated], ctx.slot_mapping[generated], keys)
        return hidden

    def run(self, step: ScheduledStep) -> StepLogits:
        inputs = self.prepare(step)
        logits, prompt_logits = self.execute(inputs)
        return StepLogits(sample_seqs=inputs.sample_seqs, logits=logits, prompt_logits=prompt_logits)
