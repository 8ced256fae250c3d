"""What a notebook shows: the live dashboard and plots."""

from .._lazy import submodules

__getattr__ = submodules(__name__)
