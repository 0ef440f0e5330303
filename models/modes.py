"""Training modes: which parameters train, and how the model is wrapped (``MODES`` registry).

Each mode's ``apply(bundle, train)`` (``train``: a :class:`~models.config.TrainConfig`) freezes,
unfreezes or wraps in place and returns the list of parameters the optimizer updates. Frozen
parameters keep their tensors untouched (bit-identical).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from registries import Registry

from .errors import ConfigError

PROJECTION_NAMES = ("visual.proj", "text_projection", "visual.head.", "text.proj.", "text.proj")


class LinearHeads(nn.Module):
    """Linear maps on frozen image and text features (mode ``linear``), initialised to identity.

    Holds its own temperature so that nothing of the frozen model changes.
    """

    def __init__(self, dim: int, logit_scale: float):
        super().__init__()
        self.image = nn.Linear(dim, dim)
        self.text = nn.Linear(dim, dim)
        for lin in (self.image, self.text):
            nn.init.eye_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor):
        return self.image(image_features), self.text(text_features)


class SplitAttention(nn.Module):
    """nn.MultiheadAttention (self-attention, batch first) rebuilt from nn.Linear layers.

    peft's LoRA for nn.MultiheadAttention merges and unmerges the adapter into the frozen weight
    on every forward, which drifts the frozen weights by rounding; plain nn.Linear LoRA never
    touches them. The Linear layers share the original Parameter objects (no copy).
    """

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        dim = mha.embed_dim
        self.num_heads = mha.num_heads
        self.batch_first = mha.batch_first
        self.in_proj = nn.Linear(dim, 3 * dim, bias=mha.in_proj_bias is not None, device="meta")
        self.in_proj.weight = mha.in_proj_weight
        if mha.in_proj_bias is not None:
            self.in_proj.bias = mha.in_proj_bias
        self.out_proj = mha.out_proj

    def forward(self, query, key=None, value=None, need_weights=False, attn_mask=None, **_):
        x = query if self.batch_first else query.transpose(0, 1)
        b, n, d = x.shape
        q, k, v = self.in_proj(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        if attn_mask is not None and attn_mask.dtype != torch.bool:
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = self.out_proj(out.transpose(1, 2).reshape(b, n, d))
        return (out if self.batch_first else out.transpose(0, 1)), None


def _set_trainable(model: nn.Module, predicate: Callable[[str], bool]) -> list[nn.Parameter]:
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(bool(predicate(name)))
        if p.requires_grad:
            params.append(p)
    return params


def _is_projection(name: str) -> bool:
    return name == "logit_scale" or any(name == n or name.startswith(n) for n in PROJECTION_NAMES)


def _blocks(model: nn.Module) -> tuple[nn.ModuleList, nn.ModuleList]:
    try:
        return model.visual.transformer.resblocks, model.transformer.resblocks
    except AttributeError as exc:
        raise ConfigError(f"train.mode=partial/lora needs open_clip ViT towers; {type(model).__name__} has "
                          f"none (use mode full or projection)") from exc


@dataclass(frozen=True)
class Mode:
    """A training mode: ``apply`` returns trainable params; flags drive the loop."""

    name: str
    apply: Callable
    trains: bool = True
    cached_features: bool = False  # trains on cached tower outputs instead of images
    doc: str = ""


def _apply_none(bundle, cfg):
    return _set_trainable(bundle.model, lambda n: False)


def _apply_linear(bundle, cfg):
    _set_trainable(bundle.model, lambda n: False)
    with torch.no_grad():
        probe = bundle.model.encode_text(bundle.tokenizer(["a"]).to(bundle.device))
    dim = int(probe.shape[-1])
    bundle.heads = LinearHeads(dim, float(bundle.model.logit_scale.detach())).to(bundle.device)
    return list(bundle.heads.parameters())


def _apply_projection(bundle, cfg):
    return _set_trainable(bundle.model, _is_projection)


def _apply_partial(bundle, cfg):
    n = int(cfg.partial_blocks)
    vis, txt = _blocks(bundle.model)
    if not 1 <= n <= min(len(vis), len(txt)):
        raise ConfigError(f"train.partial_blocks={n} must be in 1..{min(len(vis), len(txt))} for "
                          f"model {bundle.name}")
    names = [f"visual.transformer.resblocks.{i}." for i in range(len(vis) - n, len(vis))]
    names += [f"transformer.resblocks.{i}." for i in range(len(txt) - n, len(txt))]
    names += ["visual.ln_post.", "ln_final."]
    return _set_trainable(bundle.model, lambda p: _is_projection(p) or any(p.startswith(x) for x in names))


def _apply_lora(bundle, cfg):
    from peft import LoraConfig, inject_adapter_in_model

    rank = int(cfg.lora_rank)
    vis, txt = _blocks(bundle.model)
    for block in list(vis) + list(txt):
        if isinstance(block.attn, nn.MultiheadAttention):
            block.attn = SplitAttention(block.attn)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=["in_proj", "out_proj"])
    inject_adapter_in_model(lora, bundle.model)
    return _set_trainable(bundle.model, lambda n: "lora_" in n or n == "logit_scale")


def _apply_full(bundle, cfg):
    return _set_trainable(bundle.model, lambda n: True)


MODES: Registry = Registry("train.mode", {
    "none": Mode("none", _apply_none, trains=False, doc="evaluate the model as loaded"),
    "linear": Mode("linear", _apply_linear, cached_features=True,
                   doc="frozen towers; linear maps on cached features"),
    "projection": Mode("projection", _apply_projection, doc="only the projection heads (+ temperature)"),
    "lora": Mode("lora", _apply_lora, doc="LoRA adapters on the attention projections"),
    "partial": Mode("partial", _apply_partial, doc="the last N blocks of each tower"),
    "full": Mode("full", _apply_full, doc="everything"),
}, error=ConfigError)


def get_mode(name: str) -> Mode:
    """The registered mode ``name`` (clear error listing the allowed ones)."""
    return MODES.lookup(name)


def param_groups(named_params: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float,
                 backbone_lr_scale: float = 1.0) -> list[dict]:
    """Optimizer groups: no weight decay on gains/biases/temperature; backbone lr scaled (full mode)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in named_params:
        no_wd = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        head = _is_projection(name) or name.startswith("heads.") or name.startswith("pooling.") \
            or "lora_" in name
        groups.setdefault((no_wd, head), []).append(p)
    out = []
    for (no_wd, head), params in sorted(groups.items()):
        out.append({"params": params, "weight_decay": 0.0 if no_wd else weight_decay,
                    "lr": lr if head else lr * backbone_lr_scale})
    return out
