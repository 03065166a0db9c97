"""BaMCo's intra-class image encoder: the convolutional GLIMS path as the published model runs it.

Every sample carries a stack of K images (K = 36 intra-class images of 84x84 in the paper), encoded as one
3D volume with 3 channels and depth K:

    stem      1x1x1 conv 3 -> f, InstanceNorm, PReLU                                 (f = feature_size)
    stage s   2 x dilated depthwise block (c = f 2^s, e = 2c), then a 2x2x2 stride-2 conv c -> 2c with
              InstanceNorm + PReLU (s = 0..4; each axis n -> floor(n / 2))
    head      flatten (32 f * D' H' W') -> Linear 768 -> LayerNorm -> ReLU -> Linear out_dim [-> L2 norm]

For 36x84x84: 36x84x84 -> 18x42x42 -> 9x21x21 -> 4x10x10 -> 2x5x5 -> 1x2x2, flatten 384 * 4 = 1536.
Convolution biases that the published model places right before a per-channel normalisation cancel
exactly and are not parameters here; :meth:`IntraClassEncoder.load_official_state_dict` maps the published
parameter names onto this module and reports those biases as ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import functional
from .losses import check_backend_name
from .tensor_checks import require_float_tensor

NUM_STAGES = 5
HEAD_HIDDEN = 768
_LAYOUTS = ("channels", "official")
_OFFICIAL_BRANCHES = ("conv_3x3", "conv_3x3_dil", "conv_3x3_dil2")  # dilations 1, 2, 3


def _conv_init_(weight: torch.Tensor) -> None:
    # torch.nn.Conv3d's default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


class ConvNormPReLU(nn.Module):
    """``prelu(instance_norm(conv3d(x, W, stride=k)))`` with a k x k x k kernel and one PReLU slope.

    Shape:
        input (B, c_in, D, H, W) -> output (B, c_out, floor(D / k), floor(H / k), floor(W / k)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, eps: float = 1e-5):
        super().__init__()
        self.kernel, self.eps = kernel, eps
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel, kernel))
        self.prelu = nn.Parameter(torch.full((1,), 0.25))
        _conv_init_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.conv3d(x, self.weight, stride=self.kernel)
        return F.prelu(F.instance_norm(h, eps=self.eps), self.prelu)


class DilatedDepthwiseBlock(nn.Module):
    """GLIMS' depthwise atrous block (``DACB``); parameters and math of
    :func:`bamco_fast.functional.dilated_depthwise_block`.

    Args:
        channels: c. expansion: e (2c in GLIMS). backend: passed to the functional op.

    Shape:
        (B, c, D, H, W) -> (B, c, D, H, W).
    """

    def __init__(self, channels: int, expansion: int, eps: float = 1e-5, backend: str | None = None):
        super().__init__()
        self.eps = eps
        self.backend = check_backend_name("DilatedDepthwiseBlock", backend, "dilated_depthwise_block")
        self.dw_weight = nn.Parameter(torch.empty(3, channels, 3, 3, 3))
        self.norm_weight = nn.Parameter(torch.ones(3, channels))
        self.norm_bias = nn.Parameter(torch.zeros(3, channels))
        self.pw1_weight = nn.Parameter(torch.empty(expansion, 3 * channels))
        self.pw2_weight = nn.Parameter(torch.empty(channels, expansion))
        self.prelu = nn.Parameter(torch.full((6,), 0.25))
        for k in range(3):
            _conv_init_(self.dw_weight.data[k].unsqueeze(1))
        _conv_init_(self.pw1_weight)
        _conv_init_(self.pw2_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.dilated_depthwise_block(
            x,
            self.dw_weight,
            self.norm_weight,
            self.norm_bias,
            self.pw1_weight,
            self.pw2_weight,
            self.prelu,
            self.eps,
            backend=self.backend,
        )


class EncoderStage(nn.Module):
    """Two dilated depthwise blocks at c channels, then the stride-2 downsampling c -> 2c."""

    def __init__(self, channels: int, backend: str | None = None):
        super().__init__()
        self.block1 = DilatedDepthwiseBlock(channels, 2 * channels, backend=backend)
        self.block2 = DilatedDepthwiseBlock(channels, 2 * channels, backend=backend)
        self.down = ConvNormPReLU(channels, 2 * channels, kernel=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.block2(self.block1(x)))


@dataclass
class OfficialLoadReport:
    """Outcome of :meth:`IntraClassEncoder.load_official_state_dict`.

    Attributes:
        missing_keys: parameters of this module that the state dict did not provide.
        unexpected_keys: published keys that map to nothing here (after stripping ``prefix``).
        ignored_keys: published keys deliberately dropped: convolution biases that cancel in the next
            normalisation, and the block PReLU that the published forward never uses.
    """

    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_enabled()


class IntraClassEncoder(nn.Module):
    """Encoder of a stack of K intra-class images into one vector (the GLIMS convolutional path of BaMCo).

    Args:
        in_channels: colour channels per image (3).
        feature_size: f, channels after the stem (12); stage s has f 2^s channels.
        out_dim: output dimension (512).
        num_images: K, images per stack (36); the depth of the volume.
        image_size: H = W of every image (84). K and H must each be ints >= 32 (five halvings), and the
            volume left after them, ``floor(K/32) x floor(H/32) x floor(H/32)`` voxels, must hold at least
            2 (its instance norm needs 2): 36 x 84 x 84 leaves 1 x 2 x 2; K = 64 with H = 32, or K = 32
            with H = 64, is the smallest; K = H = 32 (1 voxel) is refused.
        layout: ``"channels"``: the volume is ``images.permute(0, 2, 1, 3, 4)`` (channel c, depth = image);
            ``"official"``: the published code's memory reinterpretation of the (K, 3, H, W) stack as
            (3, K, H, W) (channel g holds images gK/3 .. (g+1)K/3 - 1 with their colour planes interleaved
            along depth) — use it with weights trained by the published code.
        backend: backend of the dilated depthwise blocks: ``None``/``"auto"`` or a name from the op's
            backend table (``triton``, ``cpp``, ``reference``); checked here, not at the first forward.

    Shape:
        images (B, K, in_channels, H, W) float -> (B, out_dim), L2-normalised rows when ``normalize``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        feature_size: int = 12,
        out_dim: int = 512,
        num_images: int = 36,
        image_size: int = 84,
        layout: str = "channels",
        backend: str | None = None,
    ):
        super().__init__()
        if layout not in _LAYOUTS:
            raise ValueError(f"IntraClassEncoder: layout must be one of {list(_LAYOUTS)}, got {layout!r}")
        for name, value in (
            ("in_channels", in_channels),
            ("feature_size", feature_size),
            ("out_dim", out_dim),
            ("num_images", num_images),
            ("image_size", image_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"IntraClassEncoder: {name} must be a positive int, got {value!r} ({type(value).__name__})"
                )
        check_backend_name("IntraClassEncoder", backend, "dilated_depthwise_block")
        spatial = (num_images, image_size, image_size)
        if min(spatial) < 2**NUM_STAGES:
            raise ValueError(
                f"IntraClassEncoder: num_images and image_size must be >= {2**NUM_STAGES} for {NUM_STAGES} "
                f"stride-2 downsamplings, got num_images={num_images}, image_size={image_size}"
            )
        final = [n >> NUM_STAGES for n in spatial]
        if math.prod(final) < 2:
            raise ValueError(
                f"IntraClassEncoder: the final {NUM_STAGES}-fold downsampled volume must hold >= 2 voxels for its "
                f"instance norm, got {'x'.join(map(str, final))} from num_images={num_images}, "
                f"image_size={image_size} (e.g. num_images=64 with image_size=32 gives 2x1x1)"
            )
        self.in_channels, self.num_images, self.image_size = in_channels, num_images, image_size
        self.layout = layout
        self.stem = ConvNormPReLU(in_channels, feature_size, kernel=1)
        self.stages = nn.ModuleList(EncoderStage(feature_size * 2**s, backend) for s in range(NUM_STAGES))
        flat = feature_size * 2**NUM_STAGES * math.prod(final)
        self.head = nn.Sequential(
            nn.Linear(flat, HEAD_HIDDEN),
            nn.LayerNorm(HEAD_HIDDEN),
            nn.ReLU(),
            nn.Linear(HEAD_HIDDEN, out_dim),
        )

    def set_backend(self, backend: str | None) -> IntraClassEncoder:
        """Route every dilated depthwise block to ``backend`` (``None`` = automatic); returns self."""
        check_backend_name("IntraClassEncoder.set_backend", backend, "dilated_depthwise_block")
        for module in self.modules():
            if isinstance(module, DilatedDepthwiseBlock):
                module.backend = backend
        return self

    def volume(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K, C, H, W) images -> the (B, C, K, H, W) volume of the configured layout (validated)."""
        expected = (self.num_images, self.in_channels, self.image_size, self.image_size)
        require_float_tensor(images, "IntraClassEncoder: images")
        if images.dim() != 5:
            raise ValueError(
                f"IntraClassEncoder: images must have shape (B, K, C, H, W) = (B, {', '.join(map(str, expected))}), "
                f"got rank {images.dim()} with shape {tuple(images.shape)}"
            )
        if images.shape[2] != self.in_channels:
            raise ValueError(
                f"IntraClassEncoder: images must have {self.in_channels} channels in dim 2 of (B, K, C, H, W), "
                f"got shape {tuple(images.shape)}"
            )
        if min(images.shape[1], images.shape[3], images.shape[4]) < 2**NUM_STAGES:
            raise ValueError(
                f"IntraClassEncoder: images of shape {tuple(images.shape)} are too small for {NUM_STAGES} "
                f"stride-2 downsamplings (K, H and W must be >= {2**NUM_STAGES}; expected {expected})"
            )
        if tuple(images.shape[1:]) != expected or images.shape[0] == 0:
            raise ValueError(
                f"IntraClassEncoder: images must have shape (B, {', '.join(map(str, expected))}) with B >= 1, "
                f"got {tuple(images.shape)}"
            )
        weight = self.stem.weight
        if images.dtype != weight.dtype and not _autocast_on(images.device.type):
            raise TypeError(
                f"IntraClassEncoder: images are {images.dtype} but the encoder's weights are {weight.dtype}; pass "
                f"{weight.dtype} images, convert the encoder with .to({images.dtype}), or run under torch.autocast"
            )
        b, k, c, h, w = images.shape
        if self.layout == "official":
            return images.contiguous().view(b, c, k, h, w)
        return images.permute(0, 2, 1, 3, 4).contiguous()

    def forward(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Encode ``images`` (B, K, C, H, W) -> (B, out_dim); L2-normalised rows when ``normalize``.

        Raises ``ValueError`` naming the first non-finite input value when the output is not finite
        (one scalar read per call; skipped while ``torch.compile`` traces).
        """
        out = self.encode_volume(self.volume(images), normalize)
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(out.detach()).all()):
            bad = ~torch.isfinite(images.detach())
            if bool(bad.any()):
                first = tuple(int(i) for i in bad.nonzero()[0])
                raise ValueError(
                    f"IntraClassEncoder: images contain {int(bad.sum())} non-finite values (first at index {first})"
                )
            raise FloatingPointError(
                "IntraClassEncoder: the output is not finite although the images are (non-finite weights, or an "
                "overflow in a 16-bit dtype)"
            )
        return out

    def encode_volume(self, volume: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Encode an already built (B, C, K, H, W) volume (see :meth:`volume`) -> (B, out_dim)."""
        x = self.stem(volume)
        for stage in self.stages:
            x = stage(x)
        out = self.head(x.flatten(1))
        return F.normalize(out, dim=-1) if normalize else out

    def load_official_state_dict(
        self, state_dict: dict[str, torch.Tensor], prefix: str = "", strict: bool = True
    ) -> OfficialLoadReport:
        """Load weights saved under the published GLIMS parameter names.

        Maps ``stem.conv.weight``, ``dmsf_{s}.{l1,l2}.{conv_3x3, conv_3x3_dil, conv_3x3_dil2}.{conv.weight,
        norm.weight, norm.bias, prelu.weight}`` (dilations 1, 2, 3), ``...conv_1x1[_2].{conv.weight,
        adn.A.weight}``, ``...prelu2.weight``, ``dmsf_{s}.ds.conv_3x3.{conv.weight, adn.A.weight}`` and
        ``fc.{0,1,3}.*`` onto this module. The convolution biases and the unused block ``prelu`` are
        reported in ``ignored_keys``.

        Args:
            state_dict: published-name tensors (keys starting with ``prefix``; others are unexpected).
            prefix: stripped from every key first (e.g. ``"glims."``).
            strict: raise ``KeyError`` when keys are missing or unexpected (after loading nothing).

        Returns:
            :class:`OfficialLoadReport`.
        """
        source = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        report = OfficialLoadReport(unexpected_keys=sorted(k for k in state_dict if not k.startswith(prefix)))
        ours: dict[str, torch.Tensor] = {}
        used: set[str] = set()

        def take(name: str) -> torch.Tensor | None:
            if name in source:
                used.add(name)
                return source[name]
            return None

        def put(target: str, tensor: torch.Tensor | None, shape: tuple[int, ...]) -> None:
            if tensor is not None:
                ours[target] = tensor.reshape(shape)

        def conv_norm_act(official: str, target: str) -> None:
            w = take(f"{official}.conv.weight")
            put(f"{target}.weight", w, tuple(self.get_parameter(f"{target}.weight").shape))
            put(f"{target}.prelu", take(f"{official}.adn.A.weight"), (1,))

        conv_norm_act("stem", "stem")
        for s, stage in enumerate(self.stages):
            for level, block_name in (("l1", "block1"), ("l2", "block2")):
                block: DilatedDepthwiseBlock = getattr(stage, block_name)
                base, target = f"dmsf_{s + 1}.{level}", f"stages.{s}.{block_name}"
                self._map_block(block, base, target, take, ours)
            conv_norm_act(f"dmsf_{s + 1}.ds.conv_3x3", f"stages.{s}.down")
        for idx, target in ((0, "head.0"), (1, "head.1"), (3, "head.3")):
            for kind in ("weight", "bias"):
                put(
                    f"{target}.{kind}",
                    take(f"fc.{idx}.{kind}"),
                    tuple(self.get_parameter(f"{target}.{kind}").shape),
                )

        self._report_unused(source, used, prefix, report)
        report.unexpected_keys.sort()
        report.ignored_keys.sort()
        report.missing_keys = sorted(k for k, _ in self.named_parameters() if k not in ours)
        if strict and (report.missing_keys or report.unexpected_keys):
            raise KeyError(
                f"IntraClassEncoder.load_official_state_dict: missing keys {report.missing_keys}, "
                f"unexpected keys {report.unexpected_keys}"
            )
        with torch.no_grad():
            for name, tensor in ours.items():
                param = self.get_parameter(name)
                if tensor.numel() != param.numel():
                    raise ValueError(
                        f"IntraClassEncoder.load_official_state_dict: {name} needs {tuple(param.shape)}, "
                        f"got a tensor with {tensor.numel()} elements"
                    )
                param.copy_(tensor.reshape(param.shape))
        return report

    @staticmethod
    def _report_unused(
        source: dict[str, torch.Tensor], used: set[str], prefix: str, report: OfficialLoadReport
    ) -> None:
        """Add the published keys not mapped to ``report``: convolution biases (they cancel in the next
        normalisation) and the unused block ``prelu`` as ignored, anything else as unexpected."""
        for key in source:
            if key in used:
                continue
            if key.endswith(".conv.bias") or (
                key.startswith("dmsf_") and key.endswith(".prelu.weight") and key.count(".") == 3
            ):
                report.ignored_keys.append(prefix + key)
            else:
                report.unexpected_keys.append(prefix + key)

    @staticmethod
    def _map_block(block: DilatedDepthwiseBlock, base: str, target: str, take, ours: dict) -> None:
        """Stack the three published branch convolutions of one block into our (3, ...) parameters."""
        pieces: dict[str, list[torch.Tensor | None]] = {"dw_weight": [], "norm_weight": [], "norm_bias": []}
        slopes: list[torch.Tensor | None] = []
        for branch in _OFFICIAL_BRANCHES:
            pieces["dw_weight"].append(take(f"{base}.{branch}.conv.weight"))
            pieces["norm_weight"].append(take(f"{base}.{branch}.norm.weight"))
            pieces["norm_bias"].append(take(f"{base}.{branch}.norm.bias"))
            slopes.append(take(f"{base}.{branch}.prelu.weight"))
        for name, parts in pieces.items():
            if all(p is not None for p in parts):
                shape = getattr(block, name).shape[1:]
                ours[f"{target}.{name}"] = torch.stack([p.reshape(shape) for p in parts])
        w1, w2 = take(f"{base}.conv_1x1.conv.weight"), take(f"{base}.conv_1x1_2.conv.weight")
        if w1 is not None:
            ours[f"{target}.pw1_weight"] = w1.reshape(block.pw1_weight.shape)
        if w2 is not None:
            ours[f"{target}.pw2_weight"] = w2.reshape(block.pw2_weight.shape)
        slopes += [
            take(f"{base}.conv_1x1.adn.A.weight"),
            take(f"{base}.conv_1x1_2.adn.A.weight"),
            take(f"{base}.prelu2.weight"),
        ]
        if all(s is not None for s in slopes):
            ours[f"{target}.prelu"] = torch.cat([s.reshape(1) for s in slopes])
