"""The version of swinfuse (pyproject.toml reads it from here): a leaf module, so the package root and the code
that records the version (the batch manifest) import it without importing each other."""

__version__ = "0.1.0"
