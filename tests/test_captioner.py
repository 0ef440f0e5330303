"""Captioners: train-only caption bank; the generative captioner learns to name the category."""
import numpy as np
import pytest

from models.captioner import PrefixCaptioner, RetrievalCaptioner, Vocab, train_captioner, words
from models.errors import ConfigError

CATEGORIES = ["chair", "table", "sofa", "bed", "desk", "lamp"]
COLOURS = ["red", "blue", "green", "black", "white"]


def clustered(n_per_cat, seed, dim=32):
    """Embeddings clustered by category (as CLIP shape embeddings of a tiny set) and templated captions."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(CATEGORIES), dim))
    rng = np.random.default_rng(seed)
    emb, caps, cats = [], [], []
    for c, cat in enumerate(CATEGORIES):
        for _ in range(n_per_cat):
            emb.append(centres[c] + 0.5 * rng.normal(size=dim))
            colours = rng.choice(COLOURS, 2, replace=False)
            caps.append([f"a {colours[0]} {cat}", f"a {cat} in {colours[1]}", f"this is a {cat}."])
            cats.append(cat)
    return np.array(emb, dtype=np.float32), caps, cats


def test_generative_captioner_names_the_category_better_than_chance():
    train_emb, train_caps, _ = clustered(12, seed=1)
    test_emb, _, test_cats = clustered(5, seed=2)
    model = train_captioner(train_emb, train_caps, epochs=15, seed=0, d_model=32, layers=1, batch_size=32)
    for beam in (1, 3):
        preds = model.generate(test_emb, beam_size=beam)
        named = np.mean([cat in words(p) for p, cat in zip(preds, test_cats, strict=True)])
        print(beam, named, preds[:3])
        assert named > 2 / len(CATEGORIES), (beam, preds[:5])  # chance is 1/6
        assert all(isinstance(p, str) and p for p in preds)
    # seeded: the same training gives the same captions
    a = train_captioner(train_emb[:12], train_caps[:12], epochs=2, seed=3, d_model=16, layers=1)
    b = train_captioner(train_emb[:12], train_caps[:12], epochs=2, seed=3, d_model=16, layers=1)
    assert a.generate(test_emb[:4]) == b.generate(test_emb[:4])


def test_vocab_roundtrip_and_unknown_words():
    v = Vocab.build(["A red chair.", "a chair"])
    assert v.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and v.itos[4:] == ["a", "chair", "red"]
    ids = v.encode("a red stool", max_len=10)
    assert ids == [1, 4, 6, 3, 2] and v.decode(ids[1:]) == "a red"


def test_retrieval_captioner_uses_nearest_train_caption():
    bank = RetrievalCaptioner.bank_from_captions({"s1": ["a chair", "a seat"], "s2": ["a table", "a chair"]})
    assert bank == ["a chair", "a seat", "a table"]
    cap = RetrievalCaptioner(bank, np.eye(3))
    assert cap.caption(np.array([[0.1, 0, 1.0], [1.0, 0.9, 0]])) == ["a table", "a chair"]
    assert cap.caption(np.array([[0.5, 1.0, 0]]), k=2) == [["a seat", "a chair"]]
    with pytest.raises(ConfigError, match="train captions only"):
        RetrievalCaptioner.bank_from_captions({"s1": ["x"]}, test_keys=["s1"])
    with pytest.raises(ConfigError, match="one embedding per caption"):
        RetrievalCaptioner(["a"], np.eye(2))


def test_training_input_errors():
    with pytest.raises(ConfigError, match="one embedding row"):
        train_captioner(np.zeros((2, 4)), [["a"]])
    with pytest.raises(ConfigError, match="no captions"):
        train_captioner(np.zeros((1, 4)), [[]])
    assert isinstance(PrefixCaptioner(Vocab.build(["a"]), 4), PrefixCaptioner)
