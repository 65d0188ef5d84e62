"""The HTTP API on aiohttp.

The route table and the app (`app`), handlers by resource, middleware,
authentication, and the wire formats (`views`, `openapi`).
"""
