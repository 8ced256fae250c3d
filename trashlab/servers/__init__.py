"""What replaces Docker: nats-server processes (Broker, Cluster, accounts), the names that stand for
containers (``iot-msg``), server addresses, child processes and their clean-up, monitoring, and the
lab's literal Docker commands where an engine exists."""

from .._lazy import submodules

__getattr__ = submodules(__name__)
