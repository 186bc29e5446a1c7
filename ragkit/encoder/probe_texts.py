"""The documentation prose ragkit checks reduced precision on (``probe_texts.json``).

Real passages, not random token ids: rounding hurts rare tokens most, and a check on text
people index measures what they will see. Read by the bf16 retrieval check, the OpenVINO
engine's bf16 load check and the export check.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path


@functools.cache
def probe_texts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The probe passages and queries shipped with ragkit."""
    data = json.loads((Path(__file__).with_name("probe_texts.json")).read_text(encoding="utf-8"))
    return tuple(data["passages"]), tuple(data["queries"])
