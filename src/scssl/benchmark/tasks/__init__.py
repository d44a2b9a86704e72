"""The benchmark tasks, one module each; every module here registers its task when imported.

A new task is a new module with one function decorated with
:func:`scssl.benchmark.register_task`: it is found here (no import to add elsewhere), and
``scssl benchmark`` offers it with the options it declares. Modules whose name starts with ``_``
hold shared helpers and are not imported as tasks.
"""

import importlib
import pkgutil


def _import_task_modules() -> list[str]:
    names = [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


TASK_MODULES = _import_task_modules()
