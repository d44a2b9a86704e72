"""Sphinx configuration for scssl."""

import os
import socket
from importlib.metadata import version as _version

project = "scssl"
author = "scssl developers"
copyright = "2026, scssl developers"
release = _version("scssl")

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx_autodoc_typehints",
]
autosummary_generate = True
napoleon_numpy_docstring = True
napoleon_google_docstring = False
nb_execution_mode = "off"
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "sphinx_book_theme"
html_title = "scssl"
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
    "torch": ("https://pytorch.org/docs/stable/", None),
}


def _online(host: str = "docs.python.org") -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


# Offline (or SCSSL_DOCS_OFFLINE=1): no cross-links to other projects' docs, so that
# `sphinx-build -W` does not fail on unreachable inventories.
if os.environ.get("SCSSL_DOCS_OFFLINE") == "1" or not _online():
    print("scssl docs: offline, building without intersphinx links")
    intersphinx_mapping = {}
