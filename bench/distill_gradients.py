"""How hard each term of the supervised loss pulls: gradient norms on the score matrix.

Weights of loss terms are only comparable through their gradients. For real batches of a few
pair sets, this embeds 64 queries and their positives with the student and with the teacher
and reports, for InfoNCE, the KL distillation term and the correlation term, the loss and the
norm of its gradient with respect to the student's score matrix (cosine / 0.05), plus the
Pearson correlation between student and teacher scores. A weight that gives the correlation
term the KL term's gradient norm weighs the two alike.

    python bench/distill_gradients.py --teacher <all-MiniLM-L6-v2 folder> \
        --pairs data/wiki-sentences.jsonl.gz --pairs ../shared/datasets/train/squad.jsonl.gz \
        --out eval-results/distill-gradients.json
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ragkit.encoder import Encoder
from ragkit.trainer.losses import correlation_distillation, distillation_kl
from ragkit.trainer.pairs import Pair, read_pairs
from ragkit.trainer.teacher import TEACHER_TEMPERATURE, load_teacher_encoder

STUDENT_TEMPERATURE = 0.05


def sample_pairs(path: Path, count: int, seed: int) -> list[Pair]:
    """A seeded sample of one pairs file, read and checked as ``ragkit train`` reads it."""
    pairs = read_pairs([path]).pairs
    random.Random(seed).shuffle(pairs)
    return pairs[:count]


def scores(encoder, pairs: list[Pair], temperature: float) -> torch.Tensor:
    """Query-by-positive score matrix; a file's own ``instruction`` wins over the encoder's."""
    instruction = pairs[0].instruction
    if instruction is None:
        instruction = encoder.config.instructions.get("query", "")
    queries = [pair.query for pair in pairs]
    query_vectors = np.asarray(encoder.encode(queries, instruction=instruction, warn_truncated=False))
    passages = np.asarray(
        encoder.encode([pair.positive for pair in pairs], instruction="", warn_truncated=False)
    )
    return torch.tensor(query_vectors @ passages.T / temperature, dtype=torch.float32)


def term_report(student: torch.Tensor, teacher: torch.Tensor) -> dict:
    allowed = torch.ones_like(student, dtype=torch.bool)
    terms = {
        "infonce": lambda s: F.cross_entropy(s, torch.arange(len(s))),
        "kl": lambda s: distillation_kl(s, teacher, allowed),
        "correlation": lambda s: correlation_distillation(s, teacher, allowed),
    }
    report = {}
    for name, term in terms.items():
        leaf = student.clone().requires_grad_(True)
        loss = term(leaf)
        (gradient,) = torch.autograd.grad(loss, leaf)
        report[name] = {"loss": round(loss.item(), 4), "gradient_norm": round(gradient.norm().item(), 5)}
    report["pearson"] = round(1 - report["correlation"]["loss"], 4)
    report["kl_to_correlation_gradient"] = round(
        report["kl"]["gradient_norm"] / report["correlation"]["gradient_norm"], 2
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="default", help="the student")
    parser.add_argument("--teacher", required=True, help="anything --teacher takes")
    parser.add_argument("--pairs", type=Path, action="append", required=True)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    student = Encoder.from_pretrained(args.encoder)
    teacher = load_teacher_encoder(args.teacher)
    results = {}
    for path in args.pairs:
        pairs = sample_pairs(path, args.rows, args.seed)
        report = term_report(
            scores(student, pairs, STUDENT_TEMPERATURE), scores(teacher, pairs, TEACHER_TEMPERATURE)
        )
        results[path.name] = report
        print(f"{path.name}: {json.dumps(report)}")
    if args.out:
        args.out.write_text(
            json.dumps({"encoder": args.encoder, "rows": args.rows, "sets": results}, indent=2)
        )


if __name__ == "__main__":
    main()
