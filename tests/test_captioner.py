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


def per_shape_beam(model, emb, beam, max_len, length_penalty=0.0):
    """Beam search one shape at a time: the captioner's search before it was batched, kept verbatim
    as the reference the batched search must match caption for caption."""
    import math

    import torch
    import torch.nn.functional as F

    beams = [([1], 0.0)]
    finished = []
    for _ in range(max_len):
        seqs = torch.tensor([s for s, _ in beams], device=emb.device)
        logp = F.log_softmax(model(emb.expand(len(beams), -1), seqs)[:, -1], dim=-1)
        logp[:, 0] = -math.inf  # never emit padding
        cand = []
        for (seq, score), row in zip(beams, logp, strict=True):
            top = torch.topk(row, beam)
            cand += [(seq + [int(i)], score + float(v))
                     for v, i in zip(top.values, top.indices, strict=True)]
        cand.sort(key=lambda c: (-c[1], c[0]))  # deterministic on equal scores
        beams = []
        for seq, score in cand:
            (finished if seq[-1] == 2 else beams).append((seq, score))
            if len(beams) == beam:
                break
        if len(finished) >= beam or not beams:
            break
    finished += beams
    best = max(finished, key=lambda c: c[1] / (len(c[0]) ** length_penalty if length_penalty else 1.0))
    return model.vocab.decode(best[0][1:])


@pytest.mark.parametrize("seed", range(4))
def test_batched_beam_search_equals_per_shape_search_on_random_models(seed):
    import torch

    rng = np.random.default_rng(seed)
    words_ = [f"w{i}" for i in range(int(rng.integers(3, 40)))]
    caps = [" ".join(rng.choice(words_, int(rng.integers(1, 8)))) for _ in range(50)]
    torch.manual_seed(seed)
    dim = int(rng.integers(4, 48))
    model = PrefixCaptioner(Vocab.build(caps), dim, d_model=int(rng.choice([16, 32, 64])),
                            prefix_len=int(rng.integers(1, 5)), layers=int(rng.integers(1, 3)),
                            max_len=int(rng.integers(4, 16))).eval()
    if seed % 2:  # sharper distributions: stop tokens and finished beams show up early
        with torch.no_grad():
            model.head.weight.mul_(8.0)
    emb = rng.normal(size=(int(rng.integers(1, 24)), dim)).astype(np.float32)
    t = torch.as_tensor(emb)
    for beam, penalty in ((2, 0.0), (3, 0.7), (5, 0.0)):
        with torch.no_grad():
            want = [per_shape_beam(model, t[i:i + 1], beam, model.max_len - 1, penalty) for i in range(len(t))]
        assert model.generate(emb, beam_size=beam, length_penalty=penalty) == want, (beam, penalty)
        assert model.generate(emb, beam_size=beam, length_penalty=penalty, chunk=7) == want


def test_batched_beam_search_equals_per_shape_search_on_a_trained_model():
    import torch

    train_emb, train_caps, _ = clustered(6, seed=1)
    test_emb, _, _ = clustered(4, seed=2)
    model = train_captioner(train_emb, train_caps, epochs=3, seed=0, d_model=32, layers=1, batch_size=16)
    t = torch.as_tensor(test_emb)
    with torch.no_grad():
        want = [per_shape_beam(model, t[i:i + 1], 3, model.max_len - 1) for i in range(len(t))]
    assert model.generate(test_emb, beam_size=3) == want
