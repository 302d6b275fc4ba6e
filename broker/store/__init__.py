"""Store layer: the ``Store`` protocol (``base``) and its backends (memory, sqlite, redis)."""
