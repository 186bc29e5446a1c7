"""Where ragkit keeps converted models and other per-user state."""

from __future__ import annotations

import os
from pathlib import Path


def ragkit_home() -> Path:
    """Return ``$RAGKIT_HOME`` or ``~/.cache/ragkit``, created on first use.

    One override variable is enough for CI, tests and shared machines to keep caches apart.
    """
    root = Path(os.environ.get("RAGKIT_HOME") or Path.home() / ".cache" / "ragkit").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root
