"""Typed library errors. Each carries a one-line message; the CLI prints it as `Error: ...` and exits 1."""


class SwinfuseError(Exception):
    """Base class of every error swinfuse raises on purpose."""


class ConfigError(SwinfuseError, ValueError):
    """A model configuration value is invalid."""


class ShapeError(SwinfuseError, ValueError):
    """A tensor reached the model with a shape it cannot use."""


class CheckpointError(SwinfuseError):
    """A weights file is missing, corrupt, not a swinfuse checkpoint, or does not match its config."""


class TextEncoderError(SwinfuseError):
    """A text encoder cannot be built or loaded (unknown name or tag, no network, wrong file)."""


class InputError(SwinfuseError):
    """An input image or folder cannot be used (missing, unreadable, mismatched sizes, no pairs)."""


class OutputError(SwinfuseError):
    """An output path cannot be written."""


class DeviceError(SwinfuseError):
    """The requested device or precision is not available."""
