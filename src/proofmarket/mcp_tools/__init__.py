"""A node's catalogue as MCP tools, paid with x402 (``x402.mcp``) or an API key: ``catalog`` (the tools),
``server`` (the calls, forwarded to the node's HTTP routes), ``serve`` (stdio, streamable HTTP, the node's
``/mcp``)."""
