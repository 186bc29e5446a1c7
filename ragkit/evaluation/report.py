"""Evaluation output for people: a terminal table, a Markdown report and a chart."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

_COLUMNS = (
    ("ndcg@10", "nDCG@10"),
    ("recall@10", "R@10"),
    ("recall@100", "R@100"),
    ("mrr@10", "MRR@10"),
    ("map@100", "MAP@100"),
)


def _delta(entry: dict) -> tuple[str, str]:
    if entry.get("delta_vs_causal_mean") is None:
        return "–", "–"
    low, high = entry["ci95"]
    p = entry["p_value"]
    return f"{entry['delta_vs_causal_mean']:+.3f} [{low:+.3f}, {high:+.3f}]", f"{p:.3g}"


def retrieval_table(result: dict) -> Table:
    title = (
        f"{result['dataset']} · {result['split']} · {result['num_queries']} queries · "
        f"{result['corpus_size']:,} documents"
    )
    if result["corpus_size"] != result["full_corpus_size"]:
        title += f" (sampled from {result['full_corpus_size']:,}, seed {result['seed']})"
    table = Table(title=title, title_justify="left")
    table.add_column("system", style="bold")
    for _, label in _COLUMNS:
        table.add_column(label, justify="right")
    table.add_column("Δ nDCG@10 vs causal-mean [95% CI]", justify="right")
    table.add_column("p", justify="right")
    best = max(e["ndcg@10"] for e in result["systems"].values())
    for name, entry in result["systems"].items():
        cells = [f"{entry[key]:.3f}" for key, _ in _COLUMNS]
        if entry["ndcg@10"] == best:
            cells[0] = f"[green]{cells[0]}[/]"
        table.add_row(name, *cells, *_delta(entry))
    return table


def sts_table(result: dict) -> Table:
    table = Table(title=f"{result['dataset']} · {result['pairs']} pairs", title_justify="left")
    table.add_column("system", style="bold")
    table.add_column("Spearman", justify="right")
    table.add_column("Pearson", justify="right")
    table.add_column("Δ Spearman vs causal-mean [95% CI]", justify="right")
    for name, entry in result["systems"].items():
        delta = entry.get("delta_vs_causal_mean")
        shown = "–" if delta is None else f"{delta['delta']:+.3f}"
        if delta is not None and delta["ci95"] is not None:
            shown += f" [{delta['ci95'][0]:+.3f}, {delta['ci95'][1]:+.3f}]"
        table.add_row(name, f"{entry['spearman']:.3f}", f"{entry['pearson']:.3f}", shown)
    return table


def pseudo_query_notes(result: dict) -> list[str]:
    """What a test set made from documents is, and how far its numbers can be trusted."""
    from ragkit.evaluation.pseudo_queries import MEANINGFUL_QUERIES

    kinds, total = result["query_kinds"], result.get("num_queries", 0)
    if not kinds.get("heading"):
        notes = [
            f"No judged queries came with these documents, and they have no headings: only cloze "
            f"queries were made ({kinds['cloze']} sentences taken out of runs of paragraphs; each "
            "query's one relevant passage is the run it came from). Cloze queries favour paraphrase."
        ]
    else:
        notes = [
            f"No judged queries came with these documents: the test set was made from their "
            f"structure ({kinds['heading']} heading queries, {kinds['cloze']} cloze sentences taken out "
            "of their sections; each query's one relevant passage is its own section). Heading "
            "queries favour lexical matching (BM25); cloze queries favour paraphrase."
        ]
    if total < MEANINGFUL_QUERIES:
        notes.append(
            f"Only {total} queries could be made: one query moves nDCG@10 by up to {1 / max(total, 1):.2f}, "
            f"so differences between systems below that are noise; a test set wants {MEANINGFUL_QUERIES}+ "
            "queries (more documents, or documents with more sections)."
        )
    return notes


def markdown_report(result: dict, command: str | None = None) -> str:
    lines = [f"# Retrieval evaluation: {result['dataset']} ({result['split']})", ""]
    lines.append(
        f"{result['num_queries']} queries, {result['corpus_size']:,} documents"
        + (
            f" (sampled from {result['full_corpus_size']:,} with seed {result['seed']}: every "
            "judged document plus random others)"
            if result["corpus_size"] != result["full_corpus_size"]
            else " (full corpus)"
        )
        + f"; exact inner-product search; {result['seconds']:.0f} s."
        + (
            " A retrieved document with the query's own id is not scored (BEIR's protocol)."
            if result.get("identical_ids_dropped", True)
            else " Retrieved documents with the query's own id are scored (--keep-identical-ids)."
        )
    )
    kinds = result.get("query_kinds")
    if kinds:
        lines += ["", " ".join(pseudo_query_notes(result))]
    if command:
        lines += ["", "```bash", command, "```"]
    lines += [
        "",
        "| system | "
        + " | ".join(label for _, label in _COLUMNS)
        + " | Δ nDCG@10 vs causal-mean [95% CI] | p |",
        "|---" * (len(_COLUMNS) + 3) + "|",
    ]
    for name, entry in result["systems"].items():
        delta, p = _delta(entry)
        lines.append(
            f"| {name} | " + " | ".join(f"{entry[k]:.3f}" for k, _ in _COLUMNS) + f" | {delta} | {p} |"
        )
    lines += [
        "",
        "Δ: paired per-query difference; interval from a 10,000-sample bootstrap over queries; "
        "p from a paired randomisation test (10,000 sign flips), two-sided.",
        "",
        "![nDCG@10 by system](ndcg.png)",
        "",
    ]
    return "\n".join(lines)


def ndcg_chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["systems"])
    values = [result["systems"][n]["ndcg@10"] for n in names]
    low = [v - result["systems"][n]["ndcg@10_ci95"][0] for n, v in zip(names, values, strict=True)]
    high = [result["systems"][n]["ndcg@10_ci95"][1] - v for n, v in zip(names, values, strict=True)]
    colors = ["#2b8a3e" if n == "ragkit" else "#868e96" if n == "causal-mean" else "#4c6ef5" for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names)), 3.8), dpi=120)
    bars = ax.bar(names, values, yerr=[low, high], capsize=5, color=colors)
    top = max(v + h for v, h in zip(values, high, strict=True))
    for bar, value, above in zip(bars, values, high, strict=True):
        # Above the error bar, so short bars keep a readable label.
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            value + above + 0.015 * top,
            f"{value:.3f}",
            ha="center",
            va="bottom",
            fontsize=9,
            fontweight="bold",
        )
    ax.set_ylabel("nDCG@10 (95% CI)")
    ax.set_ylim(0, min(1.05, top * 1.15))
    ax.set_title(
        f"{result['dataset']} {result['split']}: {result['num_queries']} queries, "
        f"{result['corpus_size']:,} docs",
        fontsize=10,
    )
    ax.spines[["top", "right"]].set_visible(False)
    plt.xticks(rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(result: dict, out: Path, command: str | None = None) -> list[Path]:
    """``results.json``, ``report.md`` and ``ndcg.png`` in ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "report.md", out / "ndcg.png"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(markdown_report(result, command))
    ndcg_chart(result, paths[2])
    return paths
