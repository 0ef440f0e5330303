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


# --- the process's JVM pool: one METEOR and one tokenizer JVM, reused, restarted when dead ----------

TRICKY = {"a": ["Hello, World. This is \"quoted\" text!", "A chair's leg -- isn't it...", "  "],
          "b": ["colour (red) {x} [y]", "naïve café — “smart quotes” ‘x’", "tab\there"],
          "c": ["xqfill xqbegin1 xqend1", "1,000.50 $ 3/4 & < > @ #", "U.S.A. Mr. Smith can't", "x" * 3000]}


def test_tokenizer_jvm_gives_pycocoevalcap_tokens_and_is_reused():
    from harness.metrics.captioning import jvm_pool, ptb_tokenize_once

    pool = jvm_pool()
    expected = ptb_tokenize_once(TRICKY)
    assert pool.tokenize(TRICKY) == expected
    pid = pool.pids()["tokenizer"]
    assert pid is not None
    assert pool.tokenize(TRICKY) == expected and pool.pids()["tokenizer"] == pid  # same JVM
    # a caption the tokenizer splits over two lines: the one-shot tokenizer answers, exactly as before
    odd = {"a": ["one\rtwo", "three"], "b": ["four"]}
    assert pool.tokenize(odd) == ptb_tokenize_once(odd)
    assert pool.tokenize(TRICKY) == expected  # and a fresh JVM serves the next request


def test_caption_scores_reuse_both_jvms_across_evaluations():
    from harness.metrics.captioning import jvm_pool

    pool = jvm_pool()
    first = caption_scores(PREDICTIONS, REFERENCES)
    pids, starts = pool.pids(), dict(pool.starts)
    assert pids["meteor"] and pids["tokenizer"]
    assert caption_scores(PREDICTIONS, REFERENCES) == first
    assert pool.pids() == pids and pool.starts == starts  # no JVM started for the second evaluation


def test_dead_jvms_are_restarted(monkeypatch):
    from harness.metrics import captioning

    pool = captioning.jvm_pool()
    first = caption_scores(PREDICTIONS, REFERENCES)
    old = pool.pids()
    for jvm in (pool._meteor, pool._tokenizer):  # killed between two evaluations
        jvm.proc.kill()
        jvm.proc.wait()
    assert caption_scores(PREDICTIONS, REFERENCES) == first
    new = pool.pids()
    assert new["meteor"] not in (None, old["meteor"]) and new["tokenizer"] not in (None, old["tokenizer"])

    # killed in the middle of a request: retried once on a new JVM
    real_submit = captioning.BatchMeteor.submit
    killed = []

    def submit_then_die(self, gts, res):
        real_submit(self, gts, res)
        if not killed:
            killed.append(self.pid)
            self.proc.kill()
            self.proc.wait()

    monkeypatch.setattr(captioning.BatchMeteor, "submit", submit_then_die)
    assert caption_scores(PREDICTIONS, REFERENCES) == first
    assert killed and pool.pids()["meteor"] not in (None, killed[0])


def test_a_failed_request_never_leaves_stale_answers(monkeypatch):
    """An exception between submitting to METEOR and collecting stops that JVM: the next evaluation
    must not read the abandoned request's answers."""
    from harness.metrics import captioning

    pool = captioning.jvm_pool()
    expected = caption_scores(PREDICTIONS, REFERENCES)

    def boom(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("pycocoevalcap.cider.cider.Cider.compute_score", boom)
        with pytest.raises(KeyboardInterrupt):
            caption_scores(PREDICTIONS, REFERENCES)
    assert caption_scores(PREDICTIONS, REFERENCES) == expected
    assert pool.pids()["meteor"] is not None


def test_jvm_pool_is_safe_across_threads():
    import threading

    expected = caption_scores(PREDICTIONS, REFERENCES)
    other = {k: v + " again" for k, v in PREDICTIONS.items()}
    expected_other = caption_scores(other, REFERENCES)
    results, errors = {}, []

    def work(name, preds):
        try:
            for _ in range(3):
                results.setdefault(name, []).append(caption_scores(preds, REFERENCES))
        except Exception as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, p)) for n, p in (("a", PREDICTIONS), ("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results["a"] == [expected] * 3 and results["b"] == [expected_other] * 3


def test_pool_close_stops_the_jvms_and_a_later_use_starts_new_ones():
    from harness.metrics.captioning import jvm_pool

    pool = jvm_pool()
    pool.prestart()
    pids = pool.pids()
    assert pids["meteor"] and pids["tokenizer"]
    pool.close()
    assert pool.pids() == {"meteor": None, "tokenizer": None}
    caption_scores(PREDICTIONS, REFERENCES)
    assert pool.pids()["meteor"] not in (None, pids["meteor"])
