"""The records every format loads into: Shape (one mesh), LoadReport (what loading did), Dataset.

Format-neutral: Pix3D, ModelNet, ShapeNet and Objaverse readers (``harness.data.formats``) all return
a :class:`Dataset`; render, train and evaluate read only these records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Pix3D's categories, in Pix3D's order (the order ``Dataset.categories`` lists them first).
PIX3D_CATEGORIES = ("bed", "bookcase", "chair", "desk", "misc", "sofa", "table", "tool", "wardrobe")
NO_PHOTOS = ()  # the shared, immutable ``photos`` of shapes from formats without photos
QUIRK_EXAMPLES = 5  # examples kept per quirk in a report


@dataclass(slots=True)  # slots: an Objaverse-scale dataset holds a million of them
class Shape:
    """One mesh, keyed by its model path relative to the root (never by basename)."""

    key: str
    category: str
    name: str  # the model folder (e.g. IKEA_MALM_2) or model id; variants in one folder share it
    variant: str  # the mesh file's stem ("model" for model.obj)
    # the mesh file: absolute, or relative to Dataset.root (Objaverse: the key itself, so a million
    # shapes build no Path objects); Dataset.mesh_file(shape) resolves it
    mesh_path: Path | str
    source: str | None = None
    content_hash: str | None = None  # mesh + materials + textures (renders are reused only on a match)
    photos: list = field(default_factory=list)  # NO_PHOTOS for formats without photos
    up_axis: str = "y"  # the mesh's up axis (x | y | z); the renderer turns it to +y


@dataclass
class LoadReport:
    """What loading did: entries read, skipped (strict=False) with reasons, excluded by filters, and
    the quirks of the layout that were met (counted, with a few examples each)."""

    entries: int = 0
    loaded: int = 0
    skipped: list = field(default_factory=list)  # {"index", "field", "value", "reason"} (or "path")
    excluded_truncated: int = 0
    excluded_occluded: int = 0
    bad_masks: list = field(default_factory=list)
    quirks: dict = field(default_factory=dict)  # {quirk: count}, e.g. {"merged OFF header": 3}
    examples: dict = field(default_factory=dict)  # {quirk: [the first few paths / ids]}

    def quirk(self, name: str, example=None, count: int = 1) -> None:
        """Count ``count`` occurrences of quirk ``name`` (keeping ``example`` among the first few)."""
        self.quirks[name] = self.quirks.get(name, 0) + count
        kept = self.examples.setdefault(name, [])
        if example is not None and len(kept) < QUIRK_EXAMPLES:
            kept.append(str(example))

    def as_dict(self) -> dict:
        """Plain-dict form (for run records)."""
        out = {"entries": self.entries, "loaded": self.loaded, "skipped": len(self.skipped),
               "excluded_truncated": self.excluded_truncated, "excluded_occluded": self.excluded_occluded,
               "bad_masks": list(self.bad_masks)}
        if self.quirks:  # Pix3D's record stays as it was
            out["quirks"] = dict(self.quirks)
            out["quirk_examples"] = {k: list(v) for k, v in self.examples.items()}
        return out


@dataclass
class Dataset:
    """A loaded dataset of any format (``format`` names it: pix3d | modelnet40 | shapenet | objaverse)."""

    root: Path
    shapes: list
    photos: list
    fingerprint: str
    report: LoadReport
    format: str = "pix3d"
    # the dataset's own split {shape key: "train" | "val" | "test"} (ModelNet folders, Text2Shape's
    # split files); make_split keeps it and carves val from train when it has none. None: seeded split.
    provided_split: dict | None = None
    # captions shipped with the dataset {shape key: (caption, ...)} (Text2Shape, Cap3D); shapes it does
    # not list get class-level captions. None (Pix3D): captions from attributes / metadata and geometry.
    native_captions: dict | None = None
    caption_source: str | None = None  # what native_captions are, e.g. "text2shape", "cap3d"
    # shapes without a content_hash are identified by their file's (size, mtime) instead of its bytes:
    # for datasets whose files never change under a key (Objaverse: a uid is one immutable object),
    # where reading every GLB's bytes at render time would cost hours at 800k objects
    stamp_identity: bool = False

    def __post_init__(self):
        self._by_key = None  # built on first use: a million-shape listing should not pay for it

    def shape(self, key: str) -> Shape:
        """The shape with model path ``key``."""
        if self._by_key is None:
            self._by_key = {s.key: s for s in self.shapes}
        return self._by_key[key]

    def mesh_file(self, shape: Shape) -> Path:
        """The absolute path of ``shape``'s mesh file."""
        path = Path(shape.mesh_path)
        return path if path.is_absolute() else Path(self.root) / path

    @property
    def categories(self) -> list[str]:
        """Categories present: Pix3D's in Pix3D's order; another format's sorted by name."""
        present = {s.category for s in self.shapes}
        if self.format != "pix3d":
            return sorted(present)
        return [c for c in PIX3D_CATEGORIES if c in present]
