"""Checkpoints as safetensors + JSON: trainable weights, optimizer moments and the step.

Each checkpoint is written to a temporary folder and renamed into place, so a kill -9 at
any moment leaves either the previous checkpoint or the new one, never half of one. The
learning rate is a pure function of the step and every random draw is seeded from
(seed, stage, step), so weights + optimizer + step are all a resume needs to continue
bit-for-bit on the same hardware.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ragkit.atomic import atomic_folder
from ragkit.errors import RagkitError

STATE_FILE = "state.json"
WEIGHTS_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
_NAME = re.compile(r"^(?P<stage>[a-z]+)-(?P<step>\d{6})$")
KEEP = 2


class CheckpointError(RagkitError):
    """A checkpoint is missing, damaged or from a different run."""


@dataclass
class Checkpoint:
    stage: str
    step: int
    weights: dict
    optimizer_state: dict
    extra: dict


def _flatten_optimizer(state_dict: dict) -> tuple[dict, list]:
    tensors = {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
    return tensors, state_dict["param_groups"]


def _unflatten_optimizer(tensors: dict, groups: list) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    root: Path, stage: str, step: int, weights: dict, optimizer_state: dict, extra: dict
) -> Path:
    """Write ``root/<stage>-<step>`` atomically and prune all but the newest few."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{stage}-{step:06d}"
    with atomic_folder(target) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS_FILE))
        tensors, groups = _flatten_optimizer(optimizer_state)
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        body = {"stage": stage, "step": step, "param_groups": groups, **extra}
        (tmp / STATE_FILE).write_text(json.dumps(body, indent=2))
    for old in list_checkpoints(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(root: Path, stage_order: tuple[str, ...] = ("mntp", "simcse")) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of a killed write are ignored)."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir():
            stage = match["stage"]
            order = stage_order.index(stage) if stage in stage_order else len(stage_order)
            found.append((order, int(match["step"]), path))
    return [path for *_, path in sorted(found)]


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint back; damage is a clear error naming the folder, never a crash."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        body = json.loads((path / STATE_FILE).read_text())
        weights = load_file(str(path / WEIGHTS_FILE))
        optimizer = load_file(str(path / OPTIMIZER_FILE))
        stage, step, groups = body.pop("stage"), int(body.pop("step")), body.pop("param_groups")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is damaged ({type(exc).__name__}: {str(exc)[:200]}); delete it to "
            "resume from the one before, or start again without --resume"
        ) from None
    return Checkpoint(stage, step, weights, _unflatten_optimizer(optimizer, groups), body)
