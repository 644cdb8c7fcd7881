"""Multi-VAE collaborative filtering and the analyses of its Quarto book."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("recsys")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
