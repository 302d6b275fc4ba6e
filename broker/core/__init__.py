"""Pure domain layer: no I/O, no aiohttp, no store. Time and randomness come in as arguments."""
