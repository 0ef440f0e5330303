"""``python -m runstore start|stop|status|url [--dir DIR]``: the embedded store's lifecycle."""
import sys

from runstore.server import main

sys.exit(main())
