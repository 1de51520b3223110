"""Out-of-bounds and race checks for Triton kernels run under the interpreter (``TRITON_INTERPRET=1``).

On the CPU the interpreter reads and writes raw addresses: a load past the end of a tensor reads whatever the heap
holds there and a test still passes when the value is masked or ignored later. On a GPU the same access can fault
("an illegal memory access was encountered", which ends the CUDA context and every test after it) or read another
tensor's data. So, while a test runs a kernel under the interpreter, every load and store whose mask is true must
lie wholly inside the memory of one of the kernel's tensor arguments (the span its sizes and strides reach);
otherwise the launch fails with :class:`OutOfBounds`, naming the kernel, the program, the access and the nearest
argument. Pointers under a false mask are not checked: pointing past the end there is the normal idiom.

It also catches what only a GPU's concurrency shows: the interpreter runs a launch's programs one after another, so
a program that reads what another writes gets the same answer every time here, and on a GPU whichever ran first.
After each launch, an element written by one program and read or written by another fails it with :class:`Race`.

Imports only triton, torch and numpy: on the lent GPU it travels with ``tests/kernels`` (where the kernels are
compiled and this check does not apply; ``compute-sanitizer`` is the GPU's counterpart).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch


class OutOfBounds(AssertionError):
    """A kernel under the interpreter touched memory outside its tensor arguments."""


class Race(AssertionError):
    """Two programs of one launch touched the same element, at least one writing it: on a GPU they run at the same
    time in no fixed order, so the result depends on which ran first (the interpreter runs them one by one)."""


@dataclass(frozen=True)
class Span:
    """The bytes one tensor argument's elements occupy: [start, end)."""

    name: str
    start: int
    end: int


def span(name: str, tensor: torch.Tensor) -> Span | None:
    """The bytes a tensor's sizes and strides reach from its first element (None when it has no elements)."""
    if tensor.numel() == 0:
        return None
    low = sum(min(0, (n - 1) * s) for n, s in zip(tensor.shape, tensor.stride(), strict=True))
    high = sum(max(0, (n - 1) * s) for n, s in zip(tensor.shape, tensor.stride(), strict=True))
    size = tensor.element_size()
    return Span(name, tensor.data_ptr() + low * size, tensor.data_ptr() + (high + 1) * size)


def _spans_of(name: str, arg: object) -> list[Span]:
    if isinstance(arg, torch.Tensor):
        found = span(name, arg)
        return [found] if found else []
    if isinstance(arg, (tuple, list)):
        return [s for i, item in enumerate(arg) for s in _spans_of(f"{name}[{i}]", item)]
    return []


class Launch:
    """The spans of one launch's tensor arguments, merged for a vectorised lookup."""

    def __init__(self, kernel: str, spans: list[Span]):
        self.kernel = kernel
        self.spans = sorted(spans, key=lambda s: s.start)
        merged: list[list[int]] = []
        for s in self.spans:  # overlapping views of one storage become one interval
            if merged and s.start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], s.end)
            else:
                merged.append([s.start, s.end])
        self.starts = np.array([m[0] for m in merged], dtype=np.uint64)
        self.ends = np.array([m[1] for m in merged], dtype=np.uint64)
        # what each program read and wrote: (addresses, their intervals, the program) per access
        self.reads: list[tuple[np.ndarray, np.ndarray, int]] = []
        self.writes: list[tuple[np.ndarray, np.ndarray, int]] = []

    def check(self, op: str, pointers: np.ndarray, mask: np.ndarray | None, element_bytes: int, program) -> None:
        """pointers: uint64 addresses of any shape; mask: of the same shape, nonzero where active (None: all active;
        the interpreter's masks are not always bool)."""
        active = pointers if mask is None else pointers[np.broadcast_to(mask, pointers.shape).astype(bool)]
        active = np.asarray(active, dtype=np.uint64).ravel()
        if active.size == 0:
            return
        at = np.searchsorted(self.starts, active, side="right").astype(np.int64) - 1
        inside = at >= 0
        inside[inside] = active[inside] + np.uint64(element_bytes) <= self.ends[at[inside]]
        if inside.all():
            if op != "atomic":  # atomics are meant to meet
                (self.writes if op == "store" else self.reads).append((active, at, _program_id(program)))
            return
        bad = active[~inside]
        raise OutOfBounds(
            f"{self.kernel} (program {tuple(program)}): {op} of {bad.size} of {active.size} active elements "
            f"outside every tensor argument; e.g. {self._describe(int(bad[0]))}"
        )

    def finish(self) -> None:
        """After the launch: no element written by one program and read or written by another. Only the intervals
        something wrote are compared, so the reads of weights and inputs cost nothing here."""
        if not self.writes:
            return
        written_intervals = np.unique(np.concatenate([at for _, at, _ in self.writes]))
        chunks = list(self.writes)
        for addresses, at, program in self.reads:
            keep = np.isin(at, written_intervals)
            if keep.any():
                chunks.append((addresses[keep], at[keep], program))
        addresses = np.concatenate([a for a, _, _ in chunks])
        programs = np.concatenate([np.full(a.size, p, dtype=np.int64) for a, _, p in chunks])
        n_written = sum(a.size for a, _, _ in self.writes)  # the writes lead the chunks
        touched = np.isin(addresses, addresses[:n_written])  # only elements someone wrote can race
        addresses, programs = addresses[touched], programs[touched]
        order = np.lexsort((programs, addresses))
        addresses, programs = addresses[order], programs[order]
        clash = (addresses[1:] == addresses[:-1]) & (programs[1:] != programs[:-1])
        if clash.any():
            i = int(np.argmax(clash))
            address = int(addresses[i])
            owner = next(s for s in self.spans if s.start <= address < s.end)
            raise Race(
                f"{self.kernel}: programs {_program(int(programs[i]))} and {_program(int(programs[i + 1]))} both touch "
                f"byte {address - owner.start} of '{owner.name}', at least one writing it, and so do "
                f"{int(clash.sum()) - 1} other pairs: on a GPU programs run in no fixed order"
            )

    def _describe(self, address: int) -> str:
        if not self.spans:
            return f"address {address:#x}, and the kernel has no tensor arguments"
        nearest = min(self.spans, key=lambda s: min(abs(address - s.start), abs(address - s.end)))
        if address >= nearest.end:
            where = f"{address - nearest.end} bytes past the end of"
        else:
            where = f"{nearest.start - address} bytes before the start of"
        return f"address {address:#x} is {where} '{nearest.name}' ({nearest.end - nearest.start} bytes)"


def _program_id(program) -> int:
    """A program's (x, y, z) in one integer (each under 2**21)."""
    x, y, z = program
    return (int(x) << 42) | (int(y) << 21) | int(z)


def _program(packed: int) -> tuple[int, int, int]:
    return packed >> 42, (packed >> 21) & (2**21 - 1), packed & (2**21 - 1)


_current: list[Launch] = []  # the launch in flight, if any (the interpreter runs one kernel at a time)


def _element_bytes(pointers) -> int:
    return max(1, pointers.get_element_ty().primitive_bitwidth // 8)


def install() -> None:
    """Patch the interpreter (idempotent): every launch registers its tensor arguments, and every masked load,
    store and atomic is checked against them."""
    from triton.runtime import interpreter

    executor, builder = interpreter.GridExecutor, interpreter.InterpreterBuilder
    if getattr(executor, "_interpreter_checks", False):
        return
    executor._interpreter_checks = True
    init_args = executor._init_args_hst

    def init_args_checked(self, args_dev, kwargs):
        # the host copies are what the kernel's pointers address (for CPU tensors the same memory)
        args_hst, kwargs_hst = init_args(self, args_dev, kwargs)
        names = inspect.getfullargspec(self.fn).args
        spans = [s for name, arg in zip(names, args_hst, strict=False) for s in _spans_of(name, arg)]
        spans += [s for name, arg in kwargs_hst.items() for s in _spans_of(name, arg)]
        _current.append(Launch(self.fn.__name__, spans))
        return args_hst, kwargs_hst

    restore = executor._restore_args_dev

    def restore_checked(self, *args, **kwargs):  # the launch ran to its end
        launch = _current.pop()
        result = restore(self, *args, **kwargs)
        launch.finish()
        return result

    call = executor.__call__

    def call_checked(self, *args, **kwargs):
        try:
            return call(self, *args, **kwargs)
        finally:  # a launch that raised never restores its arguments
            _current.clear()

    def checking(name: str, pointer_arg: int, mask_arg: int | None, op: str):
        original = getattr(builder, name)

        def checked(self, *args):
            if _current:
                pointers = args[pointer_arg]
                mask = args[mask_arg].data if mask_arg is not None and args[mask_arg] is not None else None
                _current[-1].check(op, pointers.data, mask, _element_bytes(pointers), self.grid_idx)
            return original(self, *args)

        setattr(builder, name, checked)

    # create_load / create_store and the block-pointer forms all end in the masked ones
    checking("create_masked_load", 0, 1, "load")
    checking("create_masked_store", 0, 2, "store")
    checking("create_atomic_rmw", 1, 3, "atomic")
    checking("create_atomic_cas", 0, None, "atomic")
    executor._init_args_hst = init_args_checked
    executor._restore_args_dev = restore_checked
    executor.__call__ = call_checked
