"""The lab's microservices: the gateway simulator, the collector, the report service (and its level
stores), and the same services as separate processes like the lab's containers."""

from .._lazy import submodules

__getattr__ = submodules(__name__)
