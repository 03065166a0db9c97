"""The cases of ``test_bad_input.py`` and the small real world they run in.

A case names the module, its arguments (``{key}`` placeholders are paths of :class:`World`), a regular
expression the error line must match (placeholders are filled with the escaped paths) and the folders
whose files must not change. ``argparse=True`` marks a usage error argparse itself reports (its ``usage:``
block, then ``error:``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Case:
    name: str
    module: str
    argv: tuple[str, ...]
    expect: str
    guard: tuple[str, ...] = ()
    setup: tuple[Callable, ...] = ()
    argparse: bool = False
    needs: str = ""  # a path key of the world that may be empty (the case is skipped then, with the reason)


@dataclass
class World:
    root: Path
    paths: dict[str, str] = field(default_factory=dict)


TRAIN, PREDICT, EVAL, KG, DATA = (
    "bamco_fast.train",
    "bamco_fast.predict",
    "bamco_fast.evaluate",
    "bamco_fast.knowledge",
    "bamco_fast.data",
)
SERVE, RANDOM = "bamco_fast.serve", "bamco_fast.models.random_weights"
QUIET = ("--set", "loop.progress=false", "--set", "loop.tensorboard=false", "--set", "loop.plot=false")


def _pre(*args: str) -> tuple[str, ...]:
    return ("pretrain", *args)


def _vqa(*args: str) -> tuple[str, ...]:
    return ("vqa", *args)


def _new_pre(*sets: str, out: str = "{scratch}/p") -> tuple[str, ...]:
    return _pre("--out", out, *QUIET, *(a for s in sets for a in ("--set", s)))


def _new_vqa(*sets: str, out: str = "{scratch}/v") -> tuple[str, ...]:
    extra = (
        a
        for s in ("data.max_train=16", "data.max_validate=8", "data.max_evaluate=8", *sets)
        for a in ("--set", s)
    )
    return _vqa("--knowledge-space", "{pre}", "--out", out, *QUIET, *extra)


RUNS = ("{pre}", "{pre_stopped}", "{vqa}")

_PRETRAIN = [
    Case("pretrain-unknown-key", TRAIN, _new_pre("loop.epoch=1"), r"unknown config key 'loop\.epoch'"),
    Case(
        "pretrain-epochs-zero",
        TRAIN,
        _new_pre("loop.epochs=0"),
        r"'loop\.epochs': expected an integer >= 1, got 0",
    ),
    Case(
        "pretrain-lr-inf",
        TRAIN,
        _new_pre("optim.lr=inf"),
        r"'optim\.lr': expected a finite number, got 'inf'",
    ),
    Case(
        "pretrain-lr-text",
        TRAIN,
        _new_pre("optim.lr=fast"),
        r"'optim\.lr': expected a finite number, got 'fast'",
    ),
    Case(
        "pretrain-val-fraction",
        TRAIN,
        _new_pre("data.val_fraction=1.5"),
        r"'data\.val_fraction': expected a number in \[0, 1\)",
    ),
    Case(
        "pretrain-set-no-equals",
        TRAIN,
        _pre("--out", "{scratch}/p", "--set", "loop.epochs"),
        r"--set: expected KEY=VALUE",
    ),
    *(  # --config files that cannot be read as a mapping
        Case(f"pretrain-config-{name}", TRAIN, _pre("--config", path, "--out", "{scratch}/p"), expect)
        for name, path, expect in (
            ("missing", "{root}/none.yaml", r"--config: file not found"),
            ("not-utf8", "{bad_utf8}", r"--config .*bad\.yaml: expected UTF-8 text"),
            ("bad-yaml", "{bad_yaml}", r"--config .*broken\.yaml: malformed YAML"),
            ("a-list", "{list_json}", r"expected a mapping at the top level, got list"),
        )
    ),
    Case(
        "pretrain-unknown-preset",
        TRAIN,
        _pre("--preset", "imagenet", "--out", "{scratch}/p"),
        r"--preset: expected one of .*got 'imagenet'",
    ),
    Case(
        "pretrain-out-is-a-file",
        TRAIN,
        _new_pre(out="{a_file}"),
        r"--out: expected a run folder, got .*a_file\.txt'?, which is a file",
        ("{a_file}",),
    ),
    Case(
        "pretrain-out-inside-a-file",
        TRAIN,
        _new_pre(out="{a_file}/run"),
        r"--out: cannot create the run folder .*: .*a_file\.txt'? is a file",
        ("{a_file}",),
    ),
    Case(
        "pretrain-out-holds-a-run",
        TRAIN,
        _new_pre(out="{pre}"),
        r"--out: .* already holds a run \(checkpoints/\); continue it with --resume",
        RUNS,
    ),
    Case(
        "pretrain-resume-missing",
        TRAIN,
        _pre("--resume", "{root}/nowhere"),
        r"--resume: expected a pretrain run folder, got .*nowhere'?, a path that does not exist",
    ),
    Case(
        "pretrain-resume-no-config",
        TRAIN,
        _pre("--resume", "{empty_dir}"),
        r"--resume: .*empty holds no config\.json",
        ("{empty_dir}",),
    ),
    Case(
        "pretrain-resume-a-vqa-run",
        TRAIN,
        _pre("--resume", "{vqa}"),
        r"--resume: .* is not a pretrain run \(its config\.json is another stage's\)",
        RUNS,
    ),
    Case(
        "pretrain-resume-changes-lr",
        TRAIN,
        _pre("--resume", "{pre_stopped}", "--set", "optim.lr=0.5"),
        r"--set optim\.lr would change the run's numerics",
        RUNS,
    ),
    Case(
        "pretrain-resume-with-preset",
        TRAIN,
        _pre("--resume", "{pre_stopped}", "--preset", "demo"),
        r"--resume RUN uses RUN's saved configuration; --preset cannot change it",
        RUNS,
    ),
    Case(
        "pretrain-resume-with-config",
        TRAIN,
        _pre("--resume", "{pre_stopped}", "--config", "{list_json}"),
        r"--config cannot change it",
        RUNS,
    ),
    Case(
        "pretrain-resume-other-out",
        TRAIN,
        _pre("--resume", "{pre_stopped}", "--out", "{scratch}/x"),
        r"--resume RUN writes into RUN; --out .* names another folder",
        RUNS,
    ),
    Case(
        "pretrain-resume-and-eval",
        TRAIN,
        _pre("--resume", "{pre_stopped}", "--eval-only", "{pre}"),
        r"--resume and --eval-only: expected one of them, got both",
        RUNS,
    ),
    Case(
        "pretrain-resume-truncated-checkpoint",
        TRAIN,
        _pre("--resume", "{pre_truncated}"),
        r"checkpoint .*step_00000001\.pt is corrupt or not a torch checkpoint",
        ("{pre_truncated}",),
    ),
    Case(
        "pretrain-resume-readonly",
        TRAIN,
        _pre("--resume", "{pre_readonly}"),
        r"--resume: .*(metrics\.jsonl is read-only|cannot write into)",
        ("{pre_readonly}",),
        needs="pre_readonly",
    ),
    Case(
        "pretrain-eval-unfinished",
        TRAIN,
        _pre("--eval-only", "{pre_stopped}"),
        r"--eval-only: .* holds no knowledge_space/ folder: the run did not finish",
        RUNS,
    ),
    Case("pretrain-eval-a-vqa-run", TRAIN, _pre("--eval-only", "{vqa}"), r"is not a pretrain run", RUNS),
    Case(
        "pretrain-train-knowledge-missing",
        TRAIN,
        _new_pre("data.train_knowledge={root}/none.json"),
        r"data\.train_knowledge: expected an existing file or folder, got .*none\.json",
    ),
    Case(
        "pretrain-image-root-missing",
        TRAIN,
        _new_pre("data.image_root={root}/no_images"),
        r"data\.image_root: expected an existing file or folder",
    ),
    Case(
        "pretrain-tower-missing",
        TRAIN,
        _new_pre("tiny.enabled=false", "model.tower=local-dir:{root}/no_towers"),
        r"model\.tower: expected a local model folder or a hub name",
    ),
    Case(
        "pretrain-tower-offline",
        TRAIN,
        _new_pre("tiny.enabled=false", "model.tower=hf-hub:bamco-fast-tests/none"),
        r"model\.tower: 'bamco-fast-tests/none' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
    ),
    Case(
        "pretrain-missing-images-in-knowledge",
        TRAIN,
        _new_pre("data.train_knowledge={missing_images}"),
        r"names images that do not exist",
        ("{missing_images}",),
    ),
    Case(
        "pretrain-augment-and-cache",
        TRAIN,
        _new_pre("data.augment_reference=true"),
        r"data\.cache_image_features': expected false while data\.augment_reference is true",
    ),
]

_VQA = [
    Case(
        "vqa-unknown-key",
        TRAIN,
        _new_vqa("model.lora_rank=8"),
        r"unknown config key 'model\.lora_rank'",
        RUNS,
    ),
    Case(
        "vqa-lora-rank-zero",
        TRAIN,
        _new_vqa("model.lora_r=0"),
        r"config section 'model\.': lora_r: expected at least 1, got 0",
        RUNS,
    ),
    Case(
        "vqa-max-length",
        TRAIN,
        _new_vqa("model.max_length=4"),
        r"max_length: expected at least 8 tokens, got 4",
        RUNS,
    ),
    Case(
        "vqa-entities-without-knowledge",
        TRAIN,
        _new_vqa("model.knowledge_input=entities", "model.use_knowledge=false"),
        r"knowledge_input: expected 'question' when use_knowledge is false",
        RUNS,
    ),
    Case(
        "vqa-dropout",
        TRAIN,
        _new_vqa("model.projector_dropout=1.5"),
        r"projector_dropout: expected numbers in \[0, 1\)",
        RUNS,
    ),
    Case(
        "vqa-llm-missing",
        TRAIN,
        _new_vqa("model.llm={root}/no_llm"),
        r"model\.llm: expected a local model folder or a hub name like org/name, got .*no_llm",
        RUNS,
    ),
    Case(
        "vqa-llm-a-file",
        TRAIN,
        _new_vqa("model.llm={a_file}"),
        r"model\.llm: expected a model folder or a hub name, got .*a_file\.txt'?, which is a file",
        RUNS,
    ),
    Case(
        "vqa-llm-not-causal",
        TRAIN,
        _new_vqa("model.llm={bert}"),
        r"model\.llm: .*bert holds a BertModel, not a causal language model",
        (*RUNS, "{bert}"),
    ),
    Case(
        "vqa-llm-towers-folder",
        TRAIN,
        _new_vqa("model.llm={towers}"),
        r"model\.llm: expected a folder holding config\.json",
        RUNS,
    ),
    Case(
        "vqa-llm-tokenizer-too-big",
        TRAIN,
        _new_vqa("model.llm={llm_small_embedding}"),
        r"tokenizer of .* has [\d,]+ tokens but the model's embedding has [\d,]+ rows",
        RUNS,
    ),
    Case(
        "vqa-llm-offline",
        TRAIN,
        _new_vqa("model.llm=meta-llama/Llama-3.2-1B"),
        r"model\.llm: 'meta-llama/Llama-3\.2-1B' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
        RUNS,
    ),
    Case(
        "vqa-llm-short-name-offline",
        TRAIN,
        _new_vqa("model.llm=gpt2-xl"),
        r"'openai-community/gpt2-xl' is not in the local Hugging Face cache",
        RUNS,
    ),
    Case(
        "vqa-knowledge-space-missing",
        TRAIN,
        _vqa("--knowledge-space", "{root}/no_space", "--out", "{scratch}/v"),
        r"model\.knowledge_space: expected a pretraining run folder, got .*no_space.*which does not exist",
    ),
    Case(
        "vqa-knowledge-space-unfinished",
        TRAIN,
        _vqa("--knowledge-space", "{pre_stopped}", "--out", "{scratch}/v", *QUIET),
        r"knowledge space: no saved knowledge space found in",
        RUNS,
    ),
    Case(
        "vqa-knowledge-space-truncated",
        TRAIN,
        _vqa("--knowledge-space", "{pre_truncated_space}", "--out", "{scratch}/v", *QUIET),
        r"knowledge space: no saved knowledge space found in .*(safetensors|deserializ|header)",
        ("{pre_truncated_space}",),
    ),
    Case(
        "vqa-data-root-missing",
        TRAIN,
        _new_vqa("data.dataset=slake", "data.root={root}/no_slake"),
        r"data\.root: expected an existing folder, got .*no_slake",
        RUNS,
    ),
    Case(
        "vqa-unknown-dataset",
        TRAIN,
        _new_vqa("data.dataset=mimic"),
        r"'data\.dataset': expected one of \['demo', 'slake', 'vqa-rad', 'pathvqa'\], got 'mimic'",
        RUNS,
    ),
    Case(
        "vqa-negative-max-train",
        TRAIN,
        _new_vqa("data.max_train=-1"),
        r"'data\.max_train': expected an integer >= 0",
        RUNS,
    ),
    Case(
        "vqa-n-boot-huge",
        TRAIN,
        _new_vqa("eval.n_boot=100000000"),
        r"'eval\.n_boot': expected an integer in \[0, 100000\]",
        RUNS,
    ),
    Case(
        "vqa-closed-rule",
        TRAIN,
        _new_vqa("eval.closed_rule=substring"),
        r"'eval\.closed_rule': expected dataset or yesno",
        RUNS,
    ),
    Case(
        "vqa-out-is-a-file",
        TRAIN,
        _new_vqa(out="{a_file}"),
        r"--out: expected a run folder, got .*which is a file",
        (*RUNS, "{a_file}"),
    ),
    Case(
        "vqa-resume-a-pretraining-run",
        TRAIN,
        _vqa("--resume", "{pre}"),
        r"--resume: .* is not a vqa run",
        RUNS,
    ),
    Case(
        "vqa-resume-changes-lora",
        TRAIN,
        _vqa("--resume", "{vqa}", "--set", "model.lora_r=8"),
        r"--set model\.lora_r would change the run's numerics",
        RUNS,
    ),
    Case(
        "vqa-eval-unfinished",
        TRAIN,
        _vqa("--eval-only", "{vqa_unfinished}"),
        r"--eval-only: .* holds no trained model \(model/vqa\.json\)",
        ("{vqa_unfinished}",),
    ),
    Case(
        "vqa-empty-question",
        TRAIN,
        _new_vqa(
            "data.dataset=slake",
            "data.root={slake_empty_question}",
            "model.plain_towers=true",
            "model.towers=local-dir:{towers}",
        ),
        r"train\.json: entry 1: expected a non-empty question",
        ("{slake_empty_question}",),
    ),
    Case(
        "vqa-duplicate-qid",
        TRAIN,
        _new_vqa(
            "data.dataset=slake",
            "data.root={slake_duplicate_qid}",
            "model.plain_towers=true",
            "model.towers=local-dir:{towers}",
        ),
        r"validate\.json: entry 2: duplicate question id '77' \(first used by entry 0\)",
        ("{slake_duplicate_qid}",),
    ),
    Case(
        "vqa-leaking-splits",
        TRAIN,
        _new_vqa(
            "data.dataset=slake",
            "data.root={slake_leaking}",
            "model.plain_towers=true",
            "model.towers=local-dir:{towers}",
        ),
        r"question leakage between the splits of slake",
        ("{slake_leaking}",),
    ),
]

_PREDICT = [
    Case(
        "predict-run-missing",
        PREDICT,
        ("--run", "{root}/nowhere", "--image", "{image}", "--question", "q?"),
        r"--run: expected the folder of a VQA run, got .*nowhere, a path that does not exist",
    ),
    Case(
        "predict-run-a-file",
        PREDICT,
        ("--run", "{a_file}", "--image", "{image}", "--question", "q?"),
        r"--run: expected the folder of a VQA run, got .*a_file\.txt, a file",
        ("{a_file}",),
    ),
    Case(
        "predict-run-not-vqa",
        PREDICT,
        ("--run", "{pre}", "--image", "{image}", "--question", "q?"),
        r"--run .*: not a VQA run folder \(no run\.json",
        RUNS,
    ),
    Case(
        "predict-broken-vqa-json",
        PREDICT,
        ("--run", "{vqa_broken_json}", "--image", "{image}", "--question", "q?"),
        r"vqa\.json.*(malformed JSON|expected format)",
        ("{vqa_broken_json}",),
    ),
    Case(
        "predict-truncated-projectors",
        PREDICT,
        ("--run", "{vqa_truncated}", "--image", "{image}", "--question", "q?"),
        r"projectors\.safetensors",
        ("{vqa_truncated}",),
    ),
    Case(
        "predict-image-missing",
        PREDICT,
        ("--run", "{vqa}", "--image", "{root}/none.png", "--question", "q?"),
        r"--image: image file not found: .*none\.png",
        RUNS,
    ),
    Case(
        "predict-image-a-folder",
        PREDICT,
        ("--run", "{vqa}", "--image", "{empty_dir}", "--question", "q?"),
        r"--image: expected an image file, got a folder",
        RUNS,
    ),
    Case(
        "predict-image-not-an-image",
        PREDICT,
        ("--run", "{vqa}", "--image", "{a_file}", "--question", "q?"),
        r"cannot decode image .*a_file\.txt",
        (*RUNS, "{a_file}"),
    ),
    Case(
        "predict-empty-question",
        PREDICT,
        ("--run", "{vqa}", "--image", "{image}", "--question", "   "),
        r"--question: expected a non-empty question",
        RUNS,
    ),
    Case(
        "predict-batch-malformed",
        PREDICT,
        ("--run", "{vqa}", "--batch", "{bad_batch}"),
        r"bad_batch\.jsonl:2: malformed JSON line",
        (*RUNS, "{bad_batch}"),
    ),
    Case(
        "predict-batch-missing",
        PREDICT,
        ("--run", "{vqa}", "--batch", "{root}/none.jsonl"),
        r"--batch: expected a \.jsonl file or an image folder, got .*none\.jsonl \(not found\)",
        RUNS,
    ),
    Case(
        "predict-max-new-tokens-zero",
        PREDICT,
        ("--run", "{vqa}", "--image", "{image}", "--question", "q?", "--max-new-tokens", "0"),
        r"--max-new-tokens: expected an integer >= 1, got 0",
        RUNS,
    ),
    Case(
        "predict-batch-size-zero",
        PREDICT,
        ("--run", "{vqa}", "--image", "{image}", "--question", "q?", "--batch-size", "0"),
        r"--batch-size: expected an integer >= 1, got 0",
        RUNS,
    ),
    Case(
        "predict-out-a-folder",
        PREDICT,
        ("--run", "{vqa}", "--batch", "{good_batch}", "--out", "{empty_dir}"),
        r"--out must be a file path, got .*empty'?, which is a folder",
        RUNS,
    ),
    Case(
        "predict-image-and-batch",
        PREDICT,
        ("--run", "{vqa}", "--image", "{image}", "--question", "q?", "--batch", "{good_batch}"),
        r"use either --image/--question or --batch, not both",
        RUNS,
    ),
    Case(
        "predict-no-cuda",
        PREDICT,
        ("--run", "{vqa}", "--image", "{image}", "--question", "q?", "--device", "cuda"),
        r"--device: 'cuda' requested but CUDA is not available",
        RUNS,
    ),
    Case(
        "predict-no-run-flag",
        PREDICT,
        ("--image", "{image}"),
        r"the following arguments are required: --run",
        argparse=True,
    ),
]

_EVALUATE = [
    Case(
        "evaluate-predictions-missing",
        EVAL,
        ("score", "{root}/none.jsonl", "--closed-rule", "yesno"),
        r"predictions file not found",
    ),
    Case(
        "evaluate-out-a-folder",
        EVAL,
        ("score", "{predictions}", "--out", "{empty_dir}"),
        r"--out must be a file path, got .*which is a folder",
        ("{predictions}",),
    ),
    Case(
        "evaluate-out-read-only",
        EVAL,
        ("score", "{predictions}", "--out", "{readonly_file}"),
        r"--out: .*readonly\.json.* is read-only",
        ("{predictions}", "{readonly_file}"),
    ),
    Case(
        "evaluate-n-boot-huge",
        EVAL,
        ("score", "{predictions}", "--n-boot", "100000000"),
        r"--n-boot: expected an integer in \[0, 100000\], got 100000000",
        ("{predictions}",),
    ),
    Case(
        "evaluate-malformed-line",
        EVAL,
        ("score", "{bad_predictions}", "--closed-rule", "yesno"),
        r"bad_predictions\.jsonl:2: malformed JSON",
        ("{bad_predictions}",),
    ),
    Case("evaluate-table-missing-report", EVAL, ("table", "{root}/none.json"), r"report: file not found"),
    Case(
        "evaluate-baselines-bad-root",
        EVAL,
        ("baselines", "--dataset", "slake", "--root", "{root}/no_slake", "--split", "validate"),
        r"no_slake",
    ),
    Case("evaluate-report-missing-run", EVAL, ("report", "{root}/nowhere"), r"nowhere"),
    Case(
        "evaluate-no-command",
        EVAL,
        (),
        r"required: command|invalid choice|the following arguments are required",
        argparse=True,
    ),
]

_KNOWLEDGE = [
    Case(
        "knowledge-root-missing",
        KG,
        (
            "build",
            "--dataset",
            "slake",
            "--root",
            "{root}/no_slake",
            "--kb",
            "jsonl:{kb_jsonl}",
            "--out",
            "{scratch}/k.json",
        ),
        r"no_slake",
    ),
    Case(
        "knowledge-bad-kb-kind",
        KG,
        (
            "build",
            "--dataset",
            "slake",
            "--root",
            "{slake_empty_question}",
            "--kb",
            "wordnet:{root}",
            "--out",
            "{scratch}/k.json",
        ),
        r"--kb",
    ),
    Case(
        "knowledge-out-a-folder",
        KG,
        (
            "build",
            "--dataset",
            "slake",
            "--root",
            "{slake_leaking}",
            "--kb",
            "jsonl:{kb_jsonl}",
            "--out",
            "{empty_dir}",
        ),
        r"--out must be a file path, got .*which is a folder",
    ),
    Case("knowledge-stats-missing", KG, ("stats", "{root}/none.json"), r"none\.json"),
    Case("knowledge-no-command", KG, (), r"required", argparse=True),
]

_DATA = [
    Case(
        "data-same-split-twice",
        DATA,
        ("check-splits", "--dataset", "slake", "--root", "{slake_leaking}", "--splits", "train", "train"),
        r"--splits: expected distinct splits, got train more than once",
        ("{slake_leaking}",),
    ),
    Case(
        "data-root-missing",
        DATA,
        ("check-splits", "--dataset", "slake", "--root", "{root}/no_slake"),
        r"no_slake",
    ),
    Case(
        "data-bad-lang",
        DATA,
        ("check-splits", "--dataset", "vqa-rad", "--root", "{root}", "--lang", "xx"),
        r"--lang for vqa-rad must be one of",
    ),
    Case(
        "data-json-a-folder",
        DATA,
        (
            "check-splits",
            "--dataset",
            "slake",
            "--root",
            "{slake_leaking}",
            "--splits",
            "train",
            "--json",
            "{empty_dir}",
        ),
        r"--json must be a file path, got .*which is a folder",
        ("{slake_leaking}",),
    ),
    Case(
        "data-empty-question",
        DATA,
        ("check-splits", "--dataset", "slake", "--root", "{slake_empty_question}", "--splits", "train"),
        r"entry 1: expected a non-empty question",
        ("{slake_empty_question}",),
    ),
]

_SERVE = [
    Case("serve-run-missing", SERVE, ("--run", "{root}/nowhere"), r"--run"),
    Case("serve-bad-port", SERVE, ("--run", "{vqa}", "--port", "0"), r"--port", RUNS),
    Case("serve-port-too-big", SERVE, ("--run", "{vqa}", "--port", "99999"), r"--port", RUNS),
]

_RANDOM = [
    Case("random-weights-unknown-name", RANDOM, ("llama-4", "--out", "{scratch}/r"), r"NAME|name"),
    Case(
        "random-weights-out-a-file",
        RANDOM,
        ("gpt2-xl", "--width", "tiny", "--out", "{a_file}"),
        r"--out: expected a new or empty folder; got .*an existing file",
        ("{a_file}",),
    ),
    Case(
        "random-weights-bad-dtype", RANDOM, ("gpt2-xl", "--dtype", "float8", "--out", "{scratch}/r"), r"dtype"
    ),
]

CASES: list[Case] = [*_PRETRAIN, *_VQA, *_PREDICT, *_EVALUATE, *_KNOWLEDGE, *_DATA, *_SERVE, *_RANDOM]


# ------------------------------------------------------------------------------------------------ world
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _slake_copies(root: Path) -> dict[str, str]:
    from vqa_helpers import slake_item, write_slake_copy

    def items(prefix: int) -> list[dict]:
        return [
            slake_item(prefix + i, f"xmlab{i % 4}/source.jpg", f"what organ is shown {i}?", "liver")
            for i in range(12)
        ]

    train, val = items(0), items(100)
    empty = [dict(item) for item in train]
    empty[1]["question"] = "  "
    duplicate = [dict(item) for item in val]
    duplicate[0]["qid"] = duplicate[2]["qid"] = 77
    leaking = [*val[:6], train[0]]
    return {
        "slake_empty_question": str(
            write_slake_copy(root / "slake_empty", {"train": empty, "validate": val})
        ),
        "slake_duplicate_qid": str(
            write_slake_copy(root / "slake_dup", {"train": train, "validate": duplicate})
        ),
        "slake_leaking": str(write_slake_copy(root / "slake_leak", {"train": train, "validate": leaking})),
    }


def _runs(root: Path) -> dict[str, str]:
    """A finished and a stopped tiny pretraining run, and a finished tiny VQA run on it."""
    from bamco_fast.train.cli import main

    quiet = ["--set", "loop.progress=false", "--set", "loop.tensorboard=false", "--set", "loop.plot=false"]
    short = ["--set", "loop.max_steps=2", "--set", "loop.batch_size=8", *quiet]
    assert main(["pretrain", "--out", str(root / "pretrain"), *short]) == 0
    assert main(["pretrain", "--out", str(root / "pre_stopped"), *short, "--set", "loop.stop_at_step=1"]) == 0
    vqa = ["--knowledge-space", str(root / "pretrain"), "--out", str(root / "vqa"), *quiet]
    vqa += ["--set", "data.max_train=32", "--set", "data.max_validate=16", "--set", "data.max_evaluate=8"]
    assert main(["vqa", *vqa]) == 0
    return {"pre": str(root / "pretrain"), "pre_stopped": str(root / "pre_stopped"), "vqa": str(root / "vqa")}


def _broken_copies(root: Path, p: dict[str, str]) -> dict[str, str]:
    out = {}
    stopped = _copy(Path(p["pre_stopped"]), root / "pre_truncated")
    _truncate(stopped / "checkpoints" / "step_00000001.pt")
    out["pre_truncated"] = str(stopped)
    space = _copy(Path(p["pre"]), root / "pre_truncated_space")
    _truncate(next((space / "knowledge_space").glob("*.safetensors")))
    out["pre_truncated_space"] = str(space)
    broken = _copy(Path(p["vqa"]), root / "vqa_broken_json")
    (broken / "model" / "vqa.json").write_text("{not json")
    out["vqa_broken_json"] = str(broken)
    truncated = _copy(Path(p["vqa"]), root / "vqa_truncated")
    _truncate(truncated / "model" / "projectors.safetensors")
    out["vqa_truncated"] = str(truncated)
    unfinished = _copy(Path(p["vqa"]), root / "vqa_unfinished")
    shutil.rmtree(unfinished / "model")
    out["vqa_unfinished"] = str(unfinished)
    return out


def _readonly_copy(root: Path, run: Path) -> str:
    """A copy of ``run`` on a read-only tmpfs (permissions do not stop root); skipped where mounting fails."""
    import subprocess

    target = root / "pre_readonly"
    target.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(target)], capture_output=True
    )
    if mounted.returncode != 0:
        return ""
    shutil.copytree(run, target, dirs_exist_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
    return str(target)


def _files(root: Path) -> dict[str, str]:
    (root / "scratch").mkdir()
    (root / "empty").mkdir()
    (root / "a_file.txt").write_text("not an image, not a folder\n")
    (root / "bad.yaml").write_bytes(b"loop:\n  epochs: \xff\xfe\n")
    (root / "broken.yaml").write_text("loop: [1, 2\n")
    (root / "list.json").write_text("[1, 2]\n")
    (root / "bad_predictions.jsonl").write_text(
        '{"qid": "1", "prediction": "yes", "answer": "yes", "answer_type": "CLOSED"}\n{not json\n'
    )
    (root / "readonly.json").write_text("{}\n")
    (root / "readonly.json").chmod(0o444)
    kb = {
        "id": "C1",
        "name": "liver",
        "definition": "an organ",
        "relations": [{"relation": "part of", "tail": "abdomen"}],
    }
    (root / "kb.jsonl").write_text(json.dumps(kb) + "\n")
    return {
        "scratch": str(root / "scratch"),
        "empty_dir": str(root / "empty"),
        "a_file": str(root / "a_file.txt"),
        "bad_utf8": str(root / "bad.yaml"),
        "bad_yaml": str(root / "broken.yaml"),
        "list_json": str(root / "list.json"),
        "bad_predictions": str(root / "bad_predictions.jsonl"),
        "readonly_file": str(root / "readonly.json"),
        "kb_jsonl": str(root / "kb.jsonl"),
    }


def _models(root: Path, towers: Path, llm: Path) -> dict[str, str]:
    from transformers import BertConfig, BertModel

    config = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(root / "bert")
    small = _copy(llm, root / "llm_small_embedding")
    data = json.loads((small / "config.json").read_text())
    data["vocab_size"] -= 9
    (small / "config.json").write_text(json.dumps(data))
    return {"bert": str(root / "bert"), "towers": str(towers), "llm_small_embedding": str(small)}


def build_world(root: Path) -> World:
    """Everything the cases name (see the module docstring); about 30 s on one thread."""
    from bamco_fast.demo_data import demo_paths

    world = World(root)
    p = world.paths
    p["root"] = str(root)
    p.update(_files(root))
    p.update(_runs(root))
    p.update(_broken_copies(root, p))
    p.update(_slake_copies(root))
    p.update(_models(root, Path(p["pre"]) / "towers", Path(p["vqa"]) / "tiny_llm"))
    p["pre_readonly"] = _readonly_copy(root, Path(p["pre_stopped"]))
    p["image"] = str(sorted(demo_paths().images.iterdir())[0])
    records = json.loads(demo_paths().knowledge["train"].read_text())[:7]
    missing = root / "missing_images.json"
    missing.write_text(json.dumps([{**r, "image": f"missing_{i}.jpg"} for i, r in enumerate(records)]))
    p["missing_images"] = str(missing)
    bad = root / "bad_batch.jsonl"
    bad.write_text(json.dumps({"image": p["image"], "question": "q?", "qid": "1"}) + "\n{not json\n")
    p["bad_batch"] = str(bad)
    good = root / "good_batch.jsonl"
    good.write_text(json.dumps({"image": p["image"], "question": "is this a ct?", "qid": "g1"}) + "\n")
    p["good_batch"] = str(good)
    predictions = root / "predictions.jsonl"
    predictions.write_text(
        json.dumps({"qid": "1", "prediction": "yes", "answer": "yes", "answer_type": "CLOSED"}) + "\n"
    )
    p["predictions"] = str(predictions)
    return world
