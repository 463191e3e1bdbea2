"""Quality gates: rules (plugins) that decide whether a stage may reach its checkpoint."""
