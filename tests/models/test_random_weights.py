"""Random-weight folders of the paper's models: published shapes, tokenizer conventions, loading, the CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from bamco_fast.models.random_biomedclip import biomedclip_configs
from bamco_fast.models.random_llms import PUBLISHED_CONFIGS, TINY_SIZES, llm_config
from bamco_fast.models.random_tokenizers import FILLER_PREFIX, gpt2_tokenizer, llama3_tokenizer
from bamco_fast.models.random_weights import build_random_weights, folder_parameter_count, main
from bamco_fast.models.tokenizer_texts import detect_dataset, read_texts

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "data"))  # helpers_data: finds ../shared/data or skips


# The published architectures, read through transformers' common config attributes. Sources (Hugging Face
# hub repository, file): meta-llama/Llama-3.2-1B config.json, meta-llama/Llama-3.2-3B config.json,
# openai-community/gpt2-xl config.json.
class Architecture(NamedTuple):
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int
    max_position_embeddings: int
    bos_token_id: int
    eos_token_id: int


PUBLISHED = {
    "llama-3.2-1b": Architecture(2048, 16, 32, 128256, 131072, 128000, 128001),
    "llama-3.2-3b": Architecture(3072, 28, 24, 128256, 131072, 128000, 128001),
    "gpt2-xl": Architecture(1600, 48, 25, 50257, 1024, 50256, 50256),
}
# Parameter counts in millions, computed from the published shapes.
PARAMETERS_M = {"llama-3.2-1b": 1235.8, "llama-3.2-3b": 3212.7, "gpt2-xl": 1557.6}
# Llama 3.2's special tokens fill ids 128000..128255 (meta-llama/Llama-3.2-1B tokenizer files, as written by
# transformers' convert_llama_weights_to_hf.py, DEFAULT_LLAMA_SPECIAL_TOKENS["3.2"]): the named ones below,
# and <|reserved_special_token_N|> at every other id, N counting from 0 upwards.
LLAMA_NAMED_SPECIALS = {
    128000: "<|begin_of_text|>",
    128001: "<|end_of_text|>",
    128004: "<|finetune_right_pad_id|>",
    128006: "<|start_header_id|>",
    128007: "<|end_header_id|>",
    128008: "<|eom_id|>",
    128009: "<|eot_id|>",
    128010: "<|python_tag|>",
}


def _llama_specials() -> list[str]:
    """The tokens at ids 128000..128255, in id order."""
    reserved = (f"<|reserved_special_token_{n}|>" for n in range(256 - len(LLAMA_NAMED_SPECIALS)))
    return [LLAMA_NAMED_SPECIALS.get(i) or next(reserved) for i in range(128000, 128256)]


TEXTS = (
    "Is the liver enlarged?",
    "yes",
    "What organ is abnormal in this image?",
    "the left kidney",
    "Where is the lesion located?",
    "right upper lobe of the lung",
    "How many lesions are there in the brain?",
    "2",
    "Is there pneumothorax?",
    "no",
)
ROUND_TRIP = (
    "Is the liver enlarged?",
    "A 3.5 cm mass in the right upper lobe, isn't it?",
    "  two spaces, a tab\tand\na newline",
    "Größe 42 µm — 肝脏病变?",
)
LLMS = tuple(PARAMETERS_M)


def _published_view(written: dict, name: str) -> dict:
    """The fields of a written config.json that the published file has (:data:`PUBLISHED_CONFIGS`), with
    transformers 5's ``rope_parameters`` split back into ``rope_scaling`` and ``rope_theta``."""
    view = dict(written)
    if "rope_parameters" in view:
        rope = dict(view.pop("rope_parameters"))
        view["rope_theta"] = rope.pop("rope_theta")
        view["rope_scaling"] = rope
    return {field: view.get(field, "<missing>") for field in PUBLISHED_CONFIGS[name]}


# ---------------------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("name", LLMS)
def test_full_size_parameter_count_matches_published(name):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(llm_config(name))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / 1e6 - PARAMETERS_M[name]) < 0.1, count
    embedding = model.get_input_embeddings().weight
    assert embedding.shape[0] == PUBLISHED[name].vocab_size
    assert model.get_output_embeddings().weight is embedding  # tied


def test_biomedclip_parameter_count_on_meta(tmp_path):
    """The full-size towers built on the meta device (no memory): BiomedCLIP's ~196 M."""
    import open_clip

    bert, vision_cfg = biomedclip_configs("full")
    bert.save_pretrained(tmp_path)
    text_cfg = {
        "hf_model_name": str(tmp_path),
        "hf_tokenizer_name": str(tmp_path),
        "hf_proj_type": "mlp",
        "hf_pooler_type": "cls_last_hidden_state_pooler",
        "context_length": 256,
        "hf_model_pretrained": False,
    }
    with torch.device("meta"):
        clip = open_clip.CustomTextCLIP(embed_dim=512, vision_cfg=vision_cfg, text_cfg=text_cfg)
    count = sum(p.numel() for p in clip.parameters())
    assert abs(count / 1e6 - 196.0) < 0.5, count
    assert clip.text.transformer.config.vocab_size == 30522
    assert clip.visual.trunk.patch_embed.patch_size == (16, 16) and clip.visual.trunk.embed_dim == 768


@pytest.mark.parametrize("name", LLMS)
def test_architecture_equals_published(name):
    config = llm_config(name)
    assert Architecture(*(getattr(config, field) for field in Architecture._fields)) == PUBLISHED[name]
    assert config.tie_word_embeddings and config.initializer_range == 0.02


@pytest.mark.parametrize("name", LLMS)
def test_family_details_equal_published(name):
    config = llm_config(name)
    if name.startswith("gpt2"):
        assert (config.activation_function, config.n_inner) == ("gelu_new", None)
        assert config.layer_norm_epsilon == 1e-5
        assert (config.attn_pdrop, config.embd_pdrop, config.resid_pdrop) == (0.1, 0.1, 0.1)
        return
    assert config.head_dim == config.hidden_size // config.num_attention_heads  # 64 and 128, as published
    assert (config.num_key_value_heads, config.intermediate_size, config.hidden_act) == (8, 8192, "silu")
    assert (config.rms_norm_eps, config.attention_dropout) == (1e-5, 0.0)
    assert config.attention_bias is False and config.mlp_bias is False
    assert config.rope_parameters == {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }


@pytest.mark.parametrize("name", LLMS)
def test_config_json_keeps_every_published_field(name, tmp_path):
    """transformers writes every field of the published table into config.json, unchanged."""
    llm_config(name).save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert _published_view(written, name) == PUBLISHED_CONFIGS[name]


@pytest.mark.parametrize("name", LLMS)
def test_tiny_width_changes_only_the_trunk_sizes(name):
    full, tiny = llm_config(name).to_dict(), llm_config(name, "tiny").to_dict()
    changed = {field for field in full.keys() | tiny.keys() if full.get(field) != tiny.get(field)}
    assert changed == set(TINY_SIZES[name])
    assert tiny.get("hidden_size", tiny.get("n_embd")) == 64
    assert tiny.get("num_hidden_layers", tiny.get("n_layer")) == 2
    if name.startswith("llama"):
        assert tiny["num_key_value_heads"] < tiny["num_attention_heads"]  # grouped-query attention


# ------------------------------------------------------------------------------------------- tokenizers


@pytest.fixture(scope="module")
def tokenizers():
    torch.set_num_threads(1)
    return {"llama": llama3_tokenizer(TEXTS), "gpt2": gpt2_tokenizer(TEXTS)}


def test_llama_tokenizer_ids_and_specials(tokenizers):
    tok = tokenizers["llama"]
    assert len(tok) == 128256
    assert tok.convert_ids_to_tokens(list(range(128000, 128256))) == _llama_specials()
    assert (tok.bos_token, tok.bos_token_id) == ("<|begin_of_text|>", 128000)
    assert (tok.eos_token, tok.eos_token_id) == ("<|end_of_text|>", 128001)
    assert tok.pad_token is None and tok.pad_token_id is None
    ids = tok("Is the liver enlarged?").input_ids
    assert ids[0] == 128000 and ids.count(128000) == 1 and 128001 not in ids
    assert max(ids[1:]) < 128000
    assert 128000 not in tok("Is the liver enlarged?", add_special_tokens=False).input_ids


def test_gpt2_tokenizer_ids_and_specials(tokenizers):
    tok = tokenizers["gpt2"]
    assert len(tok) == 50257
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 50256
    assert tok.bos_token_id == tok.eos_token_id == tok.unk_token_id == 50256
    assert tok.pad_token is None and tok.pad_token_id is None
    assert tok.model_max_length == 1024
    ids = tok("Is the liver enlarged?").input_ids
    assert 50256 not in ids and max(ids) < 50256


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_tokenizer_round_trips_and_never_emits_fillers(tokenizers, kind):
    tok = tokenizers[kind]
    for text in ROUND_TRIP:
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.decode(ids) == text
        assert not [t for t in tok.convert_ids_to_tokens(ids) if t.startswith(FILLER_PREFIX)]
    regular = 128000 if kind == "llama" else 50256
    assert tok.convert_ids_to_tokens(regular - 1).startswith(FILLER_PREFIX)  # padded up to the real size


def test_tokenizers_on_the_datasets_text():
    """Trained on the three datasets' training questions and answers (as the CLI does), every text
    round-trips and no filler entry is ever produced."""
    from helpers_data import shared

    roots = [shared("slake"), shared("vqa_rad"), shared("pathvqa")]
    assert [detect_dataset(root) for root in roots] == ["slake", "vqa-rad", "pathvqa"]
    texts = [text for root in roots for text in read_texts(root).texts]
    assert len(texts) > 10_000 and all(t.strip() for t in texts)
    for tok in (llama3_tokenizer(texts), gpt2_tokenizer(texts)):
        encoded = tok(texts, add_special_tokens=False).input_ids
        assert tok.batch_decode(encoded) == texts
        used = {i for ids in encoded for i in ids}
        assert not [t for t in tok.convert_ids_to_tokens(sorted(used)) if t.startswith(FILLER_PREFIX)]


# -------------------------------------------------------------------------------------- tiny folders


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("random_weights")
    return {
        name: build_random_weights(name, root / name, TEXTS, width="tiny")
        for name in ("llama-3.2-1b", "gpt2-xl")
    }


@pytest.mark.parametrize("name", ["llama-3.2-1b", "gpt2-xl"])
def test_tiny_folder_loads_and_runs(tiny_folders, name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_folders[name]
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows == len(tok) == PUBLISHED[name].vocab_size
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tok.pad_token is None
    assert folder_parameter_count(folder) == sum(p.numel() for p in model.parameters())
    batch = tok(["Is the liver enlarged?"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch.input_ids.shape[1], rows) and torch.isfinite(logits).all()
    assert (batch.input_ids[0, 0] == 128000) == name.startswith("llama")
    assert tok.decode(batch.input_ids[0], skip_special_tokens=True) == "Is the liver enlarged?"


def test_tiny_folders_keep_the_family_structure(tiny_folders):
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    llama = AutoModelForCausalLM.from_pretrained(tiny_folders["llama-3.2-1b"])
    attention = llama.model.layers[0].self_attn
    assert attention.k_proj.out_features * 2 == attention.q_proj.out_features  # 2 KV heads of 4
    assert llama.config.rope_parameters["rope_type"] == "llama3"
    assert llama.config.rope_parameters["factor"] == 32.0
    gpt2 = AutoModelForCausalLM.from_pretrained(tiny_folders["gpt2-xl"])
    block = gpt2.transformer.h[0]
    assert all(isinstance(m, Conv1D) for m in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc))
    assert gpt2.config.n_positions == 1024


def test_tiny_folder_files_have_normal_modes(tiny_folders):
    umask = os.umask(0)
    os.umask(umask)
    for folder in tiny_folders.values():
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o666 & ~umask}
        assert sorted(p.name for p in folder.parent.iterdir()) == sorted(tiny_folders)  # no staging left


def test_same_arguments_give_the_same_files(tiny_folders, tmp_path):
    again = build_random_weights("gpt2-xl", tmp_path / "again", TEXTS, width="tiny")
    other = build_random_weights("gpt2-xl", tmp_path / "other", TEXTS, width="tiny", seed=1)
    first = tiny_folders["gpt2-xl"]
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert all((first / n).read_bytes() == (again / n).read_bytes() for n in names)
    assert (first / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()
    assert (first / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()


def test_tiny_biomedclip_loads_through_open_clip(tmp_path):
    from bamco_fast.models.towers import load_towers

    folder = build_random_weights("biomedclip", tmp_path / "towers", TEXTS, width="tiny")
    towers = load_towers(f"local-dir:{folder}")
    assert (towers.image_size, towers.context_length, towers.embed_dim) == (224, 256, 512)
    assert towers.clip.text.transformer.config.vocab_size == 30522
    assert folder_parameter_count(folder) == sum(p.numel() for p in towers.clip.parameters())
    with torch.no_grad():
        features = towers.clip.encode_text(towers.tokenizer(["is the liver enlarged"]))
    assert features.shape == (1, 512)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_builds_a_tiny_folder(tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    out = tmp_path / "out" / "gpt2"
    assert main(["gpt2-xl", "--out", str(out), "--width", "tiny", "--seed", "3", "--texts", str(texts)]) == 0
    printed = capsys.readouterr().out
    assert f"parameters: {folder_parameter_count(out):,}" in printed
    assert f"{len(TEXTS):,} from lines of" in printed
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["n_embd"] == 64


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["llama-3"], ["NAME", "'llama-3'", "llama-3.2-1b"]),
        (["gpt2-xl", "--dtype", "float16"], ["--dtype", "'float16'", "bfloat16"]),
        (["gpt2-xl", "--width", "small"], ["--width", "'small'", "tiny"]),
        (["gpt2-xl", "--seed", "-1"], ["--seed", "'-1'", "integer"]),
        (["biomedclip", "--dtype", "bfloat16"], ["--dtype", "'bfloat16'", "float32"]),
        (["gpt2-xl", "--texts", "{tmp}/missing.txt"], ["--texts", "{tmp}/missing.txt", "text file"]),
        (["gpt2-xl", "--out", "{tmp}/file"], ["--out", "{tmp}/file'", "existing file"]),
        (["gpt2-xl", "--out", "{tmp}/full"], ["--out", "{tmp}/full'", "not empty"]),
        ([], ["required", "NAME", "--out"]),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, expected):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x", encoding="utf-8")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args and "--out" not in args:
        args += ["--out", str(tmp_path / "new")]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err
    for word in expected:
        assert word.replace("{tmp}", str(tmp_path)) in lines[0], lines[0]
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_cli_module_entry_point_reports_bad_input(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "bamco_fast.models.random_weights", "bert", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith("error: NAME")
    assert not (tmp_path / "x").exists()
