"""A tiny hand-built evaluation problem shared by the evaluation tests: rendered meshes, photos, captions."""
import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np

CATS = {"chair": "box", "table": "cylinder", "lamp": "sphere"}


class FakeRun:
    """The parts of a Sacred ``_run`` a stage uses."""

    def __init__(self):
        self.info, self.scalars, self.artifacts = {}, [], {}

    def log_scalar(self, name, value, step=None):
        self.scalars.append((name, value, step))

    def add_artifact(self, path, name=None):
        self.artifacts[name or Path(path).name] = Path(path).read_bytes()


def make_prepared(root: Path):
    """Three categories x 4 shapes as OBJ files, captions, a split, photos with bbox + mask for test."""
    import trimesh
    from PIL import Image

    make = {"box": lambda i: trimesh.creation.box((1, 1 + 0.3 * i, 0.5)),
            "cylinder": lambda i: trimesh.creation.cylinder(0.5 + 0.1 * i, 1.0),
            "sphere": lambda i: trimesh.creation.icosphere(2, 0.5 + 0.1 * i)}
    shapes, captions, split = [], {}, {"train": [], "val": [], "test": []}
    for cat, prim in CATS.items():
        for i in range(4):
            key = f"model/{cat}/{cat}_{i}/model.obj"
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            make[prim](i).export(root / key)
            shapes.append(SimpleNamespace(key=key, category=cat, mesh_path=key, photos=[]))
            captions[key] = [f"a {cat}", f"a plain {cat} number {i}"]
            split["test" if i == 3 else "val" if i == 2 else "train"].append(key)
    photos = []
    for j, key in enumerate(split["test"]):
        img = np.full((80, 100, 3), 200, np.uint8)
        img[20:60, 30:70] = (40 * j, 90, 160)
        mask = np.zeros((80, 100), np.uint8)
        mask[20:60, 30:70] = 255
        Image.fromarray(img).save(root / f"img_{j}.png")
        Image.fromarray(mask).save(root / f"mask_{j}.png")
        photos.append(SimpleNamespace(img=f"img_{j}.png", mask=f"mask_{j}.png", bbox=[28, 18, 72, 62],
                                      model=key, category=key.split("/")[1], bad_mask=False))
    dataset = SimpleNamespace(shapes=shapes, photos=photos, fingerprint="fp-test")
    return SimpleNamespace(root=str(root), dataset=dataset,
                           split=SimpleNamespace(split_id="split-test", **split), captions=captions)


def make_setup(root: Path, rig: str = "ring8"):
    """(config dict, prepared, renders) of ``make_prepared`` rendered at 64 px with ``rig``; clip3d-tiny,
    untrained, on CPU; a small captioner and 50 bootstrap resamples."""
    from harness.commands.render import render_stage
    from harness.experiment import ex

    cfg = copy.deepcopy(dict(ex.configurations[0]()))
    cfg["render"].update(out=str(root / "renders"), size=64, rig=rig, workers=1)
    cfg["model"].update(name="clip3d-tiny", device="cpu")
    cfg["train"].update(mode="none", features_dir=str(root / "features"))
    small = {"epochs": 2, "d_model": 32, "layers": 1, "beam_size": 2}
    cfg["eval"].update(bootstrap=50, captioner={**cfg["eval"]["captioner"], **small})
    prepared = make_prepared(root)
    renders = render_stage(cfg, prepared=prepared)
    return cfg, prepared, renders
