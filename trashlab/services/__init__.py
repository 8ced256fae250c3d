"""The lab's microservices: the gateway simulator, the collector, the report service (and its level
stores), and the same services as separate processes like the lab's containers."""
