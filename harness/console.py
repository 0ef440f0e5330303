"""What ``python -m harness`` shows on the console: Sacred's run lines, our warnings, one summary.

- ``setup()`` (called by ``harness/__main__.py`` before Sacred is imported): Sacred's
  ``pkg_resources is deprecated`` warning is ignored, and the root logger gets the one console
  handler, which keeps third-party INFO records (open_clip's model factory logs eight of them per
  model) and Sacred's ``Result: {...}`` record (one ~15,000-character line) off the console.
  ``--loglevel DEBUG`` shows the third-party records again.
- ``summary_lines(run)``: what a finished run prints instead of the result dump: status, headline
  metrics with their 95 % CIs, and where the run was recorded.
- ``input_error(exc)`` / ``one_line(exc)``: bad input the harness diagnoses (a config value, a
  broken dataset) is printed as one ``error: ...`` line rather than at the end of a traceback.

No line this module writes is longer than ``MAX_LINE`` characters.
"""
from __future__ import annotations

import logging
import sys
import warnings

MAX_LINE = 1000
FORMAT = "%(levelname)s - %(name)s - %(message)s"  # Sacred's own console format
# Loggers whose INFO records belong on the console: the experiment's run logger (Sacred names it
# after the experiment) and our packages. Everything else needs WARNING, or --loglevel DEBUG.
OWN_LOGGERS = ("clip3d", "harness", "models", "renderers", "leaderboard", "benchmarks")
EXIT_INPUT_ERROR = 2  # bad input (config value, dataset): like a usage error


def ignore_import_warnings() -> None:
    """Sacred imports pkg_resources (setuptools < 81 warns on every start); nothing to act on here."""
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)


def clip(line: str, limit: int = MAX_LINE) -> str:
    """``line`` cut to ``limit`` characters, saying how much was left out."""
    if len(line) <= limit:
        return line
    kept = limit - 40  # the note below is shorter than 40 characters
    return line[:kept] + f" ... ({len(line) - kept} more characters)"


class ConsoleFilter(logging.Filter):
    """Drops Sacred's ``Result: ...`` record (the summary replaces it), open_clip's warning that a
    model was built without pretrained weights (for our from-scratch configs that is the point; the
    run records ``pretrained``), and third-party records below WARNING unless the root logger is at
    DEBUG (``--loglevel DEBUG``)."""

    def __init__(self, own=OWN_LOGGERS):
        super().__init__()
        self.own = tuple(own)

    def _is_own(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.own)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return "No pretrained weights loaded" not in record.getMessage()
        if not self._is_own(record.name):
            return logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        msg = record.msg
        return not (isinstance(msg, str) and msg.startswith("Result: "))


class ConsoleHandler(logging.StreamHandler):
    """A stream handler writing to the ``sys.stderr`` of the moment.

    While a run captures its output (capture mode ``sys``) ``sys.stderr`` is Sacred's tee, so the
    run's log lines land in its ``captured_out`` as well as on the console.
    """

    def __init__(self):
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter(FORMAT))
        self.addFilter(ConsoleFilter())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):  # logging.StreamHandler.__init__ and setStream assign it
        pass

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(clip(line) for line in super().format(record).splitlines())


def setup_logging(level: int = logging.INFO) -> None:
    """Give the root logger the console handler (once), at Sacred's default level INFO.

    Sacred only configures logging when the root logger has no handler, so it uses this one; its
    ``--loglevel`` option still sets the root logger's level.
    """
    root = logging.getLogger()
    if any(isinstance(h, ConsoleHandler) for h in root.handlers):
        return
    root.addHandler(ConsoleHandler())
    root.setLevel(level)


def setup() -> None:
    """Everything the command line needs before Sacred is imported."""
    ignore_import_warnings()
    setup_logging()


# --------------------------------------------------------------------------------------------
# bad input: one line


def input_error_types() -> tuple:
    """Exception types that mean "your input is wrong" and carry a message saying how to fix it.

    Only modules already imported are looked at: an error of a module never imported was not raised.
    """
    names = {
        "models.errors": ("ModelsError",),  # ConfigError, unknown model/tag, weights missing or wrong
        "harness.data.pix3d": ("Pix3DError",),
        "harness.data.formats.base": ("DatasetError",),
        "harness.data.splits": ("SplitError",),
        "harness.data.captions": ("CaptionsError",),
        "harness.data.synth": ("SynthError",),
        "harness.metrics.captioning": ("JavaNotFoundError",),
        "renderers.errors": ("EGLUnavailableError",),
        "runstore.errors": ("StoreError",),
    }
    types = []
    for module, attrs in names.items():
        mod = sys.modules.get(module)
        types += [getattr(mod, a) for a in attrs if mod is not None and hasattr(mod, a)]
    return tuple(types)


def input_error(exc: BaseException) -> bool:
    """Whether ``exc`` is bad input the harness diagnoses with a message of its own."""
    types = input_error_types()
    return bool(types) and isinstance(exc, types)


def one_line(exc: BaseException) -> str:
    """``error: <message>`` on one line of at most ``MAX_LINE`` characters."""
    parts = [part.strip() for part in str(exc).splitlines() if part.strip()]
    return clip("error: " + ("; ".join(parts) or type(exc).__name__))


def report_input_error(exc: BaseException, file=None) -> None:
    print(one_line(exc), file=file or sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# the summary of a finished run

RETRIEVAL = ("i2t", "t2i", "t2s", "photo2shape")
ZERO_SHOT = ("zs_photo", "zs")  # (longest first: zs_photo_top1 is a photo figure)
CAPTIONING = ("cap_ret", "cap_gen")


def _num(value, decimals: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.{decimals if abs(value) < 100 else 1}f}"


def _metric(name: str, value, ci95: dict, label: str) -> str:
    decimals = 1 if name.endswith("medR") else 3  # a median rank: 5.0, 1.5
    ci = ci95.get(name)
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f"{label} {_num(value, decimals)} [{_num(ci[0], decimals)}, {_num(ci[1], decimals)}]"
    return f"{label} {_num(value, decimals)}"


def metric_lines(metrics: dict, ci95: dict | None = None) -> list[str]:
    """One line per group (i2t, t2i, t2s, photo2shape, zs, zs_photo, cap_ret, cap_gen, other):
    ``name value [lo, hi]``."""
    ci95 = ci95 or {}
    groups: dict[str, list[str]] = {}
    for name, value in metrics.items():
        if isinstance(value, (dict, list)):
            continue
        group = next((g for g in CAPTIONING + RETRIEVAL + ZERO_SHOT if name.startswith(g + "_")), "other")
        label = name[len(group) + 1:] if group != "other" else name
        groups.setdefault(group, []).append(_metric(name, value, ci95, label))
    order = [g for g in RETRIEVAL + ("zs", "zs_photo") + CAPTIONING + ("other",) if g in groups]
    width = max((len(g) for g in order), default=0)
    return [clip(f"  {g:<{width}}  " + "  ".join(groups[g])) for g in order]


SWEEP_HEADLINE = ("i2t_R@1", "t2i_R@1", "t2s_RR@1", "photo2shape_R@1", "zs_top1")


def sweep_lines(result: dict) -> list[str]:
    """The view-count sweep and rotations of an evaluation's ``result``, a few headline metrics each:
    ``by views (1/2/4/12)  i2t_R@1 0.11/0.17/0.22/0.28 ...``, ``rotated so3  i2t_R@1 0.22 (upright 0.28)``."""
    lines = []
    by_views = result.get("by_views") if isinstance(result.get("by_views"), dict) else {}
    if by_views:
        counts = list(by_views)
        parts = [f"{m} " + "/".join(_num(by_views[n].get(m)) for n in counts)
                 for m in SWEEP_HEADLINE if all(m in by_views[n] for n in counts)]
        lines.append(clip(f"  by views ({'/'.join(counts)})  " + "  ".join(parts)))
    by_rotation = result.get("by_rotation") if isinstance(result.get("by_rotation"), dict) else {}
    upright = result.get("metrics") or {}
    for kind, figures in by_rotation.items():
        parts = [f"{m} {_num(figures[m])}" + (f" (upright {_num(upright[m])})" if m in upright else "")
                 for m in SWEEP_HEADLINE if m in (figures or {})]
        lines.append(clip(f"  rotated {kind}  " + "  ".join(parts)))
    return lines


def command_name(run) -> str:
    try:
        return run.main_function.signature.name
    except AttributeError:
        return str(run.meta_info.get("command") or "run")


def where_recorded(run) -> list[str]:
    """Where the run's record went: the store (masked URL, db, id) or the spool folder it waits in."""
    lines = []
    for obs in getattr(run, "observers", []):
        spooled, connection = getattr(obs, "run", None), getattr(obs, "connection", None)
        if spooled is not None and connection is not None:  # harness.tracking.SpoolingMongoObserver
            state = getattr(spooled, "state", None) or {}
            run_id = state.get("run_id", run._id)
            if state.get("synced"):
                lines.append(f"recorded in {connection.describe()} (db {connection.db_name}, run {run_id})")
            else:
                lines.append(f"NOT in the store {connection.describe()}: the run is kept in {spooled.path}; "
                             f"upload it with `python -m harness sync`")
        elif hasattr(obs, "dir"):  # Sacred's FileStorageObserver
            lines.append(f"recorded in {obs.dir}")
        else:
            lines.append(f"recorded by {type(obs).__name__}")
    return [clip(line) for line in lines] or ["not recorded (no observer: unobserved run)"]


def _render_line(result: dict) -> str:
    line = (f"  renders {result.get('render_dir')}: {result.get('total', 0)} shapes, "
            f"{result.get('rendered', 0)} rendered, {result.get('skipped', 0)} already there, "
            f"{result.get('failed', 0)} failed")
    if result.get("views_per_s"):
        line += f", {_num(float(result['views_per_s']))} views/s"
    failures = result.get("failures") or {}
    if failures:
        first = next(iter(failures.items()))
        line += f" (e.g. {first[0]}: {first[1]})"
    return clip(line)


def summary_lines(run) -> list[str]:
    """The few lines a finished run prints instead of Sacred's ``Result: {...}`` dump."""
    result = run.result
    run_id = run._id
    for obs in getattr(run, "observers", []):
        state = getattr(getattr(obs, "run", None), "state", None) or {}
        run_id = state.get("run_id", run_id)
    elapsed = ""
    if run.start_time is not None and run.stop_time is not None:
        elapsed = f" in {round((run.stop_time - run.start_time).total_seconds())} s"
    head = f"run {run_id if run_id is not None else '(no id)'} {run.status}{elapsed} ({command_name(run)})"
    lines = [head]
    if isinstance(result, dict):
        if {"render_dir", "total"} <= set(result):
            lines.append(_render_line(result))
        if result.get("checkpoint"):
            lines.append(clip(f"  checkpoint {result['checkpoint']}"))
        if isinstance(result.get("params"), dict) and result["params"]:
            lines.append(clip(f"  params {result['params']}"))
        if isinstance(result.get("metrics"), dict) and result["metrics"]:
            lines += metric_lines(result["metrics"], result.get("ci95"))
            lines += sweep_lines(result)
        if isinstance(result.get("val"), dict) and result["val"]:
            lines += metric_lines(result["val"])
        shown = {"metrics", "ci95", "checkpoint", "params", "val", "per_category", "throughput",
                 "provenance", "failures", "by_views", "by_rotation"}
        if not {"render_dir", "total"} <= set(result):
            rest = [f"{k} {_num(v)}" for k, v in result.items()
                    if k not in shown and isinstance(v, (str, int, float, bool))]
            if rest:
                lines.append(clip("  " + "  ".join(rest)))
    elif result is not None:
        lines.append(clip(f"  result {result!r}"))
    return lines + where_recorded(run)


def print_summary(run, file=None) -> None:
    """Print the run's summary (nothing for unobserved runs without a result, e.g. print_config)."""
    if run is None or getattr(run, "queue_only", False):
        return
    if run.result is None and not getattr(run, "observers", None):
        return
    out = file or sys.stdout
    print("\n".join(summary_lines(run)), file=out, flush=True)
