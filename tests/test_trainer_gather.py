"""Negatives gathered across processes: every query meets the whole global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_trainer_supervised import _salad_pairs, _write_pairs

from ragkit.trainer.losses import gather_rows


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    local = torch.full((2, 3), float(rank + 1), requires_grad=True)
    gathered = gather_rows(local)
    # Each rank's loss touches every gathered row: the gradient reaches the rows' owners.
    gathered.sum().backward()
    result = {
        "shape": list(gathered.shape),
        "values": gathered[:, 0].tolist(),
        "grad": local.grad[0, 0].item(),
    }
    Path(out, f"{rank}.json").write_text(json.dumps(result))
    dist.barrier()  # neither rank tears gloo down while the other still uses the connection
    dist.destroy_process_group()
    # The results are on disk; leave without running C++ static destructors, where gloo's
    # threads can abort a finished worker at exit (SIGABRT, seen on a loaded machine).
    os._exit(0)


def test_gather_rows_joins_every_process_with_gradients(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = json.loads((tmp_path / f"{rank}.json").read_text())
        assert result["shape"] == [4, 3]
        assert result["values"] == [1.0, 1.0, 2.0, 2.0]
        assert result["grad"] == 2.0  # one from its own loss, one through the other rank's


def test_gather_rows_is_identity_on_one_process():
    tensor = torch.ones(3, 2)
    assert gather_rows(tensor) is tensor


def test_supervised_stage_under_two_processes(tiny_causal_dir, tmp_path):
    pairs = _write_pairs(tmp_path / "pairs.jsonl", _salad_pairs(32, 0))
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate
    out = tmp_path / "ddp"
    command = [accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ragkit", "train"]
    command += ["--backbone", str(tiny_causal_dir), "--stages", "supervised", "--pairs", str(pairs)]
    command += ["--steps", "3", "--batch-size", "8", "--max-length", "24", "--out", str(out)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(row["loss"] > 0 for row in rows)
