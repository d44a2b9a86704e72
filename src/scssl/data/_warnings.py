"""Warnings that name the user's line, however deep inside scssl they are raised."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside scssl: the user's line.

    A fixed ``stacklevel`` is right for one call path only; scssl's checks run on several.
    """
    frame, level = sys._getframe(1), 2  # stacklevel 2: the function that calls warn_user
    while frame is not None and _inside_scssl(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _inside_scssl(filename: str) -> bool:
    return str(Path(filename).resolve()).startswith(_PACKAGE)
