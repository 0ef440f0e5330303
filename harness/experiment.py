"""The one Sacred experiment of clip3d-bench: every default lives in its config scope.

Run ``python -m harness print_config`` to see every knob, ``python -m harness with k=v ...`` to run.
"""
import logging
import os

from sacred import Experiment
from sacred.observers import MongoObserver
from sacred.observers.mongo import parse_mongo_db_arg
from sacred.utils import apply_backspaces_and_linefeeds

from harness import console
from runstore import mask_secrets

log = logging.getLogger("harness.experiment")

# How a run's stdout/stderr are captured for its record. Sacred's default on Linux, "fd", pipes
# fds 1 and 2 through two `tee` processes and waits 1 s for them to end; but every process spawned
# during the run inherits those pipes, and multiprocessing's resource tracker (started by the
# spawn-context pools of the renderer and the synthetic generator) outlives the run, so the tees
# never see EOF: "tee_stdout.wait timeout. Forcibly terminating." (and for stderr). "sys" tees
# sys.stdout/sys.stderr inside Python instead: no extra processes, the same captured_out (prints,
# tqdm bars, log lines); output written straight to fds by child processes is no longer in it.
# ``--capture=fd`` still selects Sacred's mode.
CAPTURE_MODE = "sys"


class HarnessExperiment(Experiment):
    """Sacred's Experiment, recording every run in the resolved store unless told otherwise.

    Observers need the *resolved* config (``store.url`` may come from ``with``), which Sacred only
    has once the run is created, so the default observer is attached here rather than at import.
    """

    _on_command_line = False  # inside run_commandline: bad input ends in one line, not a traceback

    def _create_run(self, *args, **kwargs):
        run = super()._create_run(*args, **kwargs)
        check_config(run)
        attach_store_observer(run)
        if run.capture_mode is None and run.observers:
            run.capture_mode = CAPTURE_MODE
        return run

    def run_commandline(self, argv=None):
        self._on_command_line = True
        try:
            return super().run_commandline(argv)
        finally:
            self._on_command_line = False

    def run(self, command_name=None, config_updates=None, named_configs=(), info=None, meta_info=None,
            options=None):
        """Sacred's run; on the command line, bad input (a config value, a broken dataset: the error
        types of ``console.input_error``) prints one ``error: ...`` line and exits with status 2.

        Sacred would print the message at the end of a traceback. ``--debug`` (and ``--pdb``) keep
        Sacred's behaviour; called from Python, the exception propagates unchanged.
        """
        try:
            return super().run(command_name, config_updates, named_configs, info, meta_info, options)
        except Exception as exc:
            opts = options or {}
            if (not self._on_command_line or opts.get("--debug") or opts.get("--pdb")
                    or not console.input_error(exc)):
                raise
            console.report_input_error(exc)
            raise SystemExit(console.EXIT_INPUT_ERROR) from None


# Commands whose config is checked before the run starts (the checks each command runs first).
CHECKED_COMMANDS = ("run", "train", "evaluate", "render")


def check_config(run) -> None:
    """Raise the config error of a bad value before ``run`` starts: nothing is recorded for a typo,
    and the console shows the error alone, without Sacred's start lines.

    The commands check again when they run; a check that fails for any other reason than bad
    input is left to them. Queued runs are checked by the worker that runs them.
    """
    command = console.command_name(run)
    if command not in CHECKED_COMMANDS or run.queue_only:
        return
    from harness.config import load_config

    cfg = dict(run.config)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the command itself warns (e.g. about render.size), once
    try:
        load_config(cfg, check=command != "render")  # render: keys and the render section
    except Exception as exc:
        if console.input_error(exc):
            raise
        log.debug("config check before the run skipped: %s: %s", type(exc).__name__, exc)
    finally:
        logging.disable(previous)


def attach_store_observer(run) -> None:
    """Record ``run`` in the resolved store through the spooling observer (nothing is lost).

    Sacred's ``-m URL[:DB]`` keeps working: its plain MongoObserver is replaced by ours on the same
    URL and database, so spooling and masking apply to it too. ``-u`` (unobserved) adds nothing.
    """
    options = run.meta_info.get("options", {})
    store_cfg = dict(run.config["store"])
    url = None
    raw = options.get("--mongo_db")
    if raw:
        parsed = parse_mongo_db_arg(raw)
        url = parsed.get("url")
        store_cfg["db"] = parsed.get("db_name", store_cfg["db"])
        options["--mongo_db"] = mask_secrets(raw)  # Sacred stores options in meta.options
        run.observers[:] = [o for o in run.observers if not isinstance(o, MongoObserver)]
    if run.unobserved or os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 records: one DDP job, one run
    from harness.tracking import make_observer

    run.observers.append(make_observer(store_cfg, url=url))


ex = HarnessExperiment("clip3d", save_git_info=False)
# tqdm redraws its bar with carriage returns: keep only the final state of each line.
ex.captured_out_filter = apply_backspaces_and_linefeeds


@ex.config
def config():
    seed = 0  # one seed for splits, sampling, initialisation and bootstrap
    data = dict(
        root="runs/data/small",  # dataset root (Pix3D, ModelNet40, ShapeNetCore, Objaverse; docs/data.md)
        # pix3d | modelnet40 | shapenet | objaverse (harness.data.FORMATS); None: detect from the root
        format=None,
        up_axis=None,  # x | y | z: the meshes' up axis; None: the format's (ModelNet z, the others y)
        synth_preset="small",  # when root holds no dataset: generate this preset there (None: fail)
        synth_seed=0,
        split=dict(train=0.7, val=0.1, test=0.2),  # shape-disjoint, stratified by category
        split_file=None,  # JSON {"train": [model paths], "val": [...], "test": [...]} (published splits)
        strict=True,  # False: skip and count bad pix3d.json entries instead of failing
        exclude_truncated=False,
        exclude_occluded=False,
        # JSONL {"model": path, "captions": [...]}; shapenet / objaverse also read their own CSV here
        # (Text2Shape's captions.tablechair.csv, a Cap3D uid,caption file) instead of the root's
        captions_file=None,
        captions_mode="extend",  # extend | replace
    )
    render = dict(
        out="runs/renders",  # renders go to <out>/<render_config_id>/<category>/<shape>/view_XX.png
        rig="ring12",  # camera rig: ring12 | ring8 | sphere20 (see renderers.RIGS)
        size=None,  # pixels; None: the model's input size (a different size is honoured with a warning)
        background=[1.0, 1.0, 1.0],
        msaa=4,
        shard="0/1",  # i/n: render only this deterministic part of the shapes
        workers=None,  # local process pool size (None: number of CPUs)
        scheduler=None,  # a Dask scheduler address: render on that cluster instead
        max_faces=1_500_000,  # larger meshes fail with a clear size-limit reason (memory)
    )
    model = dict(
        name="clip3d-tiny",  # any open_clip model name or one of models/model_configs/*.json
        pretrained=None,  # open_clip tag (openai, laion2b_s34b_b79k, hf-hub:...) or a local file
        pooling="mean",  # how view embeddings become a shape embedding: single | mean | max | attention
        device="auto",  # auto | cpu | cuda
    )
    train = dict(
        mode="full",  # none | linear | projection | lora | partial | full
        epochs=10,
        batch_size=32,
        lr=5e-4,
        backbone_lr_scale=1.0,  # full mode: backbone lr = lr * this
        weight_decay=0.1,
        warmup_steps=20,
        grad_clip=1.0,
        lora_rank=8,
        partial_blocks=2,  # partial mode: the last N blocks of each tower train
        patience=None,  # early stopping on val loss (None: off)
        out="runs/checkpoints",  # checkpoints go to <out>/<run key>/{last,best}.pt
        resume=True,
        tensorboard=False,
        # feature cache (mode linear, probes): <dir>/<model>-<weights>/<render id>/
        features_dir="runs/features",
    )
    eval = dict(
        split="test",
        ks=[1, 5, 10],
        bootstrap=1000,  # resamples for the 95 % CIs over test shapes (0: off)
        same_caption_match=False,  # identical caption strings count as matches too
        photo2shape=True,
        captioning=True,
        checkpoint=None,  # evaluate this checkpoint instead of the one trained in this run
        photo_mask=True,  # photo2shape: photos masked onto white like the renders (False: bbox crop only)
        # zero-shot classes from the category names through a prompt ensemble: render | photo | name
        # (harness.evaluation.zero_shot.TEMPLATE_SETS) or a list of templates with one {} each
        zs_templates="render",
        # view-count sweep: also score retrieval / zero-shot with n evenly spaced views per shape for
        # each n, e.g. [1, 2, 4, 12] -> result.by_views (None: off)
        views=None,
        # rotation robustness: re-render the evaluated shapes turned by a seeded random rotation about
        # the up axis ("z") or in 3-D ("so3"), or both (a list) -> result.by_rotation (None: off);
        # rotation_seed draws the rotations (fixed by default: every run sees the same rotated shapes)
        rotation=None,
        rotation_seed=0,
        # per-query logs (id, top-10 with scores, rank of the first positive, zero-shot prediction) as
        # the run's samples.jsonl.gz artifact
        log_samples=False,
        # generative captioner (ClipCap-style prefix decoder on train captions), docs/evaluation.md: a
        # 1-layer, 96-wide decoder trained on batches of 32 captions until the validation loss of
        # held-out train shapes has not improved for `patience` epochs, then a learning-rate decay over
        # `decay_fraction` as many epochs again (`epochs`: the most it runs; patience None: a fixed
        # `epochs`); `threads`: torch threads while it trains (None: torch's setting); `cache`: reuse a
        # captioner trained on the same embeddings, captions, config and seed (<features_dir>/captioners)
        # `length_penalty`: of the beam search's captions the one with the highest log-probability /
        # length**length_penalty is kept (1: the mean per-token log-probability, what ClipCap's beam
        # search ranks by; 0: the sum, which favours short captions)
        captioner=dict(epochs=60, beam_size=3, length_penalty=1.0, d_model=96, layers=1, prefix_len=4,
                       lr=2e-3, batch_size=32, dropout=0.0, patience=5, val_fraction=0.1, decay_fraction=0.5,
                       length_groups=1, threads=1, cache=True),
    )
    store = dict(
        url=None,  # MongoDB URL; None: $HARNESS_MONGO_URL, then the embedded server
        dir=None,  # embedded server data dir; None: $HARNESS_STORE_DIR, then ./runs/store
        db="clip3d",
        spool="runs/spool",  # runs go here while the store is unreachable; `sync` uploads them
        spool_keep_days=0,  # keep finished runs' spool folders N days (0: remove once safely in the store)
        upload_checkpoint=False,
    )


@ex.config_hook
def model_decides(config, command_name, logger) -> dict:
    """Fill in what the model decides, so the recorded config holds it: ``render.size`` left unset
    becomes the model's input size (an explicit size stays; the commands warn when it differs)."""
    if config["render"].get("size") is not None:
        return {}
    from harness.config import resolve_render_size

    return {"render": {"size": resolve_render_size(config, warn=False)["render"]["size"]}}


# Named configs hold only differences from the defaults above.
@ex.named_config
def tiny():
    # Seconds-scale runs for tests: the tiny synthetic preset, a short schedule.
    data = dict(root="runs/data/tiny", synth_preset="tiny")
    train = dict(epochs=2, batch_size=8, warmup_steps=2)
    eval = dict(bootstrap=200, captioner=dict(epochs=5, d_model=64, layers=1))


@ex.named_config
def quickstart():
    # The README's main job: the synthetic `small` preset, clip3d-tiny (64 px input), on CPU.
    data = dict(root="runs/data/small", synth_preset="small")
    model = dict(name="clip3d-tiny")
    train = dict(epochs=15, batch_size=32)


@ex.named_config
def synthetic():
    # The synthetic Pix3D-format `small` preset (about 100 shapes), generated on first use.
    data = dict(root="runs/data/small", synth_preset="small")


@ex.named_config
def pix3d():
    # The real Pix3D dataset at data/pix3d (download it there first; nothing is generated).
    data = dict(root="data/pix3d", synth_preset=None)


# Datasets beyond Pix3D (docs/data.md): a synthetic stand-in of each layout, generated on first use;
# point data.root at the real download (and set data.synth_preset=None) to use it. With `tiny` they
# make seconds-scale runs (`with tiny modelnet40`).
@ex.named_config
def modelnet40():
    # ModelNet40 layout (<class>/{train,test}/*.off, Z-up): the official split, class-level captions.
    data = dict(root="runs/data/modelnet40-tiny", format="modelnet40", synth_preset="tiny")


@ex.named_config
def shapenet():
    # ShapeNetCore v2 layout (<synsetId>/<modelId>/models/model_normalized.obj) + Text2Shape captions.
    data = dict(root="runs/data/shapenet-tiny", format="shapenet", synth_preset="tiny")


@ex.named_config
def objaverse():
    # Objaverse 1.0 layout (glbs/<000-XXX>/<uid>.glb) + LVIS categories + Cap3D captions.
    data = dict(root="runs/data/objaverse-tiny", format="objaverse", synth_preset="tiny")


# One named config per training mode (models.MODES), each only setting train.mode:
#   none       evaluate the model as loaded (zero-shot, or the untrained baseline)
#   linear     frozen encoders, features cached on disk, linear maps on the contrastive loss
#   projection only the projection heads of both towers train
#   lora       LoRA adapters on the attention projections
#   partial    the last `train.partial_blocks` blocks of each tower train
#   full       everything trains
for _mode in ("none", "linear", "projection", "lora", "partial", "full"):
    ex.add_named_config(_mode, {"train": {"mode": _mode}})
