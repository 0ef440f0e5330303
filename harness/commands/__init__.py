"""Sacred commands of the one experiment; importing this package registers them all on ``ex``."""
from harness.experiment import ex  # noqa: F401
from . import run  # noqa: F401
from . import render  # noqa: F401
from . import train  # noqa: F401
from . import evaluate  # noqa: F401
