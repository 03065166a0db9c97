"""Knowledge-driven medical VQA: a frozen knowledge space feeding prefix tokens to a causal language model.

Prefix tokens (:mod:`.vqa_prompt` lays out the prompt ``[bos?] <im_patch> x N_img <kg_token> x N_kg
<ic_token> " question" (" answer" eos)``, left-padded):

* image tokens (``N_img = (gh/2)(gw/2)``, 49 for ViT-B/16 at 224): the image tower's patch tokens ->
  :class:`PatchPoolingProjector`. ``patch_positional=True`` (default) runs the ViT with its positional
  embeddings; ``False`` reproduces the published path (no positional embeddings or CLS token).
* knowledge tokens (``N_kg = knowledge_tokens``): the knowledge space's text embedding of the question
  (``knowledge_input="question"``, published) or of the names of the knowledge-base concepts it mentions
  (``"entities"``, :class:`~bamco_fast.models.entity_input.EntityTexts`; the question when none) ->
  :class:`VectorProjector`.
* intra-class token: the image embedding retrieves the top-1 class of an :class:`IntraClassBank` by cosine
  with the class-name text embeddings; ``K`` of its training images, drawn seeded by the question id (one
  stack per class with ``sampling="class"``, whose frozen embedding is cached exactly), go through the
  frozen intra-class encoder -> :class:`VectorProjector`.

Each placeholder is found by its token id and its embedding replaced by the projected features
(``masked_scatter``); a disabled branch contributes no placeholder. The frozen features of a batch
(:mod:`.vqa_features`) can be precomputed once for a training set and passed as ``frozen=``. Loss: the
shifted cross-entropy over the answer tokens and their eos (mean over those tokens), with the LM head
applied only at those positions (:mod:`.answer_logits`; ``answer_only_logits=False`` computes every
position's logits, as the published code does). Generation: greedy, KV cache, left padding, from
``inputs_embeds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import vqa_io
from .answer_logits import (
    answer_hidden_states,
    answer_only_unsupported_reason,
    causal_lm_parts,
    linear_cross_entropy,
    upcast_logits,
)
from .lora import apply_lora
from .projectors import PatchPoolingProjector, VectorProjector
from .vqa_config import GeneratedAnswer, VQAModelConfig
from .vqa_features import FrozenFeatures, frozen_features
from .vqa_prompt import PLACEHOLDERS, encode_batch, prepare_tokenizer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .vqa_features import FrozenFeatureOptions

__all__ = ["FrozenFeatures", "GeneratedAnswer", "VQAModel", "VQAModelConfig", "build_vqa_model"]


_FULL_BY_CONFIG = "answer_only_logits=False"


class VQAModel(nn.Module):
    """Frozen knowledge space + trainable projectors + a causal LM (LoRA, whole, or frozen).

    Args:
        config: :class:`VQAModelConfig`.
        knowledge_space: a :class:`~bamco_fast.models.knowledge_space.KnowledgeSpace` (frozen here).
        llm: a Hugging Face causal LM (not yet wrapped with adapters).
        tokenizer: its tokenizer (special tokens added when missing, see the module docstring).
        intra_bank: the :class:`IntraClassBank` used for retrieval (required when the intra-class
            branch is on and no stacks are passed explicitly).
        entities: the :class:`~bamco_fast.models.entity_input.EntityTexts` of ``knowledge_input="entities"``
            (saved with the run); without it, callers pass ``knowledge_texts`` themselves.
    """

    IMAGE_TOKEN, KNOWLEDGE_TOKEN, INTRA_TOKEN = PLACEHOLDERS

    def __init__(
        self,
        config: VQAModelConfig,
        knowledge_space: nn.Module,
        llm: nn.Module,
        tokenizer,
        intra_bank=None,
        entities=None,
    ):
        super().__init__()
        if knowledge_space is None:
            raise ValueError("knowledge_space: a VQA model needs its knowledge space, got None")
        self.config = config
        self.tokenizer = tokenizer
        self.knowledge_space = knowledge_space
        knowledge_space.requires_grad_(False)
        knowledge_space.eval()
        prompt = prepare_tokenizer(tokenizer, llm)
        self.token_ids, self.bos_ids = prompt.token_ids, prompt.bos_ids
        self.hidden_size = int(llm.get_input_embeddings().embedding_dim)
        towers = knowledge_space.towers
        embed_dim = int(knowledge_space.config.embed_dim)
        hidden = self.hidden_size
        drop = config.projector_dropout
        self.image_projector = (
            PatchPoolingProjector(int(towers.patch_width), hidden, tuple(towers.patch_grid), pool=config.pool)
            if config.use_image
            else None
        )
        self.knowledge_projector = (
            VectorProjector(embed_dim, hidden, tokens=config.knowledge_tokens, dropout=drop)
            if config.use_knowledge
            else None
        )
        self.intra_projector = (
            VectorProjector(embed_dim, hidden, dropout=drop) if config.use_intra_class else None
        )
        self.llm = apply_lora(
            llm, config.lora, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout
        )
        #: Why the LM head runs on every position (``None``: only at the answer positions, see
        #: :mod:`.answer_logits`); set by ``config.answer_only_logits=False`` or an unsupported LM.
        self.full_logits_reason = (
            "answer_only_logits=False"
            if not config.answer_only_logits
            else answer_only_unsupported_reason(self.llm)
        )
        self.intra_bank = intra_bank
        self.entities = entities

    @property
    def intra_bank(self):
        """The :class:`IntraClassBank`; setting one embeds its class names and empties the class cache."""
        return self._intra_bank

    @intra_bank.setter
    def intra_bank(self, bank) -> None:
        self._intra_bank = bank
        self._intra_cache: dict[int, torch.Tensor] = {}
        if bank is not None:
            with torch.no_grad():
                bank.set_class_embeddings(self.knowledge_space.encode_text(list(bank.class_names)))

    # ------------------------------------------------------------------ tokens and prompts
    def _placeholder_counts(self) -> dict[str, int]:
        c = self.config
        counts = {}
        if c.use_image:
            counts[self.IMAGE_TOKEN] = self.image_projector.num_tokens
        if c.use_knowledge:
            counts[self.KNOWLEDGE_TOKEN] = c.knowledge_tokens
        if c.use_intra_class:
            counts[self.INTRA_TOKEN] = 1
        return counts

    def prefix_ids(self) -> list[int]:
        """Token ids before the question: optional bos, then the placeholders of the enabled branches."""
        ids = list(self.bos_ids)
        for name, count in self._placeholder_counts().items():
            ids += [self.token_ids[name]] * count
        return ids

    def encode_batch(self, questions: Sequence[str], answers: Sequence[str] | None = None) -> dict:
        """Left-padded ``input_ids``, ``attention_mask`` (and ``labels``): :func:`.vqa_prompt.encode_batch`."""
        return encode_batch(
            self.tokenizer, self.prefix_ids(), questions, answers, max_length=self.config.max_length
        )

    # ------------------------------------------------------------------ features
    @property
    def answer_only_logits(self) -> bool:
        """Whether the loss projects only the answer positions onto the vocabulary."""
        return self.full_logits_reason is None

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    def train(self, mode: bool = True):
        super().train(mode)
        self.knowledge_space.eval()
        return self

    def intra_embeddings(self, classes: torch.Tensor, keys: Sequence[str], k: int) -> torch.Tensor:
        """Frozen intra-class embeddings ``(B, D)`` of the stacks drawn for ``classes`` ``(B,)`` and ``keys``.

        With the bank's ``sampling="class"`` each class's embedding is computed once (each class alone, so
        independent of the batch) and cached: exact, since the encoder is frozen and in eval mode.
        """
        ks, bank = self.knowledge_space, self.intra_bank
        if bank.sampling == "class":
            for c in sorted(set(classes.tolist()) - set(self._intra_cache)):
                stack = bank.stacks([c], [""], k).to(self.device)
                self._intra_cache[c] = ks.encode_intra_class(stack)[0]
            return torch.stack([self._intra_cache[c] for c in classes.tolist()]).to(self.device)
        return ks.encode_intra_class(bank.stacks(classes, keys, k).to(self.device))

    def frozen_features(
        self, images: torch.Tensor | None, questions: Sequence[str], **options: Unpack[FrozenFeatureOptions]
    ) -> FrozenFeatures:
        """What the frozen parts compute for a batch (:func:`.vqa_features.frozen_features`)."""
        return frozen_features(self, images, questions, **options)

    def project(self, frozen: FrozenFeatures) -> dict[str, torch.Tensor]:
        """Projected prefix features per placeholder token name, ``(B, n, hidden)`` (with gradients)."""
        feats: dict[str, torch.Tensor] = {}
        if self.config.use_image:
            feats[self.IMAGE_TOKEN] = _project(self.image_projector, frozen.patches.to(self.device))
        if self.config.use_knowledge:
            feats[self.KNOWLEDGE_TOKEN] = _project(self.knowledge_projector, frozen.knowledge.to(self.device))
        if self.config.use_intra_class:
            feats[self.INTRA_TOKEN] = _project(self.intra_projector, frozen.intra.to(self.device))
        return feats

    def retrieved_names(self, frozen: FrozenFeatures) -> list[str | None]:
        """Class name retrieved for each question (``None`` without retrieval)."""
        names = self.intra_bank.class_names if self.intra_bank is not None else []
        return [names[i] if i >= 0 else None for i in frozen.classes.tolist()]

    def prefix_features(
        self, images: torch.Tensor | None, questions: Sequence[str], **options: Unpack[FrozenFeatureOptions]
    ) -> tuple[dict[str, torch.Tensor], list[str | None]]:
        """Projected prefix features (:meth:`project`) of a batch and the retrieved class names.

        Frozen parts (towers, text head, intra-class encoder, retrieval) run without gradients; the
        projectors keep theirs. Images ``(B, 3, S, S)`` are normalised floats as the towers expect. The
        keywords are those of :func:`.vqa_features.frozen_features`: ``qids`` (seeded intra-class draws),
        ``knowledge_texts``, ``intra_stacks`` ``(B, K, 3, h, w)`` (normalised float, replacing the bank's
        draw, e.g. augmented training stacks) and ``report_retrieval`` (default ``True``: retrieval runs
        even when the draw does not need it); an unknown keyword is a ``TypeError``.
        """
        frozen = self.frozen_features(images, questions, **options)
        return self.project(frozen), self.retrieved_names(frozen)

    def splice(self, input_ids: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token embeddings ``(B, L, H)`` with every placeholder replaced, found by its token id."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        for name, values in feats.items():
            where = input_ids == self.token_ids[name]
            counts = where.sum(dim=1)
            if not bool((counts == values.shape[1]).all()):
                raise ValueError(
                    f"prompt: expected {values.shape[1]} {name} tokens per row, found {counts.tolist()}"
                )
            embeds = embeds.masked_scatter(where.unsqueeze(-1), values.to(embeds.dtype))
        return embeds

    # ------------------------------------------------------------------ training and generation
    def forward(
        self,
        images: torch.Tensor | None,
        questions: Sequence[str],
        answers: Sequence[str],
        *,
        qids: Sequence[str] | None = None,
        knowledge_texts: Sequence[str] | None = None,
        intra_stacks: torch.Tensor | None = None,
        frozen: FrozenFeatures | None = None,
    ) -> dict:
        """Answer-only loss.

        ``frozen``: the batch's precomputed :class:`FrozenFeatures` (a training run's cache); the images,
        knowledge texts and stacks are then not needed.

        Returns ``loss`` (scalar: mean cross-entropy over the answer tokens and their eos) and
        ``answer_tokens`` (0-dim int64 tensor: how many tokens the loss covers).
        """
        batch = self.encode_batch(questions, answers)
        if frozen is None:
            frozen = self.frozen_features(
                images,
                questions,
                qids=qids,
                knowledge_texts=knowledge_texts,
                intra_stacks=intra_stacks,
                report_retrieval=False,
            )
        elif len(frozen) != len(questions):
            raise ValueError(f"frozen: expected features of {len(questions)} questions, got {len(frozen)}")
        if self.full_logits_reason not in (None, _FULL_BY_CONFIG):  # the LM transforms its logits itself
            loss, labels = self._llm_loss(frozen, batch)
        else:
            hidden, labels = self.hidden_states(frozen, batch)
            loss = self.answer_loss(hidden, labels)
        return {"loss": loss, "answer_tokens": (labels != -100).sum()}

    def _llm_loss(self, frozen: FrozenFeatures, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The language model's own ``labels=`` loss (logits at every position, its logit transforms applied)."""
        ids, mask, labels = (batch[k].to(self.device) for k in ("input_ids", "attention_mask", "labels"))
        out = self.llm(
            inputs_embeds=self.splice(ids, self.project(frozen)),
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            labels=labels,
            use_cache=False,
        )
        return out.loss, labels

    def hidden_states(self, frozen: FrozenFeatures, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The LLM backbone's final hidden states ``(B, L, H)`` for an encoded batch (:meth:`encode_batch`
        with answers) whose placeholders carry the projected ``frozen`` features, and its ``labels``."""
        ids, mask, labels = (batch[k].to(self.device) for k in ("input_ids", "attention_mask", "labels"))
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        backbone, _ = causal_lm_parts(self.llm)
        hidden = backbone(
            inputs_embeds=self.splice(ids, self.project(frozen)),
            attention_mask=mask,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state
        return hidden, labels

    def answer_loss(
        self, hidden: torch.Tensor, labels: torch.Tensor, *, answer_only: bool | None = None
    ) -> torch.Tensor:
        """Mean next-token cross-entropy over the labelled positions (``labels != -100``).

        With :attr:`answer_only_logits` (or ``answer_only=True``) the LM head runs at those positions only
        (:func:`~.answer_logits.linear_cross_entropy`); otherwise at every position, ``(B, L, V)`` logits
        upcast to float32 (float64 stays) as the language model's own ``labels=`` loss computes them.
        """
        _, head = causal_lm_parts(self.llm)
        if self.answer_only_logits if answer_only is None else answer_only:
            x, y = answer_hidden_states(hidden, labels)
            return linear_cross_entropy(x, head.weight, y, head.bias)
        logits = head(hidden)[:, :-1]
        return torch.nn.functional.cross_entropy(upcast_logits(logits).flatten(0, 1), labels[:, 1:].flatten())

    @torch.no_grad()
    def generate(
        self,
        images: torch.Tensor | None,
        questions: Sequence[str],
        *,
        max_new_tokens: int | None = None,
        **options: Unpack[FrozenFeatureOptions],
    ) -> list[GeneratedAnswer]:
        """Greedy answers for a batch (eval mode for the call; KV cache; left padding).

        ``max_new_tokens`` defaults to the config's; the other keywords (``qids``, ``knowledge_texts``,
        ``intra_stacks``, ``report_retrieval``) are those of :meth:`prefix_features`.
        """
        from transformers import GenerationConfig

        was_training = self.training
        self.eval()
        try:
            batch = self.encode_batch(questions)
            feats, retrieved = self.prefix_features(images, questions, **options)
            ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
            tok = self.tokenizer
            gen = GenerationConfig(
                max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                do_sample=False,
                num_beams=1,
                use_cache=True,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id,
            )
            out = self.llm.generate(
                inputs_embeds=self.splice(ids, feats), attention_mask=mask, generation_config=gen
            )
        finally:
            self.train(was_training)
        answers = []
        for row, entity in zip(out.tolist(), retrieved):
            if tok.eos_token_id in row:
                row = row[: row.index(tok.eos_token_id)]
            text = tok.decode(row, skip_special_tokens=True).strip()
            answers.append(GeneratedAnswer(text=text, tokens=tuple(row), retrieved_entity=entity))
        return answers

    # ------------------------------------------------------------------ trainable state
    def projector_state_dict(self) -> dict[str, torch.Tensor]:
        state = {}
        for name in ("image_projector", "knowledge_projector", "intra_projector"):
            module = getattr(self, name)
            if module is not None:
                state.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
        return state

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every parameter that trains (projectors, adapters or the whole LLM), detached, by name."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`trainable_state_dict`; names must match exactly."""
        own = dict(self.named_parameters())
        expected = {n for n, p in own.items() if p.requires_grad}
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"state: trainable names differ (missing {missing[:5]}, unexpected {extra[:5]})")
        with torch.no_grad():
            for name, value in state.items():
                if own[name].shape != value.shape:
                    raise ValueError(
                        f"state[{name!r}]: expected shape {tuple(own[name].shape)}, got {tuple(value.shape)}"
                    )
                own[name].copy_(value)

    # ------------------------------------------------------------------ folders
    def save_trainable(self, folder: Path | str, *, overwrite: bool = True) -> Path:
        """Write the projectors, the tokenizer, the adapters (or the whole LLM for ``lora="none"``) and a
        reference to the knowledge-space folder — never the frozen towers (layout: :mod:`.vqa_io`)."""
        return vqa_io.save_trainable(self, folder, overwrite=overwrite)

    def merge(self, folder: Path | str, *, overwrite: bool = True) -> Path:
        """Write a standalone folder whose ``llm/`` holds the LLM with its adapters merged (loadable alone by
        ``AutoModelForCausalLM``/``AutoTokenizer``); :meth:`load` reads it like any saved run."""
        return vqa_io.merge(self, folder, overwrite=overwrite)

    def load_trainable(self, folder: Path | str, *, llm_weights: bool = True) -> None:
        """Load what :meth:`save_trainable` wrote into this model (same branches and LLM hidden size)."""
        vqa_io.load_trainable(self, folder, llm_weights=llm_weights)

    @classmethod
    def load(cls, folder: Path | str, **kwargs) -> VQAModel:
        """Rebuild a saved run exactly; keyword arguments as :func:`bamco_fast.models.vqa_io.load_model`."""
        return vqa_io.load_model(cls, folder, **kwargs)


def _project(projector: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a projector on frozen features cast to the projector's dtype."""
    return projector(x.to(next(projector.parameters()).dtype))


def build_vqa_model(
    config: VQAModelConfig, knowledge_space: nn.Module, intra_bank=None, *, entities=None, device=None
) -> VQAModel:
    """Load ``config.llm`` and its tokenizer with the Auto classes and build a fresh :class:`VQAModel`.

    The LLM location is checked first (:func:`~bamco_fast.models.sources.check_causal_lm`): a folder of
    another kind of model, a tokenizer larger than the embedding, or an uncached hub name while offline is
    an error before any weight is read.
    """
    from .sources import check_causal_lm

    check_causal_lm(config.llm)
    llm = vqa_io.load_llm(config.llm, config.dtype)
    tokenizer = vqa_io.load_tokenizer(config.llm)
    model = VQAModel(config, knowledge_space, llm, tokenizer, intra_bank, entities)
    return model.to(device) if device is not None else model
