"""Queries, one module per table family. Each function takes an open Session and returns ORM
rows or plain values; transactions and DTOs belong to the services."""

from coderapi.crud import auth_epoch, keys, reservations, rows, usage, users

__all__ = ["auth_epoch", "keys", "reservations", "rows", "usage", "users"]
