"""Where the time of one knowledge-space training step goes: data, towers, encoder, loss, optimiser.

:class:`StepProfiler` times a step from outside the model, so the model's own forward runs unchanged:

* ``data``: the batch producer (timed by the caller with :meth:`StepProfiler.phase`);
* ``towers``: forward pre/post hooks on the frozen image and text towers (``towers.clip.visual`` and
  ``towers.clip.text``) plus what the caller adds under the same name (tokenising, cache look-ups);
* ``encoder``: forward hooks on ``model.intra_encoder`` for its forward; for its backward, a gradient
  hook on the encoder's output marks when the gradient reaches it, and the rest of the backward pass
  (until ``backward()`` returns) is counted as the encoder's. Autograd runs the nodes created later
  first, so the classifier, prototype head and objective are done by then; only the small text head
  (created before the encoder in the forward) may run after the mark;
* ``loss``: the rest of the forward (text head, classifier, prototypes, objective) and of the backward;
* ``optimiser``: ``zero_grad`` + ``step``.

Times are wall-clock seconds (``time.perf_counter``), CPU only (no device synchronisation).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch
from phase_timer import PhaseTimer
from torch import nn

PHASES = ("data", "towers", "encoder", "loss", "optimiser")


class StepProfiler(PhaseTimer):
    """Phase times of one step at a time for a :class:`bamco_fast.models.knowledge_space.KnowledgeSpace`.

    Usage::

        prof = StepProfiler(model)
        prof.start()
        with prof.phase("data"):
            batch = ...
        with prof.forward_backward():
            out = model(...); loss = ...; loss.backward()
        with prof.phase("optimiser"):
            opt.step(); opt.zero_grad()
        times = prof.stop()   # {"data": s, "towers": s, "encoder": s, "loss": s, "optimiser": s, "total": s}
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(PHASES)
        self._marks: dict[str, float] = {}
        towers = model.towers.clip
        for module in (towers.visual, towers.text):
            self._handles.append(module.register_forward_pre_hook(self._tower_start))
            self._handles.append(module.register_forward_hook(self._tower_end))
        self._handles.append(model.intra_encoder.register_forward_pre_hook(self._encoder_start))
        self._handles.append(model.intra_encoder.register_forward_hook(self._encoder_end))

    # -------------------------------------------------------------------------------- hooks
    def _tower_start(self, module, args) -> None:
        self._marks["tower"] = time.perf_counter()

    def _tower_end(self, module, args, output) -> None:
        self._add("towers", time.perf_counter() - self._marks.pop("tower"))

    def _encoder_start(self, module, args) -> None:
        self._marks["encoder"] = time.perf_counter()

    def _encoder_end(self, module, args, output) -> None:
        self._add("encoder", time.perf_counter() - self._marks.pop("encoder"))
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._encoder_grad_ready)

    def _encoder_grad_ready(self, grad):
        self._marks["encoder_backward"] = time.perf_counter()
        return grad

    # ------------------------------------------------------------------------------ phases
    def start(self) -> None:
        self._marks.clear()
        super().start()

    @contextlib.contextmanager
    def forward_backward(self) -> Iterator[None]:
        """Time a forward + loss + backward block: towers and encoder from the hooks, the rest is ``loss``."""
        before = {k: self.times[k] for k in ("towers", "encoder")}
        start = time.perf_counter()
        yield
        end = time.perf_counter()
        grad_ready = self._marks.pop("encoder_backward", None)
        if grad_ready is not None:
            self._add("encoder", end - grad_ready)
        inside = sum(self.times[k] - before[k] for k in before)
        self._add("loss", (end - start) - inside)


def adamw_as_published(model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.2) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, weight decay on matrices only (ndim >= 2), the published groups
    (norm and bias parameters, ndim < 2, get none); betas (0.9, 0.999), eps 1e-8."""
    decay, plain = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else plain).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
