"""Queries, one module per table family. Each function takes an open Session and returns ORM
rows or plain values; transactions and DTOs belong to the services."""

from coderapi.crud import keys, reservations, rows, usage, users

__all__ = ["keys", "reservations", "rows", "usage", "users"]
