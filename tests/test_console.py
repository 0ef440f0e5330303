"""What ``python -m harness`` prints: a summary instead of the result dump, no third-party noise,
no tee warnings, and one line (no traceback) for bad input. Every case runs the real CLI."""
import re
import subprocess
import textwrap

import pytest

from conftest import PYTHON, python_env

DB = "console"  # this module's runs stay out of the other tests' database
MAX_LINE = 1000
TEE_WARNING = re.compile(r"tee_std(out|err)\.wait timeout")


def _env(store_dir):
    env = python_env(HARNESS_STORE_DIR=store_dir)
    env.pop("PYTHONWARNINGS", None)  # tox hides Sacred's pkg_resources warning; the CLI must do it itself
    return env


def _paths(work):
    return [f"data.root={work / 'data'}", f"render.out={work / 'renders'}", f"train.out={work / 'ck'}",
            f"train.features_dir={work / 'feat'}", f"store.spool={work / 'spool'}", f"store.db={DB}"]


def _lines(text: str) -> list[str]:
    """Console lines as a terminal shows them (tqdm redraws its bar after a carriage return)."""
    return re.split(r"[\r\n]", text)


def _nonempty(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# Bad config values: each must fail before any work with one line naming key, value and what is allowed.
BAD_VALUES = {
    "train.mode=bogus": ("train.mode", "'bogus'", "none, linear, projection, lora, partial, full"),
    "train.lr=-1": ("train.lr", "-1", "> 0"),
    "eval.ks=[0,5]": ("eval.ks", "0", "positive integer"),
    "model.name=no-such-model": ("model.name", "'no-such-model'", "clip3d-tiny"),
}
# Bad input found once the run has started: the harness's own message, one line, no traceback.
BAD_DATA = {
    "invalid_json": ("data.root={work}/bad_json", "pix3d.json is not valid JSON"),
    "no_dataset": ("data.root={work}/empty data.synth_preset=None",
                   "it matches no format (looked for pix3d: pix3d.json at the root;"),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, store_dir):
    """Every bad-input command line at once (each is a process that imports torch: run them together)."""
    work = tmp_path_factory.mktemp("bad")
    (work / "bad_json").mkdir()
    (work / "bad_json" / "pix3d.json").write_text('[{"img": "img/chair/0001.png",', encoding="utf-8")
    (work / "empty").mkdir()
    (work / "empty" / "README").write_text("not a dataset\n", encoding="utf-8")
    base = [PYTHON, "-m", "harness", "with", "tiny", *_paths(work)]
    cases = {value: [*base, value] for value in BAD_VALUES}
    cases.update({name: [*base, *args.format(work=work).split()] for name, (args, _) in BAD_DATA.items()})
    cases["debug"] = [*base, "train.mode=bogus", "--debug"]
    procs = {name: subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=_env(store_dir)) for name, cmd in cases.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        out[name] = subprocess.CompletedProcess(cases[name], proc.returncode, stdout, stderr)
    return work, out


@pytest.mark.parametrize("value", list(BAD_VALUES))
def test_bad_config_value_is_one_line(bad_runs, value):
    work, runs = bad_runs
    out = runs[value]
    assert out.returncode != 0
    assert "Traceback" not in out.stdout + out.stderr
    lines = _nonempty(out.stderr)
    assert len(lines) == 1, out.stderr[-3000:]
    key, shown, allowed = BAD_VALUES[value]
    assert key in lines[0] and shown in lines[0] and allowed in lines[0], lines[0]
    assert len(lines[0]) <= MAX_LINE
    assert not (work / "renders").exists() and not (work / "data").exists()  # failed before any work


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_dataset_is_one_line(bad_runs, case):
    _, runs = bad_runs
    out = runs[case]
    assert out.returncode != 0
    assert "Traceback" not in out.stdout + out.stderr
    message = BAD_DATA[case][1]
    errors = [line for line in _nonempty(out.stderr) if message in line]
    assert len(errors) == 1, out.stderr[-3000:]
    assert errors[0] == _nonempty(out.stderr)[-1] and errors[0].startswith("error: ")


def test_debug_still_shows_the_traceback(bad_runs):
    _, runs = bad_runs
    out = runs["debug"]
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "unknown train.mode='bogus'" in out.stderr


@pytest.fixture(scope="module")
def tiny_cli_run(tmp_path_factory, store_dir):
    """One real `python -m harness with tiny` run (renders in a process pool, like a big run)."""
    work = tmp_path_factory.mktemp("console_run")
    cmd = [PYTHON, "-m", "harness", "with", "tiny", *_paths(work), "render.workers=2", "eval.bootstrap=50",
           "eval.views=[1,4]", "eval.rotation=z"]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=900, env=_env(store_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_run_console_is_clean(tiny_cli_run):
    out = tiny_cli_run
    text = out.stdout + out.stderr
    assert "pkg_resources" not in text
    assert "INFO - root" not in text  # open_clip's model factory
    assert "Result: {" not in text
    assert not TEE_WARNING.search(text)
    long = [line[:200] for line in _lines(text) if len(line) > MAX_LINE]
    assert not long, long


def test_run_ends_with_a_summary(tiny_cli_run, mongo_client):
    lines = _nonempty(tiny_cli_run.stdout)
    head = re.search(r"^run (\d+) COMPLETED in \d+ s \(run\)$", tiny_cli_run.stdout, re.M)
    assert head, lines
    run_id = int(head[1])
    i2t = next(line for line in lines if line.split()[0] == "i2t")
    assert re.search(r"R@1 \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", i2t), i2t
    assert lines[-1].startswith("recorded in mongodb://") and f"(db {DB}, run {run_id})" in lines[-1]
    doc = mongo_client[DB].runs.find_one({"_id": run_id})
    assert doc["status"] == "COMPLETED"
    metrics, ci95 = doc["result"]["metrics"], doc["result"]["ci95"]
    assert f"R@1 {metrics['i2t_R@1']:.3f} [{ci95['i2t_R@1'][0]:.3f}, {ci95['i2t_R@1'][1]:.3f}]" in i2t
    # zero-shot figures have their own lines: shapes, then photos (not one "other" line)
    zs = next(line for line in lines if line.split()[0] == "zs")
    photo = next(line for line in lines if line.split()[0] == "zs_photo")
    assert f"top1 {metrics['zs_top1']:.3f} [" in zs and "zs_photo" not in zs
    assert f"top1 {metrics['zs_photo_top1']:.3f} [" in photo
    # the view sweep and the rotation: one line each, headline metrics
    by_views, by_rotation = doc["result"]["by_views"], doc["result"]["by_rotation"]
    views = next(line for line in lines if line.strip().startswith("by views (1/4)"))
    assert f"i2t_R@1 {by_views['1']['i2t_R@1']:.3f}/{by_views['4']['i2t_R@1']:.3f}" in views
    rotated = next(line for line in lines if line.strip().startswith("rotated z"))
    assert f"zs_top1 {by_rotation['z']['zs_top1']:.3f} (upright {metrics['zs_top1']:.3f})" in rotated


CHATTY = textwrap.dedent('''
    import multiprocessing, sys
    from concurrent.futures import ProcessPoolExecutor

    from harness.commands import ex

    @ex.command
    def chatty():
        # A spawn pool, like the renderer's: its resource tracker outlives the pool.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(abs, -1).result()
        from tqdm import tqdm
        for _ in tqdm(range(5000), desc="chatty bar", mininterval=0):
            pass
        for i in range(20000):
            print(f"chatty line {i}")
        return {"metrics": {"i2t_R@1": 0.5}, "ci95": {"i2t_R@1": [0.25, 0.75]}}

    from harness.__main__ import main
    sys.exit(main(sys.argv[1:]))
''')


def test_large_output_is_recorded_without_tee_warnings(tmp_path, store_dir, mongo_client):
    cmd = [PYTHON, "-c", CHATTY, "chatty", "with", f"store.spool={tmp_path / 'spool'}", f"store.db={DB}"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=_env(store_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    assert not TEE_WARNING.search(out.stderr), out.stderr[-3000:]
    assert "chatty line 19999" in out.stdout
    head = re.search(r"^run (\d+) COMPLETED", out.stdout, re.M)
    assert head, out.stdout[-2000:]
    doc = mongo_client[DB].runs.find_one({"_id": int(head[1])})
    captured = doc["captured_out"]
    assert "chatty line 0\n" in captured and "chatty line 19999\n" in captured  # nothing lost at the end
    assert "\r" not in captured  # tqdm's redraws filtered by ex.captured_out_filter ...
    assert re.search(r"chatty bar: 100%.*5000/5000", captured)  # ... keeping the bar's final state
