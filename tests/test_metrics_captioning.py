"""caption_scores equals pycocoevalcap's own scorers; Java and input errors are clear."""
import pytest

from harness.metrics import CAPTION_METRICS, CaptionInputError, JavaNotFoundError, caption_scores

PREDICTIONS = {
    "chair/a": "a wooden chair with four legs",
    "chair/b": "a black office chair.",
    "table/c": "a round table",
    "sofa/d": "a red sofa with two cushions",
    "bed/e": "",  # empty predictions must not shift the tokenizer's lines
}
REFERENCES = {
    "chair/a": ["A wooden chair with four legs.", "a chair made of wood", "brown wooden chair"],
    "chair/b": ["a black chair with wheels", "an office chair, black"],
    "table/c": ["a round wooden table", "a small round table with one leg"],
    "sofa/d": ["a red two-seat sofa"],
    "bed/e": ["a double bed", "a bed with a headboard"],
}


def pycocoevalcap_direct(predictions, references):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in references.items()})
    res = tok.tokenize({k: [{"caption": v or "<empty>"}] for k, v in predictions.items()})
    out = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"BLEU-{i + 1}": b for i, b in enumerate(bleu)})
    meteor = Meteor()
    out["METEOR"], _ = meteor.compute_score(gts, res)
    del meteor
    out["ROUGE_L"], _ = Rouge().compute_score(gts, res)
    out["CIDEr"], _ = Cider().compute_score(gts, res)
    return out


def test_caption_scores_equal_pycocoevalcap_direct():
    ours, items = caption_scores(PREDICTIONS, REFERENCES, per_item=True)
    assert list(ours) == list(CAPTION_METRICS)
    assert all(type(v) is float for v in ours.values())
    assert ours == pytest.approx(pycocoevalcap_direct(PREDICTIONS, REFERENCES), abs=1e-12)
    assert set(items["CIDEr"]) == set(PREDICTIONS)
    assert ours["CIDEr"] == pytest.approx(sum(items["CIDEr"].values()) / len(PREDICTIONS))
    assert items["BLEU-1"]["chair/a"] == pytest.approx(1.0)  # identical up to case and punctuation


def test_missing_java_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match="default-jre-headless"):
        caption_scores({"a": "x"}, {"a": ["x"]})


def test_bad_inputs():
    with pytest.raises(CaptionInputError, match=r"missing predictions for \['b'\]"):
        caption_scores({"a": "x"}, {"a": ["x"], "b": ["y"]})
    with pytest.raises(CaptionInputError, match="non-empty list of strings"):
        caption_scores({"a": "x"}, {"a": "x"})
    with pytest.raises(CaptionInputError, match="at least one"):
        caption_scores({}, {})
