"""The leaderboard's query API in one namespace (``from leaderboard import queries as q``): the pure
table functions of ``leaderboard.frames`` and the store reads/writes of ``leaderboard.loading``."""
from .frames import *  # noqa: F403
from .frames import PROBABLY_DEAD, _frame  # noqa: F401
from .loading import *  # noqa: F403
from .loading import ROW_CACHE_VERSION, RUN_FIELDS, _id_query, _plain_id  # noqa: F401
