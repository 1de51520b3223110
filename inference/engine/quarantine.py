"""A step that raised: its requests run again, one request per step, to find the one that made it fail.

A step's forward pass (or its sampler) runs every scheduled request at once, so an exception there cannot say whose
input reached it: one image the vision tower can not read, one prompt that meets a bug in a model's code, a
grammar whose mask fails. ``LLMEngine.step`` commits nothing of a step until all of it has run, so the step's
requests can simply run again (a seeded request's generator is set back to its state before the step's draws). They
do, alone and in the order of the failed step: a request whose step succeeds is cleared, one that fails alone is the
cause and fails with the error; the others never see it. Requests outside the failed step wait meanwhile (as many
steps as the failed one had requests).

A failure that every step meets (a broken device) fails the requests one after another, each alone, where before the
engine failed them all at once. A request that can not run alone now (no room for its prompt while the others hold
the cache) is cleared without its test, so that the engine never waits on it. vLLM and SGLang stop the engine on a
failed step; this keeps the innocent requests' answers, token for token what they get alone. ``EngineBroken`` is the
one failure never run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class EngineBroken(RuntimeError):
    """A failure the engine can not go on from, so no step is run again: a tensor-parallel rank 0 that failed in
    its forward pass after it had sent the step to the other ranks, which now wait in a collective that will never
    complete. The worker fails every request and stops the loop, and the service exits so that it is restarted."""


@dataclass
class Quarantine:
    suspects: list[str] = field(default_factory=list)  # request ids, retried alone in this order

    def current(self) -> str | None:
        """The request the next step runs alone, if any is suspected."""
        return self.suspects[0] if self.suspects else None

    def on_failure(self, request_ids: list[str]) -> str | None:
        """A step over ``request_ids`` (arrival order) raised. The request to fail when it ran alone; otherwise None,
        and the step's requests are suspects, retried alone."""
        if len(request_ids) == 1:
            self.clear(request_ids[0])
            return request_ids[0]
        self.suspects += [r for r in request_ids if r not in self.suspects]
        return None

    def clear(self, request_id: str) -> None:
        """The request ran a step without failing, or it left the engine."""
        if request_id in self.suspects:
            self.suspects.remove(request_id)
