"""swinfuse: text-guided infrared-visible image fusion (SwinFusion encoders + Text-IF prompt modulation).

Imports nothing heavy: `swinfuse --help` must stay instant.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
