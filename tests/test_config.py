"""The Sacred config scope, named configs and validation before heavy work."""
import copy
import logging
import subprocess

import pytest

from conftest import PYTHON, python_env
from harness.config import (
    ConfigError,
    resolve,
    resolve_render_size,
    validate_data,
    validate_eval,
    validate_render,
)
from harness.experiment import ex
from models import ModelsError


@pytest.fixture
def cfg():
    return copy.deepcopy(ex.configurations[0]())


def test_print_config_lists_every_section():
    out = subprocess.run([PYTHON, "-m", "harness", "print_config", "with", "tiny", "train.lr=0.001"],
                         capture_output=True, text=True, env=python_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    for section in ("data:", "render:", "model:", "train:", "eval:", "store:"):
        assert section in out.stdout
    assert "lr = 0.001" in out.stdout
    assert "root = 'runs/data/tiny'" in out.stdout


def test_named_configs_hold_only_differences(cfg):
    for name in ("tiny", "quickstart", "synthetic", "pix3d", "none", "linear", "projection", "lora",
                 "partial", "full"):
        assert name in ex.named_configs, name
    for mode in ("none", "linear", "projection", "lora", "partial", "full"):
        values = {k: v for k, v in ex.named_configs[mode]().items() if k != "__doc__"}
        assert values == {"train": {"mode": mode}}


def test_default_config_is_valid(cfg):
    validate_data(cfg["data"])
    validate_render(resolve_render_size(cfg)["render"])
    validate_eval(cfg["eval"])


@pytest.mark.parametrize("model, size", [("clip3d-tiny", 64), ("ViT-B-32", 224), ("ViT-L-14-336", 336)])
def test_render_size_defaults_to_the_models_input_size(cfg, model, size, caplog):
    cfg["model"]["name"] = model
    assert cfg["render"]["size"] is None
    assert resolve_render_size(cfg)["render"]["size"] == size
    assert not caplog.records
    for name in ("tiny", "quickstart", "synthetic", "pix3d"):  # dataset configs leave it to the model
        assert "size" not in ex.named_configs[name]().get("render", {}), name


def test_explicit_render_size_is_kept_with_one_warning(cfg, caplog):
    # (the logger's own level: an earlier Sacred run with --loglevel ERROR leaves the root at ERROR)
    caplog.set_level(logging.WARNING, logger="harness")
    cfg["model"]["name"], cfg["render"]["size"] = "ViT-B-32", 64
    assert resolve_render_size(cfg)["render"]["size"] == 64
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert "render.size=64 differs from the input size of model ViT-B-32 (224 px)" in record.getMessage()
    cfg["render"]["size"] = 224
    caplog.clear()
    resolve_render_size(cfg)
    assert not caplog.records


def test_unknown_model_fails_while_resolving(cfg):
    cfg["model"]["name"] = "clip3d-giant"
    with pytest.raises(ModelsError, match="unknown model.name=.clip3d-giant."):
        resolve(cfg)


@pytest.mark.parametrize("split, message", [
    ({"train": 0.7, "val": 0.1}, "must be a dict with keys train, val, test"),
    ({"train": 0.7, "val": 0.2, "test": 0.2}, "sum to 1.1"),
    ({"train": 1.2, "val": -0.4, "test": 0.2}, "data.split.train=1.2"),
    ({"train": 0.0, "val": 0.5, "test": 0.5}, "must be above 0"),
])
def test_bad_split_is_named(cfg, split, message):
    cfg["data"]["split"] = split
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_data(cfg["data"])


@pytest.mark.parametrize("key, value, message", [
    ("rig", "ring13", "unknown render.rig='ring13'; choose one of ring12, ring8, sphere20"),
    ("size", 0, "render.size=0 must be a positive integer"),
    ("shard", "3/2", "render.shard='3/2' must be 'i/n'"),
    ("background", [1, 1], "render.background=[1, 1]"),
])
def test_bad_render_values_are_named(cfg, key, value, message):
    render = {**resolve_render_size(cfg)["render"], key: value}
    with pytest.raises(ConfigError) as err:
        validate_render(render)
    assert message in str(err.value)


@pytest.mark.parametrize("key, value, message", [
    ("ks", [], "eval.ks=[] must be a non-empty list"),
    ("ks", [1, 0], "eval.ks[]=0 must be a positive integer"),
    ("bootstrap", -1, "eval.bootstrap=-1"),
    ("split", "train", "unknown eval.split='train'; choose one of test, val"),
])
def test_bad_eval_values_are_named(cfg, key, value, message):
    cfg["eval"][key] = value
    with pytest.raises(ConfigError) as err:
        validate_eval(cfg["eval"])
    assert message in str(err.value)


@pytest.mark.parametrize("key, value, message", [
    ("length_penalty", "abc", "eval.captioner.length_penalty='abc' must be a number"),
    ("length_penalty", True, "eval.captioner.length_penalty=True must be a number"),
    ("beam_size", 0, "eval.captioner.beam_size=0 must be a positive integer"),
    ("epochs", 2.5, "eval.captioner.epochs=2.5 must be a positive integer"),
    ("lr", -1e-3, "eval.captioner.lr=-0.001 must be a positive number"),
])
def test_bad_captioner_values_are_named(cfg, key, value, message):
    validate_eval(cfg["eval"])  # the defaults pass
    cfg["eval"]["captioner"] = {**cfg["eval"]["captioner"], key: value}
    with pytest.raises(ConfigError) as err:
        validate_eval(cfg["eval"])
    assert message in str(err.value)


def test_mongo_url_flag_becomes_store_config():
    from harness.__main__ import mongo_url_as_config

    assert mongo_url_as_config(["-m", "mongodb://u:pw@h:1/mydb", "with", "tiny"]) == [
        "with", "store.url=mongodb://u:pw@h:1/mydb", "store.db=mydb", "tiny"]
    assert mongo_url_as_config(["train", "--mongo_db=mongodb://u:pw@h:1"]) == [
        "train", "with", "store.url=mongodb://u:pw@h:1"]
    # Sacred's own host:port:db form is left to Sacred.
    assert mongo_url_as_config(["-m", "localhost:27017:db"]) == ["-m", "localhost:27017:db"]


def test_the_sacred_hook_the_harness_overrides_still_exists():
    """harness.experiment attaches the store observer in Experiment._create_run (private Sacred API,
    so setup.py pins sacred<0.9); a Sacred without it would silently record nothing."""
    from sacred import Experiment

    from harness.experiment import HarnessExperiment

    assert "_create_run" in vars(Experiment) and "_create_run" in vars(HarnessExperiment)


@pytest.mark.parametrize("text, value", [("2", 2), ("0.5", 0.5), ("[1, 5]", [1, 5]), ("None", None),
                                         ("ViT-B-32", "ViT-B-32"), ("True", True)])
def test_quickstart_reads_updates_like_sacreds_command_line(text, value):
    from harness.quickstart import _literal

    assert _literal(text) == value


# -- the config read once: typed, frozen sections ------------------------------------------------


def test_config_is_typed_frozen_and_round_trips(cfg):
    import dataclasses

    from harness.config import Config, load_config
    from models import TrainConfig
    from registries import as_dict

    config = load_config(cfg)
    assert isinstance(config, Config) and isinstance(config.train, TrainConfig)
    assert config.train.lr == cfg["train"]["lr"] and config.render.size == 64  # the model's size
    assert config.render.background == (1.0, 1.0, 1.0)  # lists become tuples
    assert load_config(config) is config  # idempotent: converted once
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 1.0
    with pytest.raises(TypeError):
        config.data.split["train"] = 0.5  # nested dicts are read-only
    with pytest.raises(TypeError):
        config.eval["captioner"]["epochs"] = 1
    assert as_dict(config) == resolve(copy.deepcopy(cfg))  # the plain config dict, to the value


def test_a_missing_key_names_it_and_where_configs_come_from(cfg):
    from harness.config import load_config

    del cfg["render"]["msaa"]
    with pytest.raises(ConfigError, match=r"^missing config key render\.msaa; configs come from "
                                          r"harness\.experiment's defaults"):
        load_config(cfg)


@pytest.mark.parametrize("key, message", [
    ("train.epohcs", "unknown config key train.epohcs; train has: mode, epochs, batch_size, lr, "),
    ("trian", "unknown config key trian; the config has: seed, data, render, model, train, eval, store"),
])
def test_an_unknown_key_is_an_error_naming_the_keys(cfg, key, message):
    from harness.config import load_config

    section, _, name = key.rpartition(".")
    (cfg[section] if section else cfg)[name] = 3
    with pytest.raises(ConfigError) as err:
        resolve(cfg)  # what every command checks before its run starts
    assert str(err.value).startswith(message)
    with pytest.raises(ConfigError):
        load_config(cfg)


def test_an_unknown_key_on_the_command_line_fails_before_any_work(tmp_path):
    out = subprocess.run([PYTHON, "-m", "harness", "train", "with", "tiny", "train.epohcs=3",
                          f"store.spool={tmp_path / 'spool'}", f"data.root={tmp_path / 'data'}"],
                         capture_output=True, text=True, env=python_env(HARNESS_STORE_DIR=tmp_path / "store"),
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: unknown config key train.epohcs; train has: mode, epochs,")
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "spool").exists()  # nothing done or recorded


def _run_key_from_the_dict(cfg: dict, weights: str, renders_id, split_id, world: int = 1) -> str:
    """harness.commands.train.run_key as it was while the config travelled as a dict."""
    import hashlib
    import json

    train_cfg = {k: v for k, v in sorted(cfg["train"].items())
                 if k not in ("out", "resume", "tensorboard", "features_dir")}
    ident = {"model": cfg["model"]["name"], "pretrained": cfg["model"].get("pretrained"),
             "weights": weights, "pooling": cfg["model"].get("pooling"), "train": train_cfg,
             "render": renders_id, "split": split_id, "seed": cfg.get("seed", 0), "world": world}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
    safe = str(cfg["model"]["name"]).replace("/", "_").replace(":", "_")
    return f"{safe}-{cfg['train']['mode']}-{digest}"


@pytest.mark.parametrize("updates", [{}, {"train": {"mode": "linear", "patience": 3, "lr": 1e-3}, "seed": 7}])
def test_checkpoint_run_key_is_unchanged(cfg, updates):
    """Existing checkpoints stay reused: the typed config hashes to the key the dict gave."""
    import harness.commands  # noqa: F401  (registers the commands)
    from harness.commands.train import run_key
    from harness.config import load_config

    for name, values in updates.items():
        cfg[name] = {**cfg[name], **values} if isinstance(values, dict) else values
    resolved = resolve(copy.deepcopy(cfg))
    for world in (1, 2):
        assert (run_key(load_config(cfg), "abc123", "fp16", "split1", world)
                == _run_key_from_the_dict(resolved, "abc123", "fp16", "split1", world))
