"""Captioning metrics: BLEU-1..4, METEOR 1.5, ROUGE_L, CIDEr exactly as pycocoevalcap computes them.

pycocoevalcap starts a JVM for the PTB tokenizer per ``tokenize`` call and its METEOR wrapper does
one request/response round trip per caption. Here one evaluation starts exactly two JVMs: one PTB
tokenizer run for predictions and references together (line by line, so identical output) and one
METEOR process fed through a writer thread so the pipe never waits on a round trip. The figures are
those of pycocoevalcap's own scorers (tested). SPICE is left out: it needs a separate download.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading

CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr")
JAVA_INSTALL_HINT = ("install a Java runtime (Debian/Ubuntu: `apt-get install default-jre-headless`, "
                     "conda: `conda install openjdk`) and make sure `java` is on PATH")


class JavaNotFoundError(RuntimeError):
    """The METEOR scorer and the PTB tokenizer of pycocoevalcap need a Java runtime."""


class CaptionInputError(ValueError):
    """Predictions and references do not line up."""


def java_executable() -> str:
    """Path of ``java`` on PATH, or one clear error saying how to install it."""
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError(f"captioning metrics (METEOR 1.5, PTB tokenizer) need Java, "
                                f"but no `java` is on PATH; {JAVA_INSTALL_HINT}")
    return java


def metric_impl() -> dict:
    """Provenance of the caption metrics: implementation, version, tokenizer."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        v = version("pycocoevalcap")
    except PackageNotFoundError:  # pragma: no cover - dependency is required
        v = None
    return {"captioning": "pycocoevalcap", "pycocoevalcap": v, "meteor": "METEOR 1.5 (-l en -norm)",
            "tokenizer": "PTBTokenizer (Stanford CoreNLP 3.4.1, lowercased, punctuation removed)",
            "bleu": "closest reference length", "spice": "not computed"}


def _check(predictions: dict, references: dict) -> list:
    if set(predictions) != set(references):
        missing = sorted(map(str, set(references) - set(predictions)))[:5]
        extra = sorted(map(str, set(predictions) - set(references)))[:5]
        raise CaptionInputError(f"predictions and references need the same ids; missing predictions "
                                f"for {missing}, no references for {extra}")
    ids = list(references)
    for i in ids:
        refs = references[i]
        if isinstance(refs, str) or not refs:
            raise CaptionInputError(f"references[{i!r}] must be a non-empty list of strings, got {refs!r}")
        if not isinstance(predictions[i], str):
            raise CaptionInputError(f"predictions[{i!r}] must be one string, got {predictions[i]!r}")
    if not ids:
        raise CaptionInputError("caption_scores needs at least one prediction, got none")
    return ids


def tokenize(predictions: dict, references: dict) -> tuple[dict, dict]:
    """PTB-tokenize predictions and references in one JVM run; ``(res, gts)`` as pycocoevalcap wants."""
    res, gts = tokenize_many({"_": predictions}, references)
    return res["_"], gts


def tokenize_many(prediction_sets: dict, references: dict) -> tuple[dict, dict]:
    """PTB-tokenize several prediction sets and their references in one JVM run (line by line, so
    each caption gets exactly the tokens a separate run would give)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    java_executable()
    ids = list(references)
    # Newlines would split a caption over two tokenizer lines; empty lines are dropped by the tokenizer.
    clean = lambda s: s.replace("\n", " ").strip() or "<empty>"  # noqa: E731
    joint = {("res", name, i): [{"caption": clean(preds[i])}] for name, preds in prediction_sets.items()
             for i in ids}
    joint.update({("gts", i): [{"caption": clean(r)} for r in references[i]] for i in ids})
    tok = PTBTokenizer().tokenize(joint)
    res = {name: {i: tok[("res", name, i)] for i in ids} for name in prediction_sets}
    return res, {i: tok[("gts", i)] for i in ids}


class BatchMeteor:
    """pycocoevalcap's METEOR 1.5 process, fed by a writer thread: one JVM for all captions."""

    def __init__(self):
        from pycocoevalcap.meteor import meteor as meteor_mod
        java = java_executable()
        self.cwd = os.path.dirname(os.path.abspath(meteor_mod.__file__))
        self.proc = subprocess.Popen([java, "-jar", "-Xmx2G", meteor_mod.METEOR_JAR, "-", "-", "-stdio",
                                      "-l", "en", "-norm"], cwd=self.cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def submit(self, gts: dict, res: dict) -> None:
        """Start feeding SCORE lines; the JVM works while the caller computes other metrics."""
        self._ids = list(gts)
        lines = []
        for i in self._ids:
            hyp = res[i][0].replace("|||", "").replace("  ", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(gts[i]), hyp)) + "\n")

        def write():
            try:
                self.proc.stdin.write("".join(lines).encode())
                self.proc.stdin.flush()
            except BrokenPipeError:  # reported by collect() as an early end
                pass

        self._writer = threading.Thread(target=write, daemon=True)
        self._writer.start()

    def collect(self) -> tuple[float, list[float]]:
        """Corpus and per-segment METEOR of the submitted captions."""
        ids = self._ids
        stats = [self.proc.stdout.readline().decode().strip() for _ in ids]
        self._writer.join()
        if any(not s for s in stats):
            raise RuntimeError("METEOR process ended early; run `java -jar meteor-1.5.jar` to see why")
        self.proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        self.proc.stdin.flush()
        scores = [float(self.proc.stdout.readline().strip()) for _ in ids]
        score = float(self.proc.stdout.readline().strip())
        return score, scores

    def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        """Same inputs and outputs as ``pycocoevalcap.meteor.meteor.Meteor.compute_score``."""
        self.submit(gts, res)
        return self.collect()

    def close(self):
        """Stop the JVM."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def caption_scores(predictions: dict, references: dict, per_item: bool = False):
    """Corpus BLEU-1..4, METEOR, ROUGE_L, CIDEr of ``predictions {id: str}`` vs ``references {id: [str]}``.

    All references of an id are used. With ``per_item`` also returns ``{metric: {id: score}}``
    (sentence-level scores; the corpus ROUGE_L and CIDEr are their mean, BLEU and METEOR are not).
    """
    out = caption_scores_many({"_": predictions}, references)["_"]
    return out if per_item else out[0]


def caption_scores_many(prediction_sets: dict, references: dict) -> dict:
    """``{name: (scores, per_item)}`` for several prediction sets (e.g. two captioners) on the same
    references, each scored as its own corpus, with one tokenizer JVM and one METEOR JVM in all."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    if not prediction_sets:
        raise CaptionInputError("caption_scores_many needs at least one prediction set, got none")
    for preds in prediction_sets.values():
        ids = _check(preds, references)
    java_executable()
    results = {}
    # The METEOR JVM spends seconds loading its paraphrase table: start it first, tokenize and run the
    # pure-Python scorers while it loads and scores.
    with BatchMeteor() as meteor:
        res_sets, gts = tokenize_many(prediction_sets, references)
        for name, res in res_sets.items():
            meteor.submit(gts, res)
            out, items = {}, {}
            bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
            for n in range(4):
                out[f"BLEU-{n + 1}"] = float(bleu[n])
                items[f"BLEU-{n + 1}"] = dict(zip(ids, map(float, bleu_items[n]), strict=True))
            for metric, scorer in (("ROUGE_L", Rouge()), ("CIDEr", Cider())):
                score, scores = scorer.compute_score(gts, res)
                out[metric], items[metric] = float(score), dict(zip(ids, map(float, scores), strict=True))
            score, scores = meteor.collect()
            out["METEOR"], items["METEOR"] = float(score), dict(zip(ids, map(float, scores), strict=True))
            results[name] = ({k: out[k] for k in CAPTION_METRICS}, items)
    return results
