"""Tests: the table-driven policy suite, run on the engine and through SimulateCustomPolicy."""
