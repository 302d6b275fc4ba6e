"""HTTP layer: aiohttp handlers and the AWS query-protocol codec."""
