"""Sealing committed audit events into the hash chain (completed by the audit-chain work)."""


def seal_soon() -> None:
    """Called after every commit that wrote events. Sealing itself is not built yet."""
    return None
