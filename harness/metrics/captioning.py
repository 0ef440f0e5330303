"""Captioning metrics: BLEU-1..4, METEOR 1.5, ROUGE_L, CIDEr exactly as pycocoevalcap computes them.

pycocoevalcap starts a JVM for the PTB tokenizer per ``tokenize`` call and its METEOR wrapper does
one request/response round trip per caption. Here a process keeps one PTB tokenizer JVM and one
METEOR JVM (``jvm_pool()``: started lazily, or early with ``prestart()``; reused by every evaluation
the process makes; a dead one is restarted; both stopped at exit). Predictions and references are
tokenized line by line (so identical output), METEOR is fed through a writer thread so the pipe never
waits on a round trip. The figures are those of pycocoevalcap's own scorers (tested). SPICE is left
out: it needs a separate download.
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
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


class JvmDiedError(RuntimeError):
    """A METEOR or tokenizer JVM ended (or answered out of protocol) in the middle of a request."""


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
    """PTB-tokenize several prediction sets and their references with the process's tokenizer JVM
    (line by line, so each caption gets exactly the tokens a separate run would give)."""
    java_executable()
    ids = list(references)
    # Newlines would split a caption over two tokenizer lines; empty lines are dropped by the tokenizer.
    clean = lambda s: s.replace("\n", " ").strip() or "<empty>"  # noqa: E731
    joint = {("res", name, i): [clean(preds[i])] for name, preds in prediction_sets.items() for i in ids}
    joint.update({("gts", i): [clean(r) for r in references[i]] for i in ids})
    tok = jvm_pool().tokenize(joint)
    res = {name: {i: tok[("res", name, i)] for i in ids} for name in prediction_sets}
    return res, {i: tok[("gts", i)] for i in ids}


def _ptb_postprocess(line: str) -> str:
    """pycocoevalcap's step after the tokenizer: drop punctuation tokens."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS
    return " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)


def ptb_tokenize_once(captions: dict) -> dict:
    """``{key: [caption]}`` -> ``{key: [tokens]}`` through pycocoevalcap's own PTBTokenizer (one JVM run
    per call): the reference the tokenizer JVM is tested against, and its fallback."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})


class _TokenizerMisaligned(RuntimeError):
    """The tokenizer's output lines did not line up with the input lines (e.g. a caption with a \\r)."""


class PtbTokenizerJvm:
    """Stanford's PTBTokenizer (pycocoevalcap's jar and options) kept running on stdin/stdout.

    The tokenizer writes through buffers it flushes only when full, so each request is framed by two
    marker lines and followed by filler lines that push its output out; the reader skips the filler
    of earlier requests. Output lines are checked against the markers: a request whose lines do not
    line up raises ``_TokenizerMisaligned`` (the caller then uses the one-shot tokenizer).
    """

    FILL = " ".join(["xqfill"] * 16) + "\n"
    FILL_LINES = 440  # ~49 KB of output: more than the tokenizer's two 8 KB output buffers
    _serial = itertools.count(1)

    def __init__(self):
        from pycocoevalcap.tokenizer import ptbtokenizer
        java = java_executable()
        self.cwd = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))
        cmd = [java, "-cp", ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR, "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase"]
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tokenize_lines(self, lines: list[str]) -> list[str]:
        """Raw tokenizer output line of each input line (lower-cased, PTB tokens, punctuation kept)."""
        n = next(self._serial)
        begin, end = f"xqbegin{n}", f"xqend{n}"
        payload = "".join(f"{line}\n" for line in [begin, *lines, end]) + self.FILL * self.FILL_LINES

        def write():
            try:
                self.proc.stdin.write(payload.encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):  # seen by the reader as an early end
                pass

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        line = self._readline()
        while line != begin:
            if line.replace("xqfill", "").strip():  # neither filler nor our marker: out of step
                raise JvmDiedError(f"PTB tokenizer answered out of protocol: {line[:80]!r}")
            line = self._readline()
        out = [self._readline() for _ in lines]
        tail = self._readline()
        if tail != end or any(line in (begin, end) for line in out):
            raise _TokenizerMisaligned("tokenizer output lines do not line up with the captions")
        writer.join()  # the JVM has read the request (its answer is in); on an error the caller stops it
        return out

    def _readline(self) -> str:
        raw = self.proc.stdout.readline()
        if not raw:
            raise JvmDiedError("PTB tokenizer JVM ended during a request")
        return raw.decode("utf-8").rstrip("\n")

    def close(self) -> None:
        """Stop the JVM."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            self.proc.kill()
        self.proc.wait()


class BatchMeteor:
    """pycocoevalcap's METEOR 1.5 process, fed by a writer thread: one JVM for all captions."""

    def __init__(self):
        from pycocoevalcap.meteor import meteor as meteor_mod
        java = java_executable()
        self.cwd = os.path.dirname(os.path.abspath(meteor_mod.__file__))
        self.proc = subprocess.Popen([java, "-jar", "-Xmx2G", meteor_mod.METEOR_JAR, "-", "-", "-stdio",
                                      "-l", "en", "-norm"], cwd=self.cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

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
            except (BrokenPipeError, ValueError, OSError):  # reported by collect() as an early end
                pass

        self._writer = threading.Thread(target=write, daemon=True)
        self._writer.start()

    def collect(self) -> tuple[float, list[float]]:
        """Corpus and per-segment METEOR of the submitted captions."""
        ids = self._ids
        stats = [self.proc.stdout.readline().decode().strip() for _ in ids]
        self._writer.join()
        if any(not s for s in stats):
            raise JvmDiedError("METEOR process ended early; run `java -jar meteor-1.5.jar` to see why")
        try:
            self.proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
            self.proc.stdin.flush()
            scores = [float(self.proc.stdout.readline().strip()) for _ in ids]
            score = float(self.proc.stdout.readline().strip())
        except (BrokenPipeError, ValueError) as exc:  # a dead JVM: no pipe, or empty lines
            raise JvmDiedError(f"METEOR process ended during EVAL: {exc}") from exc
        return score, scores

    def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        """Same inputs and outputs as ``pycocoevalcap.meteor.meteor.Meteor.compute_score``."""
        self.submit(gts, res)
        return self.collect()

    def close(self):
        """Stop the JVM."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
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


class JvmPool:
    """One METEOR JVM and one PTB tokenizer JVM per process, started on first use and reused.

    Each JVM has a lock (one request at a time; other threads wait); a JVM found dead is started
    again, and a request it dies in is retried once on a new one. A request that fails half-way
    (an exception between submitting and collecting) stops its JVM, so no stale answer is ever read.
    A forked child never uses or stops its parent's JVMs. ``close()`` runs at exit.
    """

    def __init__(self):
        self._meteor: BatchMeteor | None = None
        self._tokenizer: PtbTokenizerJvm | None = None
        self._meteor_lock, self._tokenizer_lock = threading.RLock(), threading.RLock()
        self._owner = os.getpid()
        self.starts = {"meteor": 0, "tokenizer": 0}
        self._atexit = False

    def _check_owner(self) -> None:
        if os.getpid() != self._owner:  # forked: the JVMs and their pipes belong to the parent
            self._meteor = self._tokenizer = None
            self._meteor_lock, self._tokenizer_lock = threading.RLock(), threading.RLock()
            self._owner, self.starts = os.getpid(), {"meteor": 0, "tokenizer": 0}

    def _register(self) -> None:
        if not self._atexit:
            atexit.register(self.close)
            self._atexit = True

    def _live_meteor(self) -> BatchMeteor:
        if self._meteor is None or not self._meteor.alive():
            if self._meteor is not None:
                self._meteor.close()
            self._register()
            self._meteor = BatchMeteor()
            self.starts["meteor"] += 1
        return self._meteor

    def _live_tokenizer(self) -> PtbTokenizerJvm:
        if self._tokenizer is None or not self._tokenizer.alive():
            if self._tokenizer is not None:
                self._tokenizer.close()
            self._register()
            self._tokenizer = PtbTokenizerJvm()
            self.starts["tokenizer"] += 1
        return self._tokenizer

    def prestart(self) -> None:
        """Start both JVMs now (non-blocking) so their start-up overlaps the caller's other work."""
        self._check_owner()
        java_executable()
        with self._meteor_lock:
            self._live_meteor()
        with self._tokenizer_lock:
            self._live_tokenizer()

    @contextlib.contextmanager
    def meteor(self):
        """The live METEOR JVM, held for the ``with`` block; stopped if the block fails."""
        self._check_owner()
        with self._meteor_lock:
            meteor = self._live_meteor()
            try:
                yield meteor
            except BaseException:
                meteor.close()
                self._meteor = None
                raise

    def tokenize(self, captions: dict) -> dict:
        """``{key: [caption strings]}`` -> ``{key: [PTB tokens, punctuation removed]}``, as
        pycocoevalcap's PTBTokenizer gives them."""
        self._check_owner()
        keys = [k for k, v in captions.items() for _ in v]
        lines = [c.replace("\n", " ") for v in captions.values() for c in v]
        with self._tokenizer_lock:
            for attempt in (1, 2):
                tok = self._live_tokenizer()
                try:
                    out = tok.tokenize_lines(lines)
                    break
                except JvmDiedError:
                    tok.close()
                    self._tokenizer = None
                    if attempt == 2:
                        raise
                except _TokenizerMisaligned:
                    tok.close()  # its stream position is unknown now
                    self._tokenizer = None
                    return ptb_tokenize_once(captions)
                except BaseException:
                    tok.close()
                    self._tokenizer = None
                    raise
        result: dict = {}
        for key, line in zip(keys, out, strict=True):
            result.setdefault(key, []).append(_ptb_postprocess(line))
        return result

    def pids(self) -> dict:
        """Process ids of the running JVMs (None: not running)."""
        alive = lambda j: j.pid if j is not None and j.alive() else None  # noqa: E731
        return {"meteor": alive(self._meteor), "tokenizer": alive(self._tokenizer)}

    def close(self) -> None:
        """Stop both JVMs (this process's only); the next use starts new ones."""
        if os.getpid() != self._owner:
            return
        with self._meteor_lock:
            if self._meteor is not None:
                self._meteor.close()
                self._meteor = None
        with self._tokenizer_lock:
            if self._tokenizer is not None:
                self._tokenizer.close()
                self._tokenizer = None


_POOL = JvmPool()


def jvm_pool() -> JvmPool:
    """The process's JVM pool (METEOR 1.5 + PTB tokenizer), shared by every evaluation."""
    return _POOL


def caption_scores_many(prediction_sets: dict, references: dict) -> dict:
    """``{name: (scores, per_item)}`` for several prediction sets (e.g. two captioners) on the same
    references, each scored as its own corpus, with the process's tokenizer and METEOR JVMs."""
    if not prediction_sets:
        raise CaptionInputError("caption_scores_many needs at least one prediction set, got none")
    for preds in prediction_sets.values():
        ids = _check(preds, references)
    java_executable()
    pool = jvm_pool()
    for attempt in (1, 2):
        try:
            # The METEOR JVM may still be loading its paraphrase table: take it first, tokenize and
            # run the pure-Python scorers while it loads and scores.
            with pool.meteor() as meteor:
                res_sets, gts = tokenize_many(prediction_sets, references)
                return {name: _score_set(meteor, gts, res, ids) for name, res in res_sets.items()}
        except JvmDiedError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _score_set(meteor: BatchMeteor, gts: dict, res: dict, ids: list) -> tuple[dict, dict]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
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
    return {k: out[k] for k in CAPTION_METRICS}, items
