"""What every part of one evaluation reads (``EvalContext``) and the two helpers they share."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EvalContext:
    """One evaluation's inputs, built once by the evaluate stage and handed to its parts.

    ``items``: the evaluated split's ``ShapeItem``s (shapes with usable renders and captions);
    ``config``: the ``eval`` section; ``timings``: ``{step: seconds}``, filled by the parts (recorded
    as ``eval_<step>_seconds``); ``provenance``: what the parts add to ``result.provenance`` (e.g. the
    probe's C); ``memo``: work the parts share within one evaluation (see :meth:`once`).
    """

    bundle: Any
    prepared: Any
    render_dir: str
    render_config_id: str | None
    features_dir: Path
    items: list
    category_of: dict  # shape key -> category, every shape of the dataset
    ks: tuple
    resamples: int
    seed: int
    config: Any = None
    timings: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    memo: dict = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return [it.key for it in self.items]

    @property
    def on_cpu(self) -> bool:
        return self.bundle.device.type == "cpu"

    def once(self, name: str, compute):
        """``compute()``'s value, computed the first time ``name`` is asked for in this evaluation
        (photo embeddings, class embeddings: the view sweep and the rotation reuse them)."""
        if name not in self.memo:
            self.memo[name] = compute()
        return self.memo[name]

    def timed(self, step: str):
        """``with ctx.timed("retrieval"): ...`` adds the block's seconds to ``timings[step]``."""
        return timed(self.timings, step)


@contextlib.contextmanager
def timed(timings: dict, step: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - start


@contextlib.contextmanager
def compute_threads(n: int | None):
    """Torch intra-op threads and numpy's BLAS / OpenMP pools (scikit-learn's probe) set to ``n``
    inside the block (None: unchanged), restored after — so the evaluating thread keeps to its share
    of the CPU while the captioner trains beside it (the probe's small solves with OpenBLAS's two
    threads beside a busy core: 0.45 s; with one: 0.15 s)."""
    import torch

    before = torch.get_num_threads()
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)
