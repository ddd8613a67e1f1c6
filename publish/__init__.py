"""hubpub: publish quantized model variants to Hugging Face Hub branches, with checked checkpoints and true cards."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hubpub")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
