"""ragkit serve: one warm index behind MCP tools and a JSON HTTP API."""
