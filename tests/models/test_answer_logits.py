"""The LM head only at the answer positions: equal to the full-logits loss, and no (B, L, V) tensor ever.

The chunked op is checked against the full-logits reference in float64 (value and every gradient, odd
sizes, several chunks with a partial last one, with and without bias), by ``gradcheck``, and in float32
against the float64 run with the project's tolerance rule. The VQA model's answer-only loss is checked
against its own full-logits path (the language model's ``labels=`` loss) in float64 for Llama and GPT-2
(tied embeddings), with LoRA and with the whole LLM trained (head gradients), and a dispatch mode watches
every tensor the training step creates.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bamco_fast.models.answer_logits import (
    answer_hidden_states,
    answer_only_unsupported_reason,
    default_chunk_rows,
    linear_cross_entropy,
    linear_cross_entropy_reference,
)
from bamco_fast.ops._tolerance import Tolerance, group_error

pytestmark = pytest.mark.usefixtures("one_thread")

TOL32 = Tolerance(factor=4.0, floor=1e-6)


def _inputs(n=37, h=24, v=301, bias=True, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, generator=gen, dtype=torch.float64)
    w = torch.randn(v, h, generator=gen, dtype=torch.float64) * 0.3
    b = torch.randn(v, generator=gen, dtype=torch.float64) if bias else None
    y = torch.randint(0, v, (n,), generator=gen)
    y[:3] = v - 1  # a repeated class, and many classes absent
    out = [t.to(dtype).requires_grad_() if t is not None else None for t in (x, w, b)]
    return out[0], out[1], y, out[2]


def _value_and_grads(fn, x, w, y, b):
    loss = fn(x, w, y, b)
    params = [t for t in (x, w, b) if t is not None]
    grads = torch.autograd.grad(loss * 1.7, params)  # a grad_output other than 1
    return loss.detach(), [g.detach() for g in grads]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk", [1, 5, 37, 1000])
def test_chunked_equals_full_logits_float64(bias, chunk):
    x, w, y, b = _inputs(bias=bias)
    ref, ref_grads = _value_and_grads(linear_cross_entropy_reference, x, w, y, b)
    got, grads = _value_and_grads(lambda *a: linear_cross_entropy(*a, chunk_rows=chunk), x, w, y, b)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-12)


def test_gradcheck_float64():
    x, w, y, b = _inputs(n=7, h=5, v=11)
    assert torch.autograd.gradcheck(lambda x, w, b: linear_cross_entropy(x, w, y, b, chunk_rows=3), (x, w, b))


def test_float32_within_the_references_own_error():
    x, w, y, b = _inputs(n=53, h=64, v=2003, seed=3)
    exact, exact_grads = _value_and_grads(linear_cross_entropy_reference, x, w, y, b)
    x32, w32, b32 = (t.detach().float().requires_grad_() for t in (x, w, b))
    ref, ref_grads = _value_and_grads(linear_cross_entropy_reference, x32, w32, y, b32)
    got, grads = _value_and_grads(lambda *a: linear_cross_entropy(*a, chunk_rows=8), x32, w32, y, b32)
    assert group_error(got, exact) <= TOL32.bound(group_error(ref, exact))
    assert group_error(grads, exact_grads) <= TOL32.bound(group_error(ref_grads, exact_grads))


def test_no_gradient_no_checkpoint_and_bad_input():
    x, w, y, b = _inputs()
    with torch.no_grad():
        value = linear_cross_entropy(x, w, y, b, chunk_rows=4)
    assert not value.requires_grad
    torch.testing.assert_close(value, linear_cross_entropy_reference(x, w, y, b).detach())
    with pytest.raises(ValueError, match="targets: expected shape"):
        linear_cross_entropy(x, w, y[:-1], b)
    with pytest.raises(ValueError, match="at least one answer token"):
        linear_cross_entropy(x[:0], w, y[:0], b)
    with pytest.raises(ValueError, match=r"x, weight: expected \(N, H\) and \(V, H\)"):
        linear_cross_entropy(x, w[:, :3], y, b)
    assert default_chunk_rows(128_256) == 130 and default_chunk_rows(1 << 30) == 1


def test_answer_hidden_states_takes_the_rows_before_each_label():
    hidden = torch.arange(2 * 5 * 1, dtype=torch.float32).view(2, 5, 1)
    labels = torch.tensor([[-100, -100, -100, 7, 8], [-100, -100, 9, 3, 4]])
    x, y = answer_hidden_states(hidden, labels)
    assert x.flatten().tolist() == [2.0, 3.0, 6.0, 7.0, 8.0]
    assert y.tolist() == [7, 8, 9, 3, 4]
    with pytest.raises(ValueError, match="labels: expected shape"):
        answer_hidden_states(hidden, labels[:, 1:])


def test_unsupported_logit_transforms_are_named():
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2
            )
        )
    assert answer_only_unsupported_reason(model) is None
    model.config.final_logit_softcapping = 30.0
    assert "final_logit_softcapping=30.0" in answer_only_unsupported_reason(model)


# ---------------------------------------------------------------------------------------------------
# the VQA model: answer-only loss == full-logits loss


from vqa_fixtures import ANSWERS, QIDS, QUESTIONS, _images, _model  # noqa: E402


def _double(model):
    for name in ("llm", "image_projector", "knowledge_projector", "intra_projector"):
        module = getattr(model, name)
        if module is not None:
            module.double()
    return model


def _full_logits_loss(model, images):
    """The shifted token cross-entropy of the LM's logits at every position, computed here in float64."""
    batch = model.encode_batch(QUESTIONS, ANSWERS)
    feats, _ = model.prefix_features(images, QUESTIONS, qids=QIDS, report_retrieval=False)
    ids, mask, labels = (batch[k] for k in ("input_ids", "attention_mask", "labels"))
    logits = model.llm(
        inputs_embeds=model.splice(ids, feats),
        attention_mask=mask,
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
        use_cache=False,
    ).logits
    assert logits.dtype == torch.float64
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())


def _loss_and_grads(model, loss_fn):
    model.train()
    torch.manual_seed(5)  # the same dropout masks (GPT-2 has dropout) in both computations
    loss = loss_fn()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return loss.detach(), {n: g for (n, _), g in zip(named, grads, strict=True) if g is not None}


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("lora", ["lora", "none"])
def test_vqa_answer_only_loss_equals_full_logits(lm_dirs, ks, ks_dir, kind, lora):
    images = _images(ks).double()
    model = _double(_model(lm_dirs, ks, ks_dir, kind, lora=lora, projector_dropout=0.0))
    assert model.answer_only_logits and model.full_logits_reason is None
    loss, grads = _loss_and_grads(model, lambda: model(images, QUESTIONS, ANSWERS, qids=QIDS)["loss"])
    ref, ref_grads = _loss_and_grads(model, lambda: _full_logits_loss(model, images))
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    assert set(grads) == set(ref_grads)
    if lora == "none":  # the head (tied to the input embedding in GPT-2) receives its gradient
        assert any("lm_head" in n or "wte" in n or "embed_tokens" in n for n in grads)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_the_published_full_logits_path_gives_the_same_loss(lm_dirs, ks, ks_dir, kind):
    """``answer_only_logits=False`` takes the LM's own ``labels=`` loss (float32 log-sum-exp)."""
    images = _images(ks)
    fast = _model(lm_dirs, ks, ks_dir, kind, projector_dropout=0.0)
    full = _model(lm_dirs, ks, ks_dir, kind, projector_dropout=0.0, answer_only_logits=False)
    assert full.full_logits_reason == "answer_only_logits=False"
    loss, grads = _loss_and_grads(fast, lambda: fast(images, QUESTIONS, ANSWERS, qids=QIDS)["loss"])
    ref, ref_grads = _loss_and_grads(full, lambda: full(images, QUESTIONS, ANSWERS, qids=QIDS)["loss"])
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    batch = full.encode_batch(QUESTIONS, ANSWERS)
    torch.manual_seed(5)
    frozen = full.frozen_features(images, QUESTIONS, qids=QIDS, report_retrieval=False)
    own, _ = full._llm_loss(frozen, batch)  # the LM's own labels= loss
    torch.testing.assert_close(own.detach(), ref, rtol=1e-6, atol=1e-6)


class _LargestVocabTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op returns whose last dim is the vocabulary."""

    def __init__(self, vocab: int, head: torch.Tensor):
        super().__init__()
        self.vocab, self.largest = vocab, 0
        self.head = (
            head.untyped_storage().data_ptr()
        )  # views of the head weight (e.g. its transpose) don't count

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            vocab_last = isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == self.vocab
            if vocab_last and t.untyped_storage().data_ptr() != self.head:
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("answer_only", [True, False])
def test_no_batch_by_length_by_vocab_tensor_in_a_training_step(lm_dirs, ks, ks_dir, answer_only):
    model = _model(lm_dirs, ks, ks_dir, "llama", answer_only_logits=answer_only)
    head = model.llm.get_base_model().get_output_embeddings().weight
    vocab = head.shape[0]
    batch = model.encode_batch(QUESTIONS, ANSWERS)
    length = batch["input_ids"].shape[1]
    answer_rows = int((batch["labels"][:, 1:] != -100).sum())
    images = _images(ks)
    model.train()
    watch = _LargestVocabTensor(vocab, head)
    with watch:
        model(images, QUESTIONS, ANSWERS, qids=QIDS)["loss"].backward()
    full = len(QUESTIONS) * length * vocab
    if answer_only:
        assert watch.largest <= answer_rows * vocab < full
    else:
        assert watch.largest >= full  # the watch sees the full logits when they exist
