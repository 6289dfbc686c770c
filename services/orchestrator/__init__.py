"""The orchestrator: owns the catalog; reacts to commands, launches workloads, records outcomes."""
