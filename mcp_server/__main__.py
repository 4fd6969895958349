"""``python -m mcp_server``: the ``mnemolog`` command line without installing the script."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
