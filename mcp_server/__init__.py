"""mcp_server: the application -- MCP tools, settings and the ``mnemolog`` command line.

The composition root: it builds the event log and the index from one ``Settings`` and hands
them to the MCP server (``app``) or the command line (``cli``), which share ``service``.
"""

from __future__ import annotations

# Kept equal to pyproject.toml's version by a test; importlib.metadata costs startup time.
__version__ = "0.1.0"
