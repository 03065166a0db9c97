"""BERTScore with a tiny BERT built here (WordPiece tokenizer trained on a few words); no download."""

import pytest
import torch

from bamco_fast.metrics import BertScoreUnavailable, Prediction, score
from bamco_fast.metrics.bertscore import bertscore_f1

transformers = pytest.importorskip("transformers", reason="BERTScore needs transformers")
tokenizers = pytest.importorskip("tokenizers", reason="building the tiny tokenizer needs tokenizers")

_TEXT = "liver spleen left lung right kidney heart nodule mass yes no the and of is in"  # every word in the vocabulary


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer BERT folder with a lower-casing WordPiece tokenizer whose vocabulary holds every word of ``_TEXT``."""
    from transformers import BertConfig, BertModel

    from bamco_fast.models.tiny import _bert_tokenizer, train_wordpiece_vocab

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = train_wordpiece_vocab([_TEXT], vocab_size=200)
    _bert_tokenizer(vocab, context_length=512).save_pretrained(folder)
    torch.manual_seed(0)
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(BertConfig(vocab_size=len(vocab), **sizes)).eval().save_pretrained(folder)
    return folder


def test_identical_texts_score_one_and_empty_scores_zero(tiny_bert):
    scores, layer = bertscore_f1(["Left lung", "", "liver"], ["left lung", "liver", ""], tiny_bert)
    assert layer == 2  # unknown model name: last layer
    assert scores == pytest.approx([1.0, 0.0, 0.0], abs=1e-5)


def test_one_token_each_is_the_cosine_of_their_hidden_states(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert).eval()
    for layer in (0, 1, 2):
        states = []
        for word in ("liver", "spleen"):
            ids = tokenizer(word, return_tensors="pt")
            assert ids["input_ids"].shape[1] == 3  # [CLS] word [SEP]
            with torch.no_grad():
                states.append(model(**ids, output_hidden_states=True).hidden_states[layer][0, 1])
        expected = float(torch.nn.functional.cosine_similarity(states[0], states[1], dim=0))
        (got,), used = bertscore_f1(["liver"], ["spleen"], tiny_bert, num_layers=layer)
        assert used == layer and got == pytest.approx(expected, abs=1e-5)


def test_symmetric_and_batched_like_unbatched(tiny_bert):
    preds, refs = ["left lung nodule", "the kidney", "mass"], ["lung", "right kidney and heart", "heart mass"]
    forward, _ = bertscore_f1(preds, refs, tiny_bert)
    backward, _ = bertscore_f1(refs, preds, tiny_bert)
    one_by_one, _ = bertscore_f1(preds, refs, tiny_bert, batch_size=1)
    assert forward == pytest.approx(backward, abs=1e-5)
    assert forward == pytest.approx(one_by_one, abs=1e-5)


def test_score_reports_open_bertscore(tiny_bert):
    rows = [
        Prediction(qid="1", prediction="yes", answer="no", answer_type="CLOSED"),
        Prediction(qid="2", prediction="liver", answer="liver", answer_type="OPEN"),
    ]
    report = score(rows, n_boot=0, bertscore_model=str(tiny_bert))
    assert report.metrics["open_bertscore"].n == 1
    assert report.metrics["open_bertscore"].score == pytest.approx(1.0, abs=1e-5)
    assert any("layer 2" in note for note in report.notes)


def test_missing_model_and_bad_layer_are_clear_errors(tmp_path, tiny_bert):
    with pytest.raises(BertScoreUnavailable, match=r"local Hugging Face model folder.*Nothing is downloaded"):
        bertscore_f1(["a"], ["a"], tmp_path / "roberta-large")
    with pytest.raises(BertScoreUnavailable, match=r"num_layers must be in \[0, 2\]"):
        bertscore_f1(["a"], ["a"], tiny_bert, num_layers=5)
