"""hubpub: publish quantized model variants to Hugging Face Hub branches, with checked checkpoints and true cards."""

# The one place the version is written: pyproject.toml reads it (setuptools dynamic version), and reading it here
# costs nothing, where importlib.metadata costs 20-90 ms on every command.
__version__ = "0.1.0"

__all__ = ["__version__"]
