"""Course material used by the notebooks: exercise checks, the failover drill, the demo."""

from .._lazy import submodules

__getattr__ = submodules(__name__)
