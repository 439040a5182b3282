"""Service layer: transport adapters over the use cases."""
