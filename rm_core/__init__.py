"""Shared, pure pieces of restic-manager: protocol and API models, ids, versions."""
