"""Unit tests of the IAM policy engine (broker.core.policy)."""
