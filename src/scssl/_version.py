"""The installed version of scssl, importable by every submodule without the root package."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scssl")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
