"""``ragkit eval``: prove on a dataset that the encoder beats the causal baseline."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from ragkit.cli.console import err, fail, out, safe
from ragkit.cli.options import (
    DenseWeightOption,
    DeviceOption,
    EncoderOption,
    JsonOption,
    RayOption,
    RayWorkersOption,
    dense_weight_fusion,
)

DatasetOption = Annotated[
    Path | None,
    typer.Argument(
        help="BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv; .gz ok), or a "
        "public BEIR set by name (scifact, nfcorpus, fiqa, ...), downloaded once into "
        "$RAGKIT_HOME/datasets.",
        show_default=False,
    ),
]
SplitOption = Annotated[str, typer.Option(help="Which qrels/SPLIT.tsv to score.")]
SystemsOption = Annotated[
    str | None,
    typer.Option(
        help="Comma list from: ragkit, causal-mean, causal-last, bidirectional-mean, bm25, "
        "minilm. Default: all (minilm when installed)."
    ),
]
MaxDocsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Keep every judged document plus a seeded random sample of the rest, "
        "N in all (CPU-sized runs). Default: the whole corpus.",
    ),
]
SeedOption = Annotated[int, typer.Option(help="Seed for --max-docs sampling and the bootstrap.")]
MaxLengthOption = Annotated[
    int | None, typer.Option(min=8, help="Truncate texts to N tokens (default: the encoder's).")
]
BatchSizeOption = Annotated[int, typer.Option(min=1, help="Texts per encoding batch at most.")]
InstructionOption = Annotated[
    str | None,
    typer.Option(
        help="Query instruction for the decoder systems instead of the one the encoder was "
        "trained with, e.g. a task's own (reported in the results)."
    ),
]
KeepIdenticalIdsOption = Annotated[
    bool,
    typer.Option(
        "--keep-identical-ids",
        help="Score a retrieved document whose id is the query's own (by default it is dropped, "
        "as BEIR's and MTEB's evaluators do).",
    ),
]
StsOption = Annotated[
    Path | None,
    typer.Option(help="Score an STS file instead (score, sentence1, sentence2; tab-separated)."),
]
CorpusDtypeOption = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="How the encoder's corpus is embedded, as ragkit index embeds documents: float32 on the "
        "fastest engine that agrees with torch (the OpenVINO engine on a CPU; the default on a CPU), "
        "auto (the precision an index built here would use: bf16 where the CPU has native bf16 and "
        "the encoder passes the retrieval check), bfloat16 or float16 (as asked). Vectors in another "
        "precision are cached apart. Queries are float32 on torch. Default on CUDA: the encoder's own.",
        show_default=False,
    ),
]
OutDirOption = Annotated[
    Path | None, typer.Option("--out", help="Write results.json, report.md and ndcg.png here.")
]


def _write_results(result: dict, out_dir: Path, command: str | None, *, sts: bool) -> list[Path]:
    """sts.json for STS; results.json, report.md and the plot for retrieval."""
    if sts:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "sts.json").write_text(json.dumps(result, indent=2) + "\n")
        return [out_dir / "sts.json"]
    from ragkit.evaluation.report import write_outputs

    return write_outputs(result, out_dir, command)


def _corpus_dtype(dtype: str | None, device: str | None) -> str | None:
    from ragkit.evaluation.corpus_encoder import default_corpus_dtype

    return dtype if dtype is not None else default_corpus_dtype(device)


def _check_flags(dataset, sts, ray, ray_workers, dense_weight, dtype) -> None:
    """Refuse flags that cannot go together, before any model loads."""
    if dataset is None and sts is None:
        fail("give a BEIR dataset folder, or --sts FILE")
    if ray_workers is not None and not ray:
        fail("--ray-workers needs --ray")
    if ray and sts is not None:
        fail("--ray embeds a retrieval corpus; STS-B sentences are encoded here")
    if dense_weight is not None and sts is not None:
        fail("--dense-weight weighs the hybrid system's rankings; STS-B has none")
    if dtype is None:
        return
    from ragkit.encoder.document_precision import DTYPES

    if dtype not in DTYPES:
        fail(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if sts is not None:
        fail("--dtype sets how a retrieval corpus is embedded; STS-B sentences are encoded as it loads")
    if ray:
        fail("--ray workers embed the corpus as they load the encoder; drop --dtype or --ray")


def eval_command(
    dataset: DatasetOption = None,
    split: SplitOption = "test",
    encoder: EncoderOption = "default",
    systems: SystemsOption = None,
    max_docs: MaxDocsOption = None,
    seed: SeedOption = 0,
    max_length: MaxLengthOption = None,
    batch_size: BatchSizeOption = 32,
    instruction: InstructionOption = None,
    keep_identical_ids: KeepIdenticalIdsOption = False,
    dense_weight: DenseWeightOption = None,
    sts: StsOption = None,
    out_dir: OutDirOption = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
    ray: RayOption = None,
    ray_workers: RayWorkersOption = None,
    dtype: CorpusDtypeOption = None,
) -> None:
    """Compare the encoder with causal baselines, BM25 and MiniLM: nDCG@10, recall, MRR, MAP.

    Every system runs on the same corpus and queries with exact search; each is compared with
    causal-mean per query (bootstrap interval, randomisation-test p). Vectors are cached per
    encoder fingerprint, so reruns and second encoders skip work already done. The encoder's
    corpus is embedded as ``ragkit index`` would, on the fastest engine that gives the same
    vectors; ``--dtype auto`` also picks bf16 where the index would (cached apart from float32).
    """
    from ragkit.evaluation.progress import RichReporter

    _check_flags(dataset, sts, ray, ray_workers, dense_weight, dtype)
    invoked_as_cli = Path(sys.argv[0]).name in ("ragkit", "__main__.py")
    command = "ragkit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if invoked_as_cli else None
    with RichReporter(err) as reporter:
        common = {
            "encoder": encoder,
            "systems": systems,
            "max_length": max_length,
            "batch_size": batch_size,
            "device": device,
            "reporter": reporter,
        }
        if sts is not None:
            from ragkit.evaluation.sts import evaluate_sts

            result = evaluate_sts(sts, **common)
        else:
            from ragkit.evaluation.retrieval import evaluate_retrieval

            result = evaluate_retrieval(
                dataset,
                split=split,
                max_docs=max_docs,
                seed=seed,
                instruction=instruction,
                keep_identical_ids=keep_identical_ids,
                fusion=dense_weight_fusion(dense_weight),
                ray=ray,
                ray_workers=ray_workers,
                document_dtype=None if ray else _corpus_dtype(dtype, device),
                **common,
            )
    if out_dir is not None:
        written = _write_results(result, out_dir, command, sts=sts is not None)
        if not as_json:
            err.print("wrote " + ", ".join(safe(p) for p in written))
    if as_json:
        public = {k: v for k, v in result.items() if k != "per_query_ndcg@10"}
        sys.stdout.write(json.dumps(public) + "\n")
        return
    from rich.markup import escape

    from ragkit.evaluation.report import retrieval_table, sts_table

    out.print(sts_table(result) if sts is not None else retrieval_table(result))
    if result.get("query_kinds"):
        from ragkit.evaluation.report import pseudo_query_notes

        for line in pseudo_query_notes(result):
            out.print(f"[dim]{escape(line)}[/]")
    out.print(f"[dim]{result['seconds']:.0f} s[/]")
