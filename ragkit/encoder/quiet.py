"""Silence transformers' own logging and progress bars while ragkit shows its own."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide load-time chatter (GGUF progress bars, unused-weight notes) for one block.

    ragkit reports what matters (conversion, truncation, the attention check) itself; the
    raw messages are noise in a terminal tool and leak into ``--json`` output otherwise.
    """
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars_were_enabled:
            hf_logging.enable_progress_bar()
        hub_logger.setLevel(hub_level)
