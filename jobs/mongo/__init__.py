"""MongoDB adapters."""
