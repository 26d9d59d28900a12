"""The admin API: thin aiohttp handlers, their store queries and the OpenAPI document."""
