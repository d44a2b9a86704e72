"""``scssl.benchmark.metrics``: the scores, kept under this name for existing code.

They live in :mod:`scssl.metrics`, below the model layer, because models use them too.
"""

from scssl.metrics import *  # noqa: F403
from scssl.metrics import __all__  # noqa: F401
