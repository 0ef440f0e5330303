"""Sacred commands of the one experiment; importing this package registers them all on ``ex``."""
from harness.experiment import ex

from . import (
    evaluate,  # noqa: F401
    render,  # noqa: F401
    run,  # noqa: F401
    train,  # noqa: F401
)


@ex.capture
def config_sections(seed, data, render, model, train, eval, store):  # noqa: F811 (parameters)
    """The sections the commands read (through ``harness.config.load_config``). Declared so that
    Sacred leaves an unknown key inside one (``train.epohcs=3``) to the harness's check, which names
    the key and the section's keys before any work, instead of failing with its own message."""
