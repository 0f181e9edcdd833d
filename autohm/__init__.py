"""autohm: hardware-aware AutoML for Mamba models."""

from autohm.errors import AutohmError

__version__ = "0.1.0"
__all__ = ["AutohmError", "__version__"]
