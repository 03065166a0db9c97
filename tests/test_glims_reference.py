"""The reference encoder is the published architecture (MONAI blocks, published names), and every backend of
the fast encoder computes it: forward and input gradients, in float64 and in float32 against float64."""

from __future__ import annotations

import pytest
import torch

from bamco_fast.encoders import IntraClassEncoder
from bamco_fast.glims import GLIMSEncoder
from bamco_fast.ops import dilated_depthwise_block as op
from bamco_fast.ops._backends import cpp_availability
from bamco_fast.ops._tolerance import check_within, relative_error

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"feature_size": 2, "num_images": 64, "image_size": 32}  # the smallest volume five halvings leave


def _published_keys(fs: int) -> set[str]:
    """The GLIMS state-dict keys listed in the official code notes (section 4.6)."""
    keys = {"stem.conv.weight", "stem.conv.bias", "stem.adn.A.weight"}
    for s in range(1, 6):
        for level in ("l1", "l2"):
            base = f"dmsf_{s}.{level}"
            for branch in ("conv_3x3", "conv_3x3_dil", "conv_3x3_dil2"):
                keys |= {
                    f"{base}.{branch}.{k}"
                    for k in ("conv.weight", "conv.bias", "norm.weight", "norm.bias", "prelu.weight")
                }
            for pw in ("conv_1x1", "conv_1x1_2"):
                keys |= {f"{base}.{pw}.{k}" for k in ("conv.weight", "conv.bias", "adn.A.weight")}
            keys |= {f"{base}.prelu.weight", f"{base}.prelu2.weight"}
        keys |= {f"dmsf_{s}.ds.conv_3x3.{k}" for k in ("conv.weight", "conv.bias", "adn.A.weight")}
    return keys | {f"fc.{i}.{k}" for i in (0, 1, 3) for k in ("weight", "bias")}


def test_the_published_names_and_size():
    assert set(GLIMSEncoder(feature_size=2).state_dict()) == _published_keys(2)
    full = GLIMSEncoder()  # 36 x 84 x 84, feature size 12: the notes' count
    assert sum(p.numel() for p in full.parameters()) == 3_217_068


def _randomised(glims: GLIMSEncoder) -> GLIMSEncoder:
    """Random weights everywhere (biases before norms, affine norms and PReLU slopes not at their init)."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in glims.named_parameters():
            scale = 0.3 if p.dim() > 1 else 0.5
            p.copy_(
                torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale
                + (0.8 if "norm.weight" in name else 0.0)
            )
    return glims


def _pair(backend: str, dtype: torch.dtype):
    glims = _randomised(GLIMSEncoder(**SMALL).to(dtype))
    enc = IntraClassEncoder(layout="official", backend=backend, **SMALL).to(dtype)
    report = enc.load_official_state_dict(glims.state_dict())
    assert not report.missing_keys and not report.unexpected_keys
    return glims, enc


def _run(model, images: torch.Tensor, *, fast: bool):
    x = images.detach().clone().requires_grad_()
    b, k, c, h, w = x.shape
    # the published stack -> volume reinterpretation (``layout="official"``), then the published encoder
    out = model(x, normalize=False) if fast else model(x.contiguous().view(b, c, k, h, w))
    grad = torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum(), x)[0]
    return out.detach(), grad


BACKENDS = [
    "reference",
    pytest.param(
        "cpp", marks=pytest.mark.skipif(cpp_availability() is not None, reason=str(cpp_availability()))
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_computes_the_published_encoder_float64(backend):
    glims, enc = _pair(backend, torch.float64)
    images = torch.randn(2, 64, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref_out, ref_grad = _run(glims, images, fast=False)
    out, grad = _run(enc, images, fast=True)
    # float64: both compute the same math (the published biases cancel in the normalisations that follow)
    assert relative_error(out, ref_out) < 1e-9 and relative_error(grad, ref_grad) < 1e-8


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_backends_within_the_published_encoders_own_error(backend):
    images = torch.randn(2, 64, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    glims64, _ = _pair("reference", torch.float64)
    exact = _run(glims64, images, fast=False)
    glims32, enc32 = _pair(backend, torch.float32)
    reference = _run(glims32, images.float(), fast=False)
    fast = _run(enc32, images.float(), fast=True)
    names = ("output", "input gradient")
    problems = check_within(
        op.TOLERANCES,
        torch.float32,
        dict(zip(names, fast)),
        dict(zip(names, reference)),
        dict(zip(names, exact)),
    )
    assert not problems, problems
