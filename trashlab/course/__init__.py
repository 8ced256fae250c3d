"""Course material used by the notebooks: exercise checks, the failover drill, the demo."""
