"""An AWS-compatible IAM + STS credential broker."""

__version__ = "0.1.0"
