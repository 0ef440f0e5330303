"""The Java processes behind the caption metrics, kept for the life of the process.

pycocoevalcap starts a JVM for the PTB tokenizer per ``tokenize`` call and its METEOR wrapper does
one request/response round trip per caption. Here a process keeps one PTB tokenizer JVM
(``PtbTokenizerJvm``) and one METEOR 1.5 JVM (``BatchMeteor``, fed through a writer thread so the
pipe never waits on a round trip) in ``jvm_pool()``: started lazily, or early with ``prestart()``;
reused by every evaluation the process makes; a dead one is restarted; both stopped at exit.
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import subprocess
import threading

JAVA_INSTALL_HINT = ("install a Java runtime (Debian/Ubuntu: `apt-get install default-jre-headless`, "
                     "conda: `conda install openjdk`) and make sure `java` is on PATH")


class JavaNotFoundError(RuntimeError):
    """The METEOR scorer and the PTB tokenizer of pycocoevalcap need a Java runtime."""


class JvmDiedError(RuntimeError):
    """A METEOR or tokenizer JVM ended (or answered out of protocol) in the middle of a request."""


def java_executable() -> str:
    """Path of ``java`` on PATH, or one clear error saying how to install it."""
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError(f"captioning metrics (METEOR 1.5, PTB tokenizer) need Java, "
                                f"but no `java` is on PATH; {JAVA_INSTALL_HINT}")
    return java


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
        # the parallel collector loads the paraphrase table with ~2 s less CPU than the default G1
        # (9.6-10.0 s against 11.3-11.7 s, docs/PERFORMANCE.md); the scores do not depend on it
        cmd = [java, "-XX:+UseParallelGC", "-jar", "-Xmx2G", meteor_mod.METEOR_JAR, "-", "-", "-stdio",
               "-l", "en", "-norm"]
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)

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

    def _live(self, kind: str, start):
        """The running JVM of ``kind`` (``meteor`` | ``tokenizer``), started again (``start()``) when
        there is none or it died."""
        jvm = getattr(self, f"_{kind}")
        if jvm is None or not jvm.alive():
            if jvm is not None:
                jvm.close()
            self._register()
            jvm = start()
            setattr(self, f"_{kind}", jvm)
            self.starts[kind] += 1
        return jvm

    def _live_meteor(self) -> BatchMeteor:
        return self._live("meteor", BatchMeteor)

    def _live_tokenizer(self) -> PtbTokenizerJvm:
        return self._live("tokenizer", PtbTokenizerJvm)

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
