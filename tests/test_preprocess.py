"""FastPreprocess: bit-for-bit open_clip's transform on images at the model's size, the transform itself
on anything else."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import models
from models.preprocess import FastPreprocess


def _images(side: int, n: int = 6, mode: str = "RGB"):
    rng = np.random.default_rng(side)
    return [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).convert(mode)
            for _ in range(n)]


@pytest.fixture(scope="module")
def tiny():
    return models.create_model("clip3d-tiny", None, device="cpu", seed=0)


def test_model_size_images_are_bitwise_the_transforms(tiny):
    fast = tiny.preprocess
    assert isinstance(fast, FastPreprocess) and fast.plan is not None
    side = fast.plan[0]
    for img in _images(side) + [Image.new("RGB", (side, side), (0, 255, 7))]:
        got, want = fast(img), fast.inner(img)
        assert got.dtype == want.dtype == torch.float32 and got.shape == want.shape == (3, side, side)
        assert torch.equal(got, want)  # the same floats, not merely close ones


@pytest.mark.parametrize("size,mode", [((80, 80), "RGB"), ((64, 48), "RGB"), ((64, 64), "RGBA"),
                                       ((64, 64), "L")])
def test_other_images_go_through_the_transform(tiny, size, mode):
    fast = tiny.preprocess
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    img = img.convert(mode)
    out = fast(img)
    assert out.shape == (3, fast.plan[0], fast.plan[0]) and torch.equal(out, fast.inner(img))


def test_nonstandard_transforms_keep_their_own_path():
    norm = T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    for chain in ([T.RandomResizedCrop(32), T.ToTensor(), norm],   # random: never bypassed
                  [T.Resize(32), T.CenterCrop(24), T.ToTensor(), norm],  # crops smaller than it resizes
                  [T.Resize(32), T.CenterCrop(32), T.ToTensor()]):  # no Normalize at the end
        fast = FastPreprocess(T.Compose(chain))
        assert fast.plan is None
        img = _images(32, 1)[0]
        torch.manual_seed(0)
        a = fast(img)
        torch.manual_seed(0)
        assert torch.equal(a, T.Compose(chain)(img))


def test_plain_chain_without_open_clip_steps_and_pickling():
    chain = T.Compose([T.Resize(16), T.CenterCrop(16), T.ToTensor(),
                       T.Normalize((0.1, 0.2, 0.3), (0.5, 0.6, 0.7))])
    fast = pickle.loads(pickle.dumps(FastPreprocess(chain)))
    assert fast.plan[0] == 16 and len(fast.transforms) == 4  # attributes: the wrapped transform's
    for img in _images(16):
        assert torch.equal(fast(img), chain(img))
