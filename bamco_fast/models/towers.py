"""The frozen image and text towers of a knowledge space, loaded through open_clip.

BaMCo builds on BiomedCLIP: a timm ViT-B/16 image tower (CLS pooling, Linear 768 -> 512) and a
PubMedBERT text tower (CLS of the last hidden state, MLP 768 -> 640 -> 512), context length 256.
:func:`load_towers` accepts any open_clip ``hf-hub:ORG/NAME`` or ``local-dir:PATH`` name; tests and demos
use the tiny towers of :func:`bamco_fast.models.tiny.build_tiny_towers`, loaded through the same path.

open_clip, timm and transformers are imported inside functions only, so ``import bamco_fast`` stays light.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..tensor_checks import require_float_tensor

BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_SCHEMES = ("hf-hub:", "local-dir:")
_CONFIG_NAME = "open_clip_config.json"


def check_tower_name(name: object) -> str:
    """Return ``name`` if it is an open_clip ``hf-hub:ORG/NAME`` or ``local-dir:PATH`` name, else raise."""
    if not isinstance(name, str) or not name.startswith(_SCHEMES) or name.split(":", 1)[1].strip() == "":
        raise ValueError(
            f"tower name must be 'hf-hub:ORG/NAME' or 'local-dir:PATH' (e.g. {BIOMEDCLIP!r}), got {name!r}"
        )
    return name


def read_tower_config(name: str) -> dict[str, Any]:
    """The ``open_clip_config.json`` content of a tower name (hub configs come from the local hub cache
    when ``HF_HUB_OFFLINE=1``)."""
    check_tower_name(name)
    scheme, ident = name.split(":", 1)
    if scheme == "local-dir":
        path = Path(ident) / _CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"tower {name!r}: no {_CONFIG_NAME} in {str(Path(ident))!r} (expected an open_clip hub-layout "
                "folder, e.g. one written by bamco_fast.models.tiny.build_tiny_towers)"
            )
    else:
        from open_clip.pretrained import download_pretrained_from_hf

        from .sources import locate

        locate(ident, key=f"tower {name!r}", marker=_CONFIG_NAME)  # at once when uncached and offline
        try:
            path = Path(download_pretrained_from_hf(ident, filename=_CONFIG_NAME))
        except Exception as exc:  # offline without a cached copy, unknown repository, no network
            raise ValueError(
                f"tower {name!r}: cannot get its {_CONFIG_NAME} from the Hugging Face hub or its local cache "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Download it once with "
                "network access, or use a 'local-dir:' folder (e.g. from bamco_fast.models.tiny.build_tiny_towers)"
            ) from exc
    with path.open(encoding="utf-8") as handle:
        config = json.load(handle)
    if "model_cfg" not in config:
        raise ValueError(f"tower {name!r}: {path} has no 'model_cfg' entry")
    return config


def _local_text_cfg(folder: Path, text_cfg: dict[str, Any]) -> dict[str, Any] | None:
    """Point ``hf_model_name`` at the text config inside ``folder`` when the recorded path is gone.

    open_clip resolves ``hf_model_name`` with ``AutoConfig.from_pretrained`` (a path is taken relative to
    the working directory), so a folder that was moved or copied would otherwise fail to load.
    """
    hf_name = text_cfg.get("hf_model_name")
    if not hf_name:
        return None
    local = folder / Path(hf_name).name
    if Path(hf_name).is_dir() and Path(hf_name).is_absolute():
        return None
    if (local / "config.json").is_file():
        return dict(text_cfg, hf_model_name=str(local.absolute()), hf_model_pretrained=False)
    return None


class Towers(nn.Module):
    """The open_clip image and text towers of a knowledge space (BiomedCLIP by default).

    Attributes:
        name: the open_clip name it was loaded from.
        clip: the open_clip model (``visual`` and ``text`` towers).
        model_config: the ``model_cfg`` of its ``open_clip_config.json``.
        image_size: side S of the square input images (224 for BiomedCLIP).
        image_mean, image_std: per-channel normalisation of [0, 1] pixels.
        context_length: token sequence length L (256 for BiomedCLIP).
        embed_dim: width of :meth:`encode_image` / :meth:`encode_text` outputs (512).
        patch_width: width of :meth:`patch_tokens` rows (768 for ViT-B).
        patch_grid: (gh, gw) patch grid ((14, 14) for ViT-B/16 at 224).
        pad_token_id: padding id of a Hugging Face text tower that masks its padding (else None).
    """

    def __init__(self, name: str, clip: nn.Module, tokenizer: Any, model_config: dict[str, Any]):
        super().__init__()
        self.name = name
        self.clip = clip
        self.tokenizer = tokenizer
        self.model_config = model_config
        pp = getattr(clip.visual, "preprocess_cfg", {}) or {}
        size = getattr(clip.visual, "image_size", pp.get("size", 224))
        size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        if size[0] != size[1]:
            raise ValueError(f"tower {name!r}: only square images are supported, got image size {size}")
        self.image_size = int(size[0])
        self.image_mean = tuple(float(v) for v in pp.get("mean", OPENAI_MEAN))
        self.image_std = tuple(float(v) for v in pp.get("std", OPENAI_STD))
        self.context_length = int(
            getattr(tokenizer, "context_length", 0) or model_config["text_cfg"].get("context_length", 77)
        )
        self.embed_dim = int(model_config["embed_dim"])
        # A Hugging Face text tower masks its padding (open_clip builds the mask from this id), so columns
        # holding only padding can be cut without changing its output; None where that is not known.
        pad = getattr(getattr(getattr(clip, "text", None), "config", None), "pad_token_id", None)
        self.pad_token_id: int | None = None if pad is None else int(pad)
        trunk = getattr(clip.visual, "trunk", None)
        if trunk is not None and hasattr(trunk, "patch_embed") and hasattr(trunk, "blocks"):
            patch = trunk.patch_embed.patch_size
            patch = tuple(patch) if isinstance(patch, (tuple, list)) else (patch, patch)
            self.patch_width = int(trunk.embed_dim)
            self.patch_grid = (self.image_size // int(patch[0]), self.image_size // int(patch[1]))
        else:
            self.patch_width = 0
            self.patch_grid = (0, 0)

    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    def save(self, folder: Path, *, overwrite: bool = False) -> Path:
        """Write these towers as a self-contained open_clip hub-layout folder, loadable offline with
        ``load_towers(f"local-dir:{folder}")`` (weights, tokenizer, config, and the text model's config).

        Returns the folder. The folder appears complete or not at all.
        """
        from ._folders import staged_folder

        folder = Path(folder).absolute()
        with staged_folder(folder, overwrite=overwrite, what="Towers.save") as staging:
            write_hub_folder(staging, folder, self.clip, self.tokenizer, self.model_config)
        return folder

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids of ``texts``: (N, context_length) int64 on the towers' device, padded/truncated."""
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(
                f"Towers.tokenize: texts must be a sequence of strings (wrap one string in a list), "
                f"got {type(texts).__name__}"
            )
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(
                f"Towers.tokenize: texts must all be str, got {type(texts[bad[0]]).__name__} at index {bad[0]}"
            )
        if len(texts) == 0:
            return torch.zeros(0, self.context_length, dtype=torch.long, device=self.device)
        return self.tokenizer(list(texts)).to(device=self.device, dtype=torch.long)

    def check_images(self, images: torch.Tensor, where: str) -> None:
        """Raise a clear error unless ``images`` is a float (B, 3, S, S) tensor with S = image_size."""
        expected = f"(B, 3, {self.image_size}, {self.image_size})"
        require_float_tensor(images, f"{where}: images", f" {expected} normalised with image_mean/std")
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(f"{where}: images must have shape {expected}, got {tuple(images.shape)}")

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised float -> (B, embed_dim) image features, NOT L2-normalised."""
        self.check_images(images, "Towers.encode_image")
        return self.clip.encode_image(images, normalize=False)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L) int64 token ids -> (N, embed_dim) text features, NOT L2-normalised."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"Towers.encode_text: tokens must be a (N, L) integer tensor, got {shape}")
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise TypeError(f"Towers.encode_text: tokens must be an integer tensor, got dtype {tokens.dtype}")
        return self.clip.encode_text(tokens.long(), normalize=False)

    def patch_tokens(self, images: torch.Tensor, positional: bool = True) -> torch.Tensor:
        """Patch tokens of the ViT image tower: (B, 3, S, S) -> (B, gh * gw, patch_width).

        ``positional=True``: the standard timm forward (patch embedding + positional embedding + CLS, all
        blocks, final LayerNorm) with the prefix (CLS) tokens dropped. ``positional=False``: the published
        BaMCo VQA path, which runs patch embedding -> blocks -> final LayerNorm as a plain sequence, i.e.
        without positional embeddings and without a CLS token (needed to match weights trained that way).
        """
        self.check_images(images, "Towers.patch_tokens")
        trunk = getattr(self.clip.visual, "trunk", None)
        if self.patch_width == 0 or trunk is None:
            raise NotImplementedError(
                f"Towers.patch_tokens: tower {self.name!r} has no timm ViT trunk "
                f"({type(self.clip.visual).__name__}); patch tokens need a timm VisionTransformer"
            )
        if positional:
            x = trunk.forward_features(images)
            return x[:, int(getattr(trunk, "num_prefix_tokens", 1)) :]
        x = trunk.patch_embed(images)
        if x.dim() == 4:  # dynamic-size ViTs keep the (B, gh, gw, C) grid
            x = x.flatten(1, 2)
        x = trunk.norm_pre(trunk.patch_drop(trunk.pos_drop(x)))
        return trunk.norm(trunk.blocks(x))


def write_hub_folder(
    staging: Path, final: Path, clip: nn.Module, tokenizer: Any, model_config: dict[str, Any]
) -> None:
    """Fill ``staging`` (to be renamed to ``final``) with open_clip's hub layout for ``clip``.

    Uses open_clip's own writer (``open_clip_config.json``, ``open_clip_model.safetensors``, tokenizer
    files). A Hugging Face text tower's config is saved in a sub-folder and ``hf_model_name`` points at
    it (absolute path under ``final``), so the folder loads without any hub access.
    """
    from open_clip.push_to_hf_hub import save_for_hf

    model_config = json.loads(json.dumps(model_config))
    text_cfg = model_config.get("text_cfg", {})
    text = getattr(clip, "text", None)
    if text_cfg.get("hf_model_name") and hasattr(text, "config"):
        sub = Path(text_cfg["hf_model_name"]).name or "text_config"
        text.config.save_pretrained(str(staging / sub))
        text_cfg["hf_model_name"] = str(Path(final).absolute() / sub)
        text_cfg.pop("hf_model_pretrained", None)
    save_for_hf(clip, tokenizer, model_config, str(staging), safe_serialization=True)


def load_towers(name: str, *, device: torch.device | str | None = None) -> Towers:
    """Load the open_clip towers ``name`` (``"hf-hub:ORG/NAME"`` or ``"local-dir:PATH"``) with their weights.

    Offline, ``hf-hub:`` names resolve from the local Hugging Face cache. A ``local-dir:`` folder may be
    moved: its text-tower config is looked up inside the folder when the recorded path no longer exists.
    The towers come back in eval mode (no dropout), as loaded weights are used for inference; call
    ``.train()`` to fine-tune them.

    Raises:
        ValueError: ``name`` is not an ``hf-hub:``/``local-dir:`` name, or its config is unusable.
        FileNotFoundError: a ``local-dir:`` folder without ``open_clip_config.json``.
    """
    check_tower_name(name)
    config = read_tower_config(name)
    model_cfg = config["model_cfg"]
    if "text_cfg" not in model_cfg or "vision_cfg" not in model_cfg or "embed_dim" not in model_cfg:
        raise ValueError(f"tower {name!r}: model_cfg needs embed_dim, vision_cfg and text_cfg")
    import open_clip

    overrides: dict[str, Any] = {}
    if name.startswith("local-dir:"):
        text_cfg = _local_text_cfg(Path(name.split(":", 1)[1]), model_cfg["text_cfg"])
        if text_cfg is not None:
            overrides["text_cfg"] = text_cfg
            model_cfg = dict(
                model_cfg, text_cfg=dict(model_cfg["text_cfg"], hf_model_name=text_cfg["hf_model_name"])
            )
    clip = open_clip.create_model_from_pretrained(
        name, device=device or "cpu", return_transform=False, **overrides
    )
    tokenizer = open_clip.get_tokenizer(name)
    return Towers(name, clip, tokenizer, model_cfg).eval()
