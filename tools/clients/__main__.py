"""``python -m tools.clients``: builds the Node and the Go client (each a no-op when current)."""

from __future__ import annotations

import sys

from tools.clients import go, node

if __name__ == "__main__":
    print(f"node client: {node.build()}", file=sys.stderr)
    print(f"go client: {go.build()}", file=sys.stderr)
