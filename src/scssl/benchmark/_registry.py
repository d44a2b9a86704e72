"""The registry of benchmark tasks: what a task module needs to declare itself.

A task is one function decorated with :func:`register_task`, in a module of
:mod:`scssl.benchmark.tasks` (every module there is imported when :mod:`scssl.benchmark` is) or
anywhere else before :func:`~scssl.benchmark.run_benchmark` is called. It receives the data and
the options of ``run_benchmark`` and returns a :class:`~scssl.benchmark.BenchmarkResult`. The
options it declares with :class:`TaskOption` become flags of ``scssl benchmark``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ._result import BenchmarkResult

#: obs columns a task can require.
RequiredKey = Literal["batch_key", "labels_key"]
REQUIRED_KEYS: tuple[str, ...] = get_args(RequiredKey)
#: Names a task option cannot take: the options of ``run_benchmark`` and ``scssl benchmark``.
RESERVED_OPTION_NAMES = frozenset(
    {
        *REQUIRED_KEYS,
        "adata",
        "data",
        "dataset",
        "epochs",
        "label_key",
        "layer",
        "max_cells",
        "methods",
        "n_latent",
        "no_plots",
        "out",
        "plots",
        "pretext",
        "scssl_kwargs",
        "seed",
        "task",
        "threads",
        "verbose",
    }
)


@dataclass(frozen=True)
class TaskOption:
    """An option of a task function that ``scssl benchmark`` offers as a flag.

    Attributes
    ----------
    name
        Keyword of the task function; the flag is ``--`` + ``name`` with dashes.
    type
        Converts the flag's text (``str``, ``int``, ``float`` ...).
    help
        What it does and its default, for ``scssl benchmark --help``.
    scssl_kwarg
        Passed inside ``scssl_kwargs`` (an option of scssl's :class:`~scssl.model.SSLEncoder`)
        instead of as a keyword of the task function.

    """

    name: str
    type: Callable[[str], Any] = str
    help: str = ""
    scssl_kwarg: bool = False

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return "--" + self.name.replace("_", "-")


TaskFunction = Callable[..., BenchmarkResult]
TASKS: dict[str, TaskFunction] = {}
#: Methods each task can run, in default order.
TASK_METHODS: dict[str, tuple[str, ...]] = {}
#: obs columns each task needs (``"batch_key"``, ``"labels_key"``).
TASK_REQUIRES: dict[str, tuple[str, ...]] = {}
#: Options each task offers on the command line.
TASK_OPTIONS: dict[str, tuple[TaskOption, ...]] = {}
#: Tasks whose data are a MuData (``.h5mu``) rather than an AnnData.
MUDATA_TASKS: set[str] = set()


def register_task(
    name: str,
    methods: Sequence[str],
    requires: Sequence[RequiredKey] = (),
    mudata: bool = False,
    options: Sequence[TaskOption] = (),
) -> Callable[[TaskFunction], TaskFunction]:
    """Register a benchmark task under ``name``.

    Parameters
    ----------
    name
        Task name used by :func:`~scssl.benchmark.run_benchmark` and ``scssl benchmark --task``.
    methods
        Methods the task knows, in default order.
    requires
        Which of ``"batch_key"`` and ``"labels_key"`` the task cannot run without.
    mudata
        The task takes a MuData (multimodal data) instead of an AnnData.
    options
        Further keywords of the task function offered by ``scssl benchmark`` as flags.

    """
    unknown = [key for key in requires if key not in REQUIRED_KEYS]
    if unknown:
        raise ValueError(f"requires={unknown}; a task can require {list(REQUIRED_KEYS)}.")
    reserved = [option.name for option in options if option.name in RESERVED_OPTION_NAMES]
    if reserved:
        raise ValueError(
            f"Task option(s) {reserved} of {name!r} clash with options of run_benchmark or "
            "scssl benchmark; name them otherwise."
        )

    def decorator(function: TaskFunction) -> TaskFunction:
        TASKS[name] = function
        TASK_METHODS[name] = tuple(methods)
        TASK_REQUIRES[name] = tuple(requires)
        TASK_OPTIONS[name] = tuple(options)
        if mudata:
            MUDATA_TASKS.add(name)
        else:
            MUDATA_TASKS.discard(name)
        return function

    return decorator


def unregister_task(name: str) -> None:
    """Remove a task from the registry (e.g. one registered by a test)."""
    for registry in (TASKS, TASK_METHODS, TASK_REQUIRES, TASK_OPTIONS):
        registry.pop(name, None)
    MUDATA_TASKS.discard(name)


def check_methods(task: str, methods: Sequence[str] | None) -> list[str]:
    """``methods``, or all of the task's, after checking that the task knows them."""
    known = TASK_METHODS[task]
    if methods is None:
        return list(known)
    methods = list(methods)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(
            f"Unknown method(s) {unknown} for task {task!r}; choose from {list(known)}."
        )
    if not methods:
        raise ValueError(f"No methods given for task {task!r}; choose from {list(known)}.")
    return methods


def progress(message: str, verbose: bool) -> None:
    """Print a progress message of a benchmark run when ``verbose``."""
    if verbose:
        print(message, flush=True)
