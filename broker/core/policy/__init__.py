"""IAM policy language: parse -> validate -> compile -> evaluate."""
