"""The auth epoch (see `coderapi.store.auth_epoch`): read per inference request, raised by changes."""

from coderapi.store.auth_epoch import bump, current

__all__ = ["bump", "current"]
