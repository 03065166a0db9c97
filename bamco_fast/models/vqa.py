"""Knowledge-driven medical VQA: a frozen knowledge space feeding prefix tokens to a causal language model.

Prompt (token ids, left-padded to the longest row of the batch)::

    [bos?] <im_patch> x N_img  <kg_token> x N_kg  <ic_token>  " question"  (" answer" </s>  while training)

* image tokens (``N_img = (gh/2)(gw/2)``, 49 for ViT-B/16 at 224): the image tower's patch tokens ->
  :class:`PatchPoolingProjector`. ``patch_positional=True`` (default) runs the ViT with its positional
  embeddings, the correct path; ``False`` reproduces the published path (patches without positional
  embeddings or CLS token), needed only to reuse the published projector weights.
* knowledge tokens (``N_kg = knowledge_tokens``, 1 by default): the knowledge space's text embedding of
  the question (``knowledge_input="question"``, published) or of the question's entity text
  (``knowledge_input="entities"``: the names of the knowledge-base concepts it mentions, joined by ", ",
  found by the model's :class:`~bamco_fast.models.entity_input.EntityTexts` or passed by the caller; an
  empty entity text falls back to the question) -> :class:`VectorProjector`.
* intra-class token: the knowledge space's image embedding retrieves the top-1 class of an
  :class:`IntraClassBank` by cosine with the class-name text embeddings; ``K`` of the class's images are
  drawn seeded by the question id, encoded by the frozen intra-class encoder -> :class:`VectorProjector`.
  With the bank's ``sampling="class"`` the draw does not depend on the question, and the frozen embedding
  of each class is computed once (each class alone, so independent of the batch) and cached, in
  training and evaluation alike: exact, since the encoder is frozen and always in eval mode. With
  ``sampling="question"`` (default) every question's stack is encoded; nothing is cached.

Each placeholder is found by its token id (never by its position) and its embedding replaced by the
projected features (``masked_scatter`` in row-major order). A disabled branch contributes no
placeholder. Loss: the language model's shifted cross-entropy over the answer tokens and the eos token
only (mean over those tokens in the batch). Generation: greedy, KV cache, left padding, from
``inputs_embeds``.

Special tokens: a tokenizer lacking ``<im_patch>``, ``<kg_token>``, ``<ic_token>`` gets them added as
special tokens, and the embedding matrices are resized with the new rows set to the mean of the old rows
(deterministic, so a base model prepared again at load time is identical; the rows never reach the
model as inputs since placeholders are overwritten). A tokenizer without a pad token uses eos as pad.
A saved run must hold a tokenizer with all three tokens (an error otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from . import vqa_io
from .lora import apply_lora
from .projectors import PatchPoolingProjector, VectorProjector
from .vqa_config import GeneratedAnswer, VQAModelConfig

__all__ = ["GeneratedAnswer", "VQAModel", "VQAModelConfig", "build_vqa_model", "entity_texts"]


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

    IMAGE_TOKEN = "<im_patch>"
    KNOWLEDGE_TOKEN = "<kg_token>"
    INTRA_TOKEN = "<ic_token>"

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
        self._prepare_tokenizer(llm)
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
    def _prepare_tokenizer(self, llm: nn.Module) -> None:
        tok = self.tokenizer
        names = (self.IMAGE_TOKEN, self.KNOWLEDGE_TOKEN, self.INTRA_TOKEN)
        missing = [n for n in names if n not in tok.get_vocab()]
        if missing:
            tok.add_tokens(missing, special_tokens=True)
        if tok.eos_token_id is None:
            raise ValueError("tokenizer: expected an eos token (answers end with it), found none")
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        self.token_ids = {n: int(tok.convert_tokens_to_ids(n)) for n in names}
        for name, index in self.token_ids.items():
            if tok.convert_ids_to_tokens(index) != name:
                raise ValueError(f"tokenizer: {name!r} is not a single token after adding it")
        rows = llm.get_input_embeddings().weight.shape[0]
        if len(tok) > rows:
            vqa_io.resize_with_mean_rows(llm, len(tok))
        probe = tok("a")["input_ids"]
        self.bos_ids = (
            [tok.bos_token_id] if tok.bos_token_id is not None and probe[:1] == [tok.bos_token_id] else []
        )

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
        """Tokenise prompts (and answers) into left-padded tensors.

        Returns ``input_ids``, ``attention_mask`` (B, L) int64 and, with answers, ``labels`` (B, L): -100
        everywhere except the answer tokens and the eos that follows them. A question longer than
        ``max_length`` allows is cut at its end (then the answer, keeping its eos).
        """
        if isinstance(questions, str):
            raise TypeError("questions: expected a list of strings, got a single string")
        for i, q in enumerate(questions):
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"questions[{i}]: expected a non-empty question, got {q!r}")
        if answers is not None and len(answers) != len(questions):
            raise ValueError(f"answers: expected {len(questions)} answers, got {len(answers)}")
        tok = self.tokenizer
        prefix = self.prefix_ids()
        budget = self.config.max_length - len(prefix)
        if budget < 2:
            raise ValueError(
                f"max_length: {self.config.max_length} leaves no room after the {len(prefix)} prefix tokens"
            )
        q_ids = tok([" " + q.strip() for q in questions], add_special_tokens=False)["input_ids"]
        a_ids = (
            tok([" " + str(a).strip() for a in answers], add_special_tokens=False)["input_ids"]
            if answers is not None
            else [[] for _ in questions]
        )
        rows, label_rows = [], []
        for q, a in zip(q_ids, a_ids):
            a = [*a, tok.eos_token_id] if answers is not None else []
            q = q[: max(1, budget - len(a))]
            a = a[: budget - len(q)]
            if answers is not None and a[-1] != tok.eos_token_id:
                a[-1] = tok.eos_token_id
            rows.append(prefix + q + a)
            label_rows.append([-100] * (len(prefix) + len(q)) + a)
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        out = {"input_ids": input_ids, "attention_mask": mask}
        if answers is not None:
            out["labels"] = torch.tensor(
                [[-100] * (width - len(r)) + r for r in label_rows], dtype=torch.long
            )
        return out

    # ------------------------------------------------------------------ features
    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    def train(self, mode: bool = True):
        super().train(mode)
        self.knowledge_space.eval()
        return self

    def _intra_embeddings(self, classes: torch.Tensor, keys: Sequence[str], k: int) -> torch.Tensor:
        ks, bank = self.knowledge_space, self.intra_bank
        if bank.sampling == "class":
            for c in sorted(set(classes.tolist()) - set(self._intra_cache)):
                stack = bank.stacks([c], [""], k).to(self.device)
                self._intra_cache[c] = ks.encode_intra_class(stack)[0]
            return torch.stack([self._intra_cache[c] for c in classes.tolist()]).to(self.device)
        return ks.encode_intra_class(bank.stacks(classes, keys, k).to(self.device))

    def prefix_features(
        self,
        images: torch.Tensor | None,
        questions: Sequence[str],
        *,
        qids: Sequence[str] | None = None,
        knowledge_texts: Sequence[str] | None = None,
        intra_stacks: torch.Tensor | None = None,
        report_retrieval: bool = True,
    ) -> tuple[dict[str, torch.Tensor], list[str | None]]:
        """Projected prefix features per placeholder token name, ``(B, n, hidden)``, and retrieved classes.

        Frozen parts (towers, text head, intra-class encoder, retrieval) run without gradients; the
        projectors keep theirs. Images ``(B, 3, S, S)`` are normalised floats as the towers expect.
        ``intra_stacks`` ``(B, K, 3, h, w)`` (normalised float) replace the bank's draw (e.g. augmented
        training stacks). Retrieval runs when the draw needs it or ``report_retrieval`` (for the
        retrieved class names; ``None`` entries without a bank).
        """
        c, ks, bank = self.config, self.knowledge_space, self.intra_bank
        batch = len(questions)
        feats: dict[str, torch.Tensor] = {}
        retrieved: list[str | None] = [None] * batch
        needs_image = c.use_image or (c.use_intra_class and intra_stacks is None)
        if needs_image or images is not None:
            if images is None or images.dim() != 4 or images.shape[0] != batch:
                got = None if images is None else tuple(images.shape)
                raise ValueError(f"images: expected a ({batch}, 3, S, S) float tensor, got {got}")
            images = images.to(ks.device, torch.float32)
        with torch.no_grad():
            patches = ks.patch_tokens(images, positional=c.patch_positional) if c.use_image else None
            text_emb = None
            if c.use_knowledge:
                texts = list(questions)
                if c.knowledge_input == "entities":
                    if knowledge_texts is None and self.entities is not None:
                        knowledge_texts = self.entities(texts)
                    if knowledge_texts is None or len(knowledge_texts) != batch:
                        got = None if knowledge_texts is None else f"{len(knowledge_texts)} texts"
                        raise ValueError(
                            f"knowledge_texts: knowledge_input='entities' needs one entity text per question "
                            f"({batch}), got {got}; pass knowledge_texts= or give the model an EntityTexts"
                        )
                    texts = [e if e and e.strip() else q for e, q in zip(knowledge_texts, texts)]
                text_emb = ks.encode_text(texts)
            intra_emb = None
            draw = c.use_intra_class and intra_stacks is None
            if bank is not None and images is not None and (draw or report_retrieval):
                classes = bank.retrieve(ks.encode_image(images))
                retrieved = [bank.class_names[i] for i in classes.tolist()]
            if c.use_intra_class:
                if intra_stacks is not None:
                    intra_emb = ks.encode_intra_class(intra_stacks.to(ks.device, torch.float32))
                elif bank is None:
                    raise ValueError(
                        "intra_bank: the intra-class branch needs a bank or explicit intra_stacks"
                    )
                else:
                    if bank.sampling == "class" and qids is None:
                        qids = [""] * batch  # the draw does not depend on the question
                    if qids is None or len(qids) != batch:
                        raise ValueError(
                            f"qids: expected {batch} question ids for seeded retrieval, got {qids!r}"
                        )
                    k = c.num_intra_images or int(ks.config.num_images)
                    intra_emb = self._intra_embeddings(classes, [str(q) for q in qids], k)
        if c.use_image:
            feats[self.IMAGE_TOKEN] = _project(self.image_projector, patches)
        if c.use_knowledge:
            feats[self.KNOWLEDGE_TOKEN] = _project(self.knowledge_projector, text_emb)
        if c.use_intra_class:
            feats[self.INTRA_TOKEN] = _project(self.intra_projector, intra_emb)
        return feats, retrieved

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
    ) -> dict:
        """Answer-only loss.

        Returns ``loss`` (scalar: mean cross-entropy over the answer tokens and their eos) and
        ``answer_tokens`` (0-dim int64 tensor: how many tokens the loss covers).
        """
        batch = self.encode_batch(questions, answers)
        feats, _ = self.prefix_features(
            images,
            questions,
            qids=qids,
            knowledge_texts=knowledge_texts,
            intra_stacks=intra_stacks,
            report_retrieval=False,
        )
        ids, mask, labels = (batch[k].to(self.device) for k in ("input_ids", "attention_mask", "labels"))
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.llm(
            inputs_embeds=self.splice(ids, feats),
            attention_mask=mask,
            position_ids=position_ids,
            labels=labels,
            use_cache=False,
        )
        return {"loss": out.loss, "answer_tokens": (labels != -100).sum()}

    @torch.no_grad()
    def generate(
        self,
        images: torch.Tensor | None,
        questions: Sequence[str],
        *,
        qids: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
        knowledge_texts: Sequence[str] | None = None,
        intra_stacks: torch.Tensor | None = None,
    ) -> list[GeneratedAnswer]:
        """Greedy answers for a batch (eval mode for the call; KV cache; left padding)."""
        from transformers import GenerationConfig

        was_training = self.training
        self.eval()
        try:
            batch = self.encode_batch(questions)
            feats, retrieved = self.prefix_features(
                images, questions, qids=qids, knowledge_texts=knowledge_texts, intra_stacks=intra_stacks
            )
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
    """Load ``config.llm`` and its tokenizer with the Auto classes and build a fresh :class:`VQAModel`."""
    llm = vqa_io.load_llm(config.llm, config.dtype)
    tokenizer = vqa_io.load_tokenizer(config.llm)
    model = VQAModel(config, knowledge_space, llm, tokenizer, intra_bank, entities)
    return model.to(device) if device is not None else model


def entity_texts(extractor, questions: Sequence[str]) -> list[str]:
    """Knowledge texts for ``knowledge_input="entities"``: the knowledge-base names of the concepts an
    extractor of :mod:`bamco_fast.knowledge.extract` finds in each question, in order of appearance,
    without repeats, joined by ``", "``; ``""`` where none is found (the model then embeds the question).
    """
    mentions = extractor.extract(list(questions))
    ids = {m.concept_id for row in mentions for m in row}
    names = {cid: c.name for cid, c in extractor.kb.concepts(ids).items()} if ids else {}
    out = []
    for row in mentions:
        seen: list[str] = []
        for m in sorted(row, key=lambda m: (m.start, m.end)):
            name = names.get(m.concept_id, m.text)
            if name not in seen:
                seen.append(name)
        out.append(", ".join(seen))
    return out
