"""Evaluation hot paths against references measured in the same process.

* Blockwise multi-positive recall (``harness.metrics``) on 50k queries x 50k gallery, time and
  peak memory (tracemalloc sees numpy's buffers), against a dense reference (full score matrix +
  argsort per row). The dense reference does not fit at 50k (10 GB of scores + 20 GB of argsort
  indices), so it runs at the largest size that fits comfortably (10k) and the comparison is the
  per-pair throughput ratio there; the blockwise code also runs at 10k for a same-size ratio.
* METEOR 1.5 on 5k captions: our single-JVM pipelined driver against pycocoevalcap's ``Meteor``.
* The captioning step of an evaluation (issue 17) on the pix3d preset's captioning problem against the
  path before it (kept here: 30 fixed epochs, beam search one shape at a time, fresh JVMs).
* Photo -> shape queries of 10k photos: crops a batch ahead in a thread, no crop decoded twice,
  against cropping, saving and encoding one photo at a time.

Under ``--benchmark-disable`` every size shrinks so the file passes as a quick test.
"""
import random
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from harness.metrics.retrieval import l2_normalize, photo_ranks, summarize

DIM = 256


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    gallery = rng.normal(size=(n, DIM)).astype(np.float32)
    queries = gallery + 4.0 * rng.normal(size=(n, DIM)).astype(np.float32)  # noisy copies: R@1 < 1
    keys = np.arange(n).astype(str)
    return queries, gallery, keys


def dense_recall(queries, gallery, ks=(1, 5, 10)):
    """Reference: the whole (Q, G) score matrix and a full argsort of every row (diagonal positives)."""
    scores = l2_normalize(queries) @ l2_normalize(gallery).T
    order = np.argsort(-scores, axis=1, kind="stable")
    first = np.argmax(order == np.arange(len(queries))[:, None], axis=1) + 1
    return {f"R@{k}": float(np.mean(first <= k)) for k in ks}, first


def _measure(fn):
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def test_blockwise_recall_50k(benchmark):
    n_big, n_ref = (2_000, 1_000) if benchmark.disabled else (50_000, 10_000)
    q, g, keys = _data(n_big)

    def blockwise():
        return summarize(photo_ranks(q, g, keys, keys), prefix="")

    res, seconds, peak = _measure(blockwise) if benchmark.disabled else (None, None, None)
    if not benchmark.disabled:
        tracemalloc.start()
        t = time.perf_counter()
        res = benchmark.pedantic(blockwise, rounds=1, iterations=1)
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert 0 < res["R@1"] < 1
    # Same-size comparison with the dense reference.
    qs, gs, ks = _data(n_ref, seed=1)
    (ref, _), ref_s, ref_peak = _measure(lambda: dense_recall(qs, gs))
    small, small_s, small_peak = _measure(lambda: summarize(photo_ranks(qs, gs, ks, ks), prefix=""))
    for k in (1, 5, 10):
        assert small[f"R@{k}"] == pytest.approx(ref[f"R@{k}"])
    benchmark.extra_info.update({
        "n_queries": n_big, "n_gallery": n_big, "dim": DIM,
        "blockwise_seconds": seconds, "blockwise_peak_MB": peak / 2**20,
        "blockwise_pairs_per_s": n_big * n_big / seconds,
        "ref_size": n_ref, "dense_seconds": ref_s, "dense_peak_MB": ref_peak / 2**20,
        "blockwise_same_size_seconds": small_s, "blockwise_same_size_peak_MB": small_peak / 2**20,
        "speedup_vs_dense_same_size": ref_s / small_s,
        "throughput_ratio_50k_vs_dense": (n_big * n_big / seconds) / (n_ref * n_ref / ref_s),
    })
    assert peak < 2**30, f"blockwise peak {peak / 2**20:.0f} MB is over 1 GB"


def _captions(n, seed=0):
    rnd = random.Random(seed)
    words = ("a the chair table sofa bed desk lamp wooden black white red metal with four legs "
             "armrest modern round square tall low soft cushion back seat").split()

    def sentence():
        return " ".join(rnd.choice(words) for _ in range(rnd.randint(5, 12)))
    return {i: [sentence()] for i in range(n)}, {i: [sentence() for _ in range(5)] for i in range(n)}


def test_meteor_5k(benchmark):
    from pycocoevalcap.meteor.meteor import Meteor

    from harness.metrics.captioning import BatchMeteor, tokenize

    n = 50 if benchmark.disabled else 5_000
    res, gts = _captions(n)
    res_tok, gts_tok = tokenize({i: v[0] for i, v in res.items()}, gts)

    def ours():
        with BatchMeteor() as meteor:
            return meteor.compute_score(gts_tok, res_tok)

    t = time.perf_counter()
    score, _ = benchmark.pedantic(ours, rounds=1, iterations=1)
    seconds = time.perf_counter() - t
    if benchmark.disabled:  # equality with pycocoevalcap is a unit test; skip the second JVM here
        return
    t = time.perf_counter()
    ref = Meteor()
    ref_score, _ = ref.compute_score(gts_tok, res_tok)
    ref_seconds = time.perf_counter() - t
    del ref
    assert score == pytest.approx(ref_score, abs=1e-12)
    benchmark.extra_info.update({"captions": n, "meteor_seconds": seconds,
                                 "meteor_captions_per_s": n / seconds,
                                 "pycocoevalcap_meteor_seconds": ref_seconds,
                                 "speedup_vs_pycocoevalcap": ref_seconds / seconds})


# --- the captioning step of an evaluation, against the path before issue 17 -----------------------

def pix3d_captioning_problem(seed: int = 0, dim: int = 128, noise: float = 0.6):
    """The captioning problem of the synthetic ``pix3d`` preset without rendering: its 395 shapes with
    their true captions (the generator's meshes and caption templates), a 70/10/20 shape split, and a
    CLIP-like embedding per shape — the sum of fixed random directions for its category, colours,
    material and attributes plus noise — so the captioner has to read those facts from it."""
    from harness.data.captions import synthetic_captions
    from harness.data.synth import _build_shape, plan

    rng = np.random.default_rng(seed)
    directions: dict = {}

    def direction(fact):
        if fact not in directions:
            v = rng.normal(size=dim)
            directions[fact] = v / np.linalg.norm(v)
        return directions[fact]

    keys, emb, caps = [], [], []
    for task in plan("pix3d", 0):
        shape = _build_shape(task, 0)
        facts = [("category", shape.category), ("material", shape.material),
                 *(("colour", role, c) for role, c in sorted(shape.colours.items())),
                 *(("attr", shape.category, k, str(v)) for k, v in sorted(shape.attributes.items()))]
        v = sum(direction(f) for f in facts) / np.sqrt(len(facts))
        v = v + noise * rng.normal(size=dim) / np.sqrt(dim)
        keys.append(task["key"])
        emb.append(v)
        caps.append(synthetic_captions(shape.category, shape.attributes, shape.colours, shape.material))
    order = rng.permutation(len(keys))
    n_train, n_val = int(0.7 * len(keys)), int(0.1 * len(keys))
    split = {"train": order[:n_train], "test": order[n_train + n_val:]}
    emb = np.asarray(emb, dtype=np.float32)
    return {name: ([keys[i] for i in idx], emb[idx], [caps[i] for i in idx]) for name, idx in split.items()}


def reference_train_captioner(image_emb, captions, epochs=30, batch_size=64, lr=2e-3, seed=0, **model_kwargs):
    """The generative captioner's training before issue 17, verbatim: a fixed ``epochs`` (one-cycle)
    on every train caption, batches padded to their longest caption, torch's default threads."""
    import math

    import torch
    import torch.nn.functional as F
    from torch import nn

    from models.captioner import PrefixCaptioner, Vocab

    emb = torch.as_tensor(np.asarray(image_emb), dtype=torch.float32)
    pairs = [(i, c) for i, caps in enumerate(captions) for c in caps]
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vocab = Vocab.build([c for _, c in pairs])
    model = PrefixCaptioner(vocab, emb.shape[1], standardize=False, **model_kwargs)
    seqs = [vocab.encode(c, model.max_len) for _, c in pairs]
    tokens = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    for r, s in enumerate(seqs):
        tokens[r, : len(s)] = torch.tensor(s)
    shape_idx = torch.tensor([i for i, _ in pairs])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(pairs) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(pairs), generator=gen)
        for s in range(0, len(pairs), batch_size):
            idx = order[s:s + batch_size]
            tok = tokens[idx]
            tok = tok[:, :int((tok != 0).sum(1).max())]
            logits = model(emb[shape_idx[idx]], tok[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1),
                                   ignore_index=0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    return model.eval()


def reference_beam(model, emb, beam: int) -> list[str]:
    """Beam search one shape at a time, as before issue 17 (the batched search must equal it)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from captioner_fixtures import per_shape_beam

    rows = torch.as_tensor(emb, dtype=torch.float32)
    with torch.no_grad():
        return [per_shape_beam(model, rows[i:i + 1], beam, model.max_len - 1) for i in range(len(rows))]


def reference_scores(prediction_sets: dict, references: dict) -> dict:
    """The caption metrics as before issue 17: a PTB tokenizer JVM run and a new METEOR JVM for every
    evaluation (METEOR fed by a writer thread, overlapping BLEU/ROUGE_L/CIDEr)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from harness.metrics.captioning import BatchMeteor, ptb_tokenize_once

    ids = list(references)
    out = {}
    with BatchMeteor() as meteor:
        clean = lambda s: s.replace("\n", " ").strip() or "<empty>"  # noqa: E731
        joint = {("res", n, i): [clean(p[i])] for n, p in prediction_sets.items() for i in ids}
        joint.update({("gts", i): references[i] for i in ids})
        tok = ptb_tokenize_once(joint)
        gts = {i: tok[("gts", i)] for i in ids}
        for name in prediction_sets:
            res = {i: tok[("res", name, i)] for i in ids}
            meteor.submit(gts, res)
            scores = {"BLEU-4": Bleu(4).compute_score(gts, res, verbose=0)[0][3],
                      "ROUGE_L": Rouge().compute_score(gts, res)[0]}
            scores["CIDEr"], cider = Cider().compute_score(gts, res)
            scores["METEOR"] = meteor.collect()[0]
            out[name] = (scores, cider)
    return out


def test_captioning_step_vs_before(benchmark):
    """The captioning step on the pix3d preset's captioning problem (276 train shapes x 5 captions,
    80 test shapes, beam 3): the early-stopped captioner (the config's eval.captioner) + batched beam search +
    the process's JVMs (started cold), against the path before issue 17 (a 2-layer, 128-wide decoder,
    30 fixed epochs, batch 64; beam search one shape at a time; fresh JVMs) in the same process.
    Gates: >= 4x faster (the issue's goal; measured 3.2x, 3.7x with the lean decoder block, 4.4-4.6x with
    the standardised input); quality as the mean over three captioner seeds (one seed moves it by more
    than the differences gated): CIDEr at least 0.88x the reference's, sentence METEOR at least 0.83x.
    On this synthetic problem (facts summed as random directions, no shared cone; short templated
    captions) the small decoder stays under the former 2-layer one (CIDEr ~0.91x, METEOR ~0.86x with
    the length-normalised caption choice, ~0.90x without; docs/PERFORMANCE.md), while on the pix3d
    preset's real embeddings and on the quickstart it captions better on both."""
    from harness.evaluation.captioning import NON_TRAINING_KEYS
    from harness.experiment import ex
    from harness.metrics import bootstrap_ci
    from harness.metrics.captioning import caption_scores_many, jvm_pool
    from models.captioner_training import cached_captioner

    data = pix3d_captioning_problem()
    (_, train_emb, train_caps), (test_keys, test_emb, test_caps) = data["train"], data["test"]
    defaults = ex.configurations[0]()["eval"]["captioner"]
    cfg = {k: v for k, v in defaults.items() if k not in NON_TRAINING_KEYS}
    decode = {"beam_size": defaults["beam_size"], "length_penalty": defaults["length_penalty"]}
    if benchmark.disabled:  # a quick test: a few shapes, two epochs
        train_emb, train_caps, test_emb = train_emb[:40], train_caps[:40], test_emb[:6]
        test_keys, test_caps = test_keys[:6], test_caps[:6]
        cfg = {**cfg, "epochs": 2, "d_model": 32, "layers": 1}
    references = dict(zip(test_keys, test_caps, strict=True))
    parts = {}

    def ours():
        t = time.perf_counter()
        jvm_pool().prestart()  # an evaluation starts them while its captioner trains (here: cold)
        model, _ = cached_captioner(train_emb, train_caps, None, seed=0, **cfg)
        parts["train"] = time.perf_counter() - t
        t = time.perf_counter()
        preds = dict(zip(test_keys, model.generate(test_emb, **decode), strict=True))
        parts["generate"] = time.perf_counter() - t
        t = time.perf_counter()
        scored = caption_scores_many({"gen": preds}, references)["gen"]
        parts["score"] = time.perf_counter() - t
        return model, scored

    jvm_pool().close()
    t = time.perf_counter()
    model, (scores, items) = benchmark.pedantic(ours, rounds=1, iterations=1)
    seconds = time.perf_counter() - t
    if benchmark.disabled:
        assert set(scores) >= {"CIDEr", "METEOR"}
        return
    t = time.perf_counter()
    ref_model = reference_train_captioner(train_emb, train_caps, epochs=30, batch_size=64, lr=2e-3, seed=0,
                                          d_model=128, layers=2, prefix_len=4)
    ref_train = time.perf_counter() - t
    ref_preds = dict(zip(test_keys, reference_beam(ref_model, test_emb, 3), strict=True))
    ref_beam = time.perf_counter() - t - ref_train
    ref_scores, _ = reference_scores({"gen": ref_preds}, references)["gen"]
    ref_seconds = time.perf_counter() - t
    # per-shape sentence scores of the reference for its CIs (our scorer gives pycocoevalcap's figures)
    _, ref_items = caption_scores_many({"gen": ref_preds}, references)["gen"]
    # quality over three captioner seeds (the timed one and two more): one seed moves these figures
    # by more than the differences being gated (docs/PERFORMANCE.md)
    seed_items = [items]
    for seed in (1, 2):
        other, _ = cached_captioner(train_emb, train_caps, None, seed=seed, **cfg)
        preds = dict(zip(test_keys, other.generate(test_emb, **decode), strict=True))
        seed_items.append(caption_scores_many({"gen": preds}, references)["gen"][1])
    ci, mean, ref_mean, by_seed = {}, {}, {}, {}
    for m in ("CIDEr", "METEOR"):
        ref_vals = np.array([ref_items[m][k] for k in test_keys])
        ci[m] = bootstrap_ci(ref_vals, test_keys, resamples=1000, seed=0)
        by_seed[m] = [float(np.mean([it[m][k] for k in test_keys])) for it in seed_items]
        mean[m] = float(np.mean(by_seed[m]))
        ref_mean[m] = float(ref_vals.mean())
    benchmark.extra_info.update({
        "seconds": seconds, "train_seconds": parts["train"], "generate_seconds": parts["generate"],
        "score_seconds": parts["score"], "reference_seconds": ref_seconds,
        "reference_train_seconds": ref_train,
        "reference_beam_seconds": ref_beam, "reference_score_seconds": ref_seconds - ref_train - ref_beam,
        "speedup": ref_seconds / seconds, "epochs_run": model.epochs_run,
        "CIDEr": scores["CIDEr"], "METEOR": scores["METEOR"], "reference_CIDEr": ref_scores["CIDEr"],
        "reference_METEOR": ref_scores["METEOR"], "sentence_METEOR": mean["METEOR"],
        "reference_sentence_METEOR": ref_mean["METEOR"], "reference_CIDEr_ci95": ci["CIDEr"],
        "sentence_CIDEr_by_seed": by_seed["CIDEr"], "sentence_METEOR_by_seed": by_seed["METEOR"],
        "reference_sentence_METEOR_ci95": ci["METEOR"], "train_shapes": len(train_emb),
        "test_shapes": len(test_emb)})
    assert ref_seconds / seconds >= 4.0, f"captioning {seconds:.1f} s vs {ref_seconds:.1f} s before: < 4x"
    assert mean["METEOR"] >= 0.83 * ref_mean["METEOR"], (
        f"METEOR {mean['METEOR']:.3f} (mean of seeds {by_seed['METEOR']}) under 0.83x the reference's "
        f"{ref_mean['METEOR']:.3f} (its CI {ci['METEOR']})")
    assert mean["CIDEr"] >= 0.88 * ref_mean["CIDEr"], (
        f"CIDEr {mean['CIDEr']:.3f} (mean of seeds {by_seed['CIDEr']}) under 0.88x the reference's "
        f"{ref_mean['CIDEr']:.3f}")


# --- photo -> shape queries at Pix3D's size (10k photos) -----------------------------------------

def synthetic_photos(root, n: int, seed: int = 0):
    """``n`` Pix3D-like photo records (160x128 PNG photo, mask, bbox) of 50 shapes under ``root``."""
    from types import SimpleNamespace

    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "mask").mkdir(parents=True, exist_ok=True)
    photos = []
    for i in range(n):
        img = np.full((128, 160, 3), rng.integers(150, 255, 3), np.uint8)
        x0, y0 = int(rng.integers(5, 60)), int(rng.integers(5, 40))
        w, h = int(rng.integers(40, 90)), int(rng.integers(40, 80))
        img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 255, 3)
        mask = np.zeros((128, 160), np.uint8)
        mask[y0:y0 + h, x0:x0 + w] = 255
        Image.fromarray(img).save(root / "img" / f"{i:05d}.png")
        Image.fromarray(mask).save(root / "mask" / f"{i:05d}.png")
        photos.append(SimpleNamespace(img=f"img/{i:05d}.png", mask=f"mask/{i:05d}.png",
                                      model=f"shape{i % 50}", bad_mask=False,
                                      bbox=[x0 - 2, y0 - 2, x0 + w + 2, y0 + h + 2]))
    return SimpleNamespace(root=str(root), dataset=SimpleNamespace(photos=photos))


def reference_photo_queries(bundle, prepared, keys, work, use_mask=True):
    """Photo queries as before issue 17: per photo, crop and save a PNG; then encode the files."""
    from harness.data.photos import crop_photo, photo_jobs

    paths = []
    for job in photo_jobs(prepared, keys, work, bundle.image_size, use_mask):
        if not job.crop.is_file():
            crop_photo(job.img, job.bbox, job.mask, bundle.image_size, use_mask).save(job.crop)
        paths.append(str(job.crop))
    return models_encode_images(bundle, paths)


def models_encode_images(bundle, paths):
    import torch

    import models
    with torch.no_grad():
        return models.encode_images(bundle, paths).numpy()


def test_photo_queries_10k(benchmark, tmp_path):
    """Photo -> shape queries of 10k photos (crop, mask, encode with clip3d-tiny): the batched path
    (a crop thread a batch ahead of the model, no crop decoded again) against the per-photo path in
    the same process; the same embeddings; the share of a profile spent in evaluate.py's Python
    (gate: under 5 %) and in Python-level code at all (PIL's and torchvision's wrappers included)."""
    import cProfile
    import pstats

    import models
    from harness.data.photos import photo_jobs
    from harness.evaluation import encode_photos

    n = 64 if benchmark.disabled else 10_000
    prepared = synthetic_photos(tmp_path / "photos", n)
    bundle = models.create_model("clip3d-tiny", None, device="cpu", seed=0)
    keys = {f"shape{i}" for i in range(50)}

    def ours():
        jobs = photo_jobs(prepared, keys, tmp_path / "crops", bundle.image_size, True)
        return encode_photos(bundle, jobs, tmp_path / "features", True, {})

    t = time.perf_counter()
    emb = benchmark.pedantic(ours, rounds=1, iterations=1)
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    (tmp_path / "ref").mkdir()
    ref = reference_photo_queries(bundle, prepared, keys, tmp_path / "ref")
    ref_seconds = time.perf_counter() - t
    assert np.array_equal(emb, ref)
    # Profile (untimed): a fresh pass with the crops made in the calling thread, so cProfile sees them.
    profile = cProfile.Profile()
    jobs = photo_jobs(prepared, keys, tmp_path / "crops2", bundle.image_size, True)
    profile.enable()
    encode_photos(bundle, jobs, tmp_path / "features2", True, {}, crop_thread=False)
    profile.disable()
    stats = pstats.Stats(profile)
    total = stats.total_tt
    ours = ("harness/evaluation/photos.py", "harness/data/photos.py")
    ours_py = sum(v[2] for k, v in stats.stats.items() if k[0].endswith(ours))
    python = sum(v[2] for k, v in stats.stats.items() if k[0] not in ("~",) and not k[2].startswith("<"))
    benchmark.extra_info.update({"photos": n, "seconds": seconds, "photos_per_s": n / seconds,
                                 "reference_seconds": ref_seconds, "speedup": ref_seconds / seconds,
                                 "evaluate_py_share_of_profile": ours_py / total,
                                 "python_level_share_of_profile": python / total})
    assert ours_py / total < 0.05, f"per-photo Python in evaluate.py: {ours_py / total:.1%} of the profile"
