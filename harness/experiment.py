"""The one Sacred experiment of clip3d-bench: every default lives in its config scope.

Run ``python -m harness print_config`` to see every knob, ``python -m harness with k=v ...`` to run.
"""
from sacred import Experiment

ex = Experiment("clip3d", save_git_info=False)


@ex.config
def config():
    seed = 0  # one seed for splits, sampling, initialisation and bootstrap
    data = dict(
        root="runs/data/small",  # dataset root holding pix3d.json (Pix3D or Pix3D-format synthetic)
        synth_preset="small",  # when root has no pix3d.json: generate this preset there (None: fail)
        synth_seed=0,
        split=dict(train=0.7, val=0.1, test=0.2),  # shape-disjoint, stratified by category
        split_file=None,  # JSON {"train": [model paths], "val": [...], "test": [...]} (published splits)
        strict=True,  # False: skip and count bad pix3d.json entries instead of failing
        exclude_truncated=False,
        exclude_occluded=False,
        captions_file=None,  # JSONL {"model": path, "captions": [...]}
        captions_mode="extend",  # extend | replace
    )
    render = dict(
        out="runs/renders",  # renders go to <out>/<render_config_id>/<category>/<shape>/view_XX.png
        rig="ring12",  # camera rig: ring12 | ring8 | sphere20 (see renderers.RIGS)
        size=224,
        background=[1.0, 1.0, 1.0],
        msaa=4,
        shard="0/1",  # i/n: render only this deterministic part of the shapes
        workers=None,  # local process pool size (None: number of CPUs)
        scheduler=None,  # a Dask scheduler address: render on that cluster instead
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
        num_workers=0,
        out="runs/checkpoints",  # checkpoints go to <out>/<run key>/{last,best}.pt
        resume=True,
        tensorboard=False,
    )
    eval = dict(
        split="test",
        ks=[1, 5, 10],
        bootstrap=1000,  # resamples for the 95 % CIs over test shapes (0: off)
        same_caption_match=False,  # identical caption strings count as matches too
        photo2shape=True,
        captioning=True,
        checkpoint=None,  # evaluate this checkpoint instead of the one trained in this run
    )
    store = dict(
        url=None,  # MongoDB URL; None: $HARNESS_MONGO_URL, then the embedded server
        dir=None,  # embedded server data dir; None: $HARNESS_STORE_DIR, then ./runs/store
        db="clip3d",
        spool="runs/spool",  # runs go here while the store is unreachable; `sync` uploads them
        upload_checkpoint=False,
    )
