"""Config builders for tests: whole sections from harness.experiment's defaults, with overrides (no
tests here). The stages and the trainer take full sections only; a test states what it changes."""
import copy

from harness.experiment import ex


def default_config(**sections) -> dict:
    """The default Sacred config as plain dicts; ``sections``: ``name={key: value}`` updates that
    section (``seed=1`` sets a value)."""
    cfg = copy.deepcopy(dict(ex.configurations[0]()))
    for name, values in sections.items():
        cfg[name] = {**cfg[name], **values} if isinstance(values, dict) else values
    return cfg


def train_dict(**overrides) -> dict:
    """The default ``train`` section with ``overrides`` (a plain dict: ``dict(CFG, mode=...)`` works)."""
    return {**default_config()["train"], **overrides}


def train_config(**overrides):
    """The default ``train`` section with ``overrides`` as a TrainConfig."""
    from models import train_config as typed

    return typed(train_dict(**overrides))
