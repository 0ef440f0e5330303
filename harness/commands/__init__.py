"""Sacred commands of the one experiment; importing this package registers them all on ``ex``."""
from harness.experiment import ex  # noqa: F401

from . import (
    evaluate,  # noqa: F401
    render,  # noqa: F401
    run,  # noqa: F401
    train,  # noqa: F401
)
