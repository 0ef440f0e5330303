"""Sacred commands of the one experiment; importing this package registers them all on ``ex``."""
# torch/open_clip (and Triton's bundled LLVM) must load before Mesa's llvmpipe creates an EGL
# context in this process: the other order segfaults.
import models  # noqa: F401,I001

from harness.experiment import ex  # noqa: F401
from . import run  # noqa: F401
from . import render  # noqa: F401
from . import train  # noqa: F401
from . import evaluate  # noqa: F401
