"""``python -m harness train`` end to end on the tiny synthetic preset, and bad input failing fast."""
import subprocess

from conftest import PYTHON, python_env


def _train(tmp_path, store_url, *updates, timeout=600):
    args = [PYTHON, "-m", "harness", "train", "with", "tiny", f"data.root={tmp_path / 'data'}",
            f"render.out={tmp_path / 'renders'}", f"train.out={tmp_path / 'ck'}",
            f"train.features_dir={tmp_path / 'feat'}", f"store.url={store_url}", "render.size=32",
            "render.workers=1", *updates]
    return subprocess.run(args, capture_output=True, text=True, env=python_env(), timeout=timeout,
                          cwd=tmp_path)


def test_cli_renders_what_is_missing_and_trains(tmp_path, store_url):
    out = _train(tmp_path, store_url, "train.mode=full", "train.epochs=1", "train.batch_size=4")
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((tmp_path / "renders").rglob("view_00.png"))
    best = list((tmp_path / "ck").glob("clip3d-tiny-full-*/best.pt"))
    assert len(best) == 1 and (best[0].parent / "last.pt").is_file()
    import models

    expected = models.count_params(models.create_model("clip3d-tiny").model)  # full mode: all of them
    assert f"params {{'total': {expected['total']}, 'trainable': {expected['total']}}}" in out.stdout


def test_cli_bad_input_fails_before_rendering(tmp_path, store_url):
    out = _train(tmp_path, store_url, "train.mode=frozen", timeout=120)
    assert out.returncode != 0
    allowed = "none, linear, projection, lora, partial, full"
    assert f"unknown train.mode='frozen'; choose one of {allowed}" in out.stderr
    assert not (tmp_path / "renders").exists()
