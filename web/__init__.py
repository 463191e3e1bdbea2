"""The aiohttp API server."""
