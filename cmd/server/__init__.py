"""``python -m cmd.server -conf configs/``: run the service."""
