"""Shape-disjoint splits, stratified by category, deterministic from (dataset fingerprint, seed).

Photos follow their shape. Test shapes must never reach training or model selection:
:meth:`Split.check_not_test` is the guard the training stage calls on every key it uses.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from registries import choose

SPLITS = ("train", "val", "test")


class SplitError(ValueError):
    """Bad split fractions or split file; the message names the value and the fix."""


class SplitLeakError(RuntimeError):
    """A test shape was about to be used for training or model selection."""


@dataclass(frozen=True)
class Split:
    """Shape keys per split (sorted tuples) and a short id naming how they were made."""

    train: tuple
    val: tuple
    test: tuple
    split_id: str
    unassigned: tuple = ()  # shapes a split file does not list (not used anywhere)
    _index: dict = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {k: n for n in SPLITS for k in getattr(self, n)})

    def of(self, key: str) -> str:
        """Which split the shape ``key`` is in (KeyError when in none)."""
        return self._index[key]

    def keys(self, name: str) -> tuple:
        """The shape keys of split ``name`` (train | val | test)."""
        choose("split", name, SPLITS, SplitError)
        return getattr(self, name)

    def photos(self, dataset, name: str) -> list:
        """The photos whose shape is in split ``name`` (photos follow their shape)."""
        keys = set(self.keys(name))
        return [p for p in dataset.photos if p.model in keys]

    def check_not_test(self, keys, purpose: str = "training") -> None:
        """Raise SplitLeakError if any of ``keys`` is a test shape (call before training / selection)."""
        leaked = sorted(set(keys) & set(self.test))
        if leaked:
            raise SplitLeakError(f"{len(leaked)} test shape(s) used for {purpose}, e.g. {leaked[0]!r}; "
                                 "test shapes are for the final evaluation only")

    def as_dict(self) -> dict:
        """{"split_id", "train", "val", "test"} as plain lists (for run records and split files)."""
        return {"split_id": self.split_id, **{n: list(getattr(self, n)) for n in SPLITS}}


def _check_fractions(fractions: dict) -> dict:
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise SplitError(f"data.split has unknown key(s) {sorted(unknown)}; allowed: {', '.join(SPLITS)}")
    fr = {n: float(fractions.get(n, 0.0)) for n in SPLITS}
    if any(v < 0 for v in fr.values()) or fr["train"] <= 0 or abs(sum(fr.values()) - 1.0) > 1e-6:
        raise SplitError(f"data.split = {fractions}: fractions must be >= 0, train > 0, summing to 1")
    return fr


def _counts(n: int, fr: dict) -> dict:
    """Shapes per split for a category of ``n``: largest remainder; used splits non-empty when possible."""
    raw = {k: n * fr[k] for k in SPLITS}
    c = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(SPLITS, key=lambda k: (-(raw[k] - c[k]), SPLITS.index(k)))[: n - sum(c.values())]:
        c[k] += 1
    # small categories: give test, then val, one shape each before train takes them all
    for k in ("test", "val"):
        if fr[k] > 0 and c[k] == 0 and c["train"] > 1:
            c[k], c["train"] = 1, c["train"] - 1
    return c


def _seed_of(*parts) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(map(str, parts)).encode()).digest()[:8], "little")


def make_split(dataset, fractions=None, seed: int = 0, split_file=None) -> Split:
    """Split ``dataset``'s shapes into train / val / test.

    fractions: {"train": .7, "val": .1, "test": .2} (data.split). Each category is shuffled with a
    generator seeded by (dataset fingerprint, seed, category), so the split is the same in every
    process and changes with the seed. split_file: a JSON {"train": [model paths], ...} (a published
    split) used instead; every listed path must be a shape of the dataset and in one split only.
    A dataset with its own split (``dataset.provided_split``: ModelNet's folders, Text2Shape's files)
    keeps it: see :func:`_from_provided`.
    """
    if split_file is not None:
        return _from_file(dataset, Path(split_file))
    fr = _check_fractions(fractions or {"train": 0.7, "val": 0.1, "test": 0.2})
    if getattr(dataset, "provided_split", None):
        return _from_provided(dataset, dataset.provided_split, fr, seed)
    out = {n: [] for n in SPLITS}
    by_cat: dict[str, list] = {}
    for s in dataset.shapes:
        by_cat.setdefault(s.category, []).append(s.key)
    for cat in sorted(by_cat):
        keys = sorted(by_cat[cat])
        order = np.random.default_rng(_seed_of(dataset.fingerprint, seed, cat)).permutation(len(keys))
        c = _counts(len(keys), fr)
        start = 0
        for n in SPLITS:
            out[n] += [keys[j] for j in order[start:start + c[n]]]
            start += c[n]
    made_from = json.dumps([dataset.fingerprint, seed, fr], sort_keys=True)
    sid = hashlib.sha256(made_from.encode()).hexdigest()[:12]
    return Split(*(tuple(sorted(out[n])) for n in SPLITS), split_id=sid)


def _from_provided(dataset, provided: dict, fr: dict, seed: int) -> Split:
    """The dataset's own split. When it names no val shape and ``fr["val"] > 0``, val is carved from
    each category's train shapes (``val / (train + val)`` of them, at least one when the category has
    two or more), seeded by (fingerprint, seed, category). Shapes it does not list are unassigned."""
    out = {n: [] for n in SPLITS}
    unassigned = []
    carve = fr["val"] > 0 and "val" not in set(provided.values())
    pool: dict[str, list] = {}
    for s in dataset.shapes:
        name = provided.get(s.key)
        if name is None:
            unassigned.append(s.key)
        elif name not in SPLITS:
            raise SplitError(f"dataset split of {s.key!r} is {name!r}; expected one of {', '.join(SPLITS)}")
        elif name == "train" and carve:
            pool.setdefault(s.category, []).append(s.key)
        else:
            out[name].append(s.key)
    share = fr["val"] / (fr["train"] + fr["val"]) if carve else 0.0
    for cat in sorted(pool):
        keys = sorted(pool[cat])
        order = np.random.default_rng(_seed_of(dataset.fingerprint, seed, cat, "val")).permutation(len(keys))
        n_val = int(round(len(keys) * share))
        n_val = max(n_val, 1) if len(keys) > 1 else 0
        out["val"] += [keys[j] for j in order[:n_val]]
        out["train"] += [keys[j] for j in order[n_val:]]
    made_from = json.dumps(["provided", dataset.fingerprint, seed, share], sort_keys=True)
    sid = "provided-" + hashlib.sha256(made_from.encode()).hexdigest()[:12]
    return Split(*(tuple(sorted(out[n])) for n in SPLITS), split_id=sid, unassigned=tuple(sorted(unassigned)))


def _from_file(dataset, path: Path) -> Split:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SplitError(f"split file {path} not found (data.split_file)") from err
    except json.JSONDecodeError as err:
        raise SplitError(f"split file {path} is not valid JSON: {err.msg} at line {err.lineno}") from err
    if not isinstance(data, dict) or not set(data) <= set(SPLITS) or "train" not in data:
        raise SplitError(f"split file {path}: expected an object with keys train, val, test "
                         "(val and test optional)")
    known = {s.key for s in dataset.shapes}
    seen: dict[str, str] = {}
    for n in SPLITS:
        keys = data.get(n, [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise SplitError(f"split file {path}: '{n}' must be a list of model paths")
        for k in keys:
            if k not in known:
                raise SplitError(f"split file {path}: '{n}' lists {k!r}, which is not a shape of the dataset "
                                 f"at {dataset.root} (model paths look like model/chair/NAME/model.obj)")
            if k in seen and seen[k] != n:
                raise SplitError(f"split file {path}: {k!r} is in both '{seen[k]}' and '{n}'")
            seen[k] = n
    sid = "file-" + hashlib.sha256(json.dumps({n: sorted(set(data.get(n, []))) for n in SPLITS}).encode()
                                   ).hexdigest()[:12]
    return Split(*(tuple(sorted(set(data.get(n, [])))) for n in SPLITS), split_id=sid,
                 unassigned=tuple(sorted(known - set(seen))))
