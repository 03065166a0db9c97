"""Where the time of one VQA training step goes: data, towers, intra-class encoder, LLM, loss, optimiser.

:class:`VQAStepProfiler` times a step of :class:`bamco_fast.models.vqa.VQAModel` from outside:

* ``data``: the batch producer (decoding, stacking, cache look-ups, tokenising), timed by the caller;
* ``towers``: the frozen parts' forward (ViT patch tokens, the retrieval query, the knowledge text
  embedding, retrieval) inside :meth:`VQAStepProfiler.frozen`, minus the intra-class encoder's time;
* ``intra``: the frozen intra-class encoder's forward (a forward hook on ``knowledge_space.intra_encoder``);
* ``llm``: projectors, splicing and the LLM backbone, forward and backward;
* ``loss``: the LM head and the cross-entropy, forward and backward;
* ``optimiser``: ``step`` + ``zero_grad``.

The LLM / loss split runs the backward in two calls: the loss's backward into a detached copy of the
backbone's hidden states, then the backbone's backward from that gradient (the same gradients as one
``backward()``). Times are wall-clock seconds (CPU only: no device synchronisation).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from phase_timer import PhaseTimer

PHASES = ("data", "towers", "intra", "llm", "loss", "optimiser")


class VQAStepProfiler(PhaseTimer):
    """Phase times of one step at a time (see the module docstring).

    Usage::

        prof = VQAStepProfiler(model)
        prof.start()
        with prof.phase("data"):
            ...
        with prof.frozen():
            frozen = model.frozen_features(images, questions, qids=qids)
        times, loss = prof.finish_step(model, frozen, batch, opt)  # loss + backward, optimiser, stop
    """

    def __init__(self, model) -> None:
        super().__init__(PHASES)
        self._mark = 0.0
        encoder = getattr(model.knowledge_space, "intra_encoder", None)
        if encoder is not None:
            self._handles.append(encoder.register_forward_pre_hook(self._intra_start))
            self._handles.append(encoder.register_forward_hook(self._intra_end))

    def _intra_start(self, module, args) -> None:
        self._mark = time.perf_counter()

    def _intra_end(self, module, args, output) -> None:
        self._add("intra", time.perf_counter() - self._mark)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Time a block of frozen computations: the intra-class encoder's share from its hook, the rest
        as ``towers``."""
        before = self.times["intra"]
        start = time.perf_counter()
        try:
            yield
        finally:
            self._add("towers", time.perf_counter() - start - (self.times["intra"] - before))

    def loss_and_backward(self, model, frozen, batch: dict, *, answer_only: bool | None = None) -> float:
        """Forward and backward of the LLM (``llm``) and of the LM head with the loss (``loss``); returns
        the loss value."""
        with self.phase("llm"):
            hidden, labels = model.hidden_states(frozen, batch)
        detached = hidden.detach().requires_grad_()
        with self.phase("loss"):
            loss = model.answer_loss(detached, labels, answer_only=answer_only)
            loss.backward()
        with self.phase("llm"):
            hidden.backward(detached.grad)
        return float(loss.detach())

    def finish_step(self, model, frozen, batch: dict, optimizer, *, answer_only: bool | None = None):
        """The rest of a step after its features: :meth:`loss_and_backward`, then the optimiser's ``step``
        and ``zero_grad`` (``optimiser``). Returns ``(times, loss)``: :meth:`stop`'s times and the loss."""
        loss = self.loss_and_backward(model, frozen, batch, answer_only=answer_only)
        with self.phase("optimiser"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return self.stop(), loss
