"""What a cold query would cost without torch: a NumPy forward of the merged weights.

    python bench/torch_free_query.py [--index DIR] [--runs 3] [--out results.json]

A measurement, not a ragkit code path. A fresh process opens the index and searches it
(hybrid, k=5) with a query encoder made of the ``tokenizers`` tokenizer, ragkit's input
builder and a NumPy forward pass over the default encoder's merged, verified weights
(the safetensors file mapped into NumPy arrays): it never imports torch or transformers, which it checks.
Interleaved with it, round by round: ``Index.search`` with the encoder loaded ``lean`` (as
``ragkit ask`` does). Reports the cold wall time, peak RSS, whether torch was imported, the
hits of each and the cosine between the two query vectors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ask_memory import measure as fresh_process
from bench_output import emit

HERE = Path(__file__).resolve().parent
QUERY = "How do I resume an interrupted training run?"

NUMPY_QUERY = r"""
import json, sys
from pathlib import Path
import numpy as np
from ragkit import Index
from ragkit.encoder.inputs import InputBuilder
from ragkit.encoder.light_tokenizer import LightTokenizer

merged, tokenizer_dir, settings, index_dir, query = sys.argv[1:6]
settings = json.loads(settings)
config = json.loads((Path(merged) / "config.json").read_text())
weights = {}
for path in sorted(Path(merged).glob("*.safetensors")):
    # The file mapped, not read: each tensor is a read-only view of the page cache.
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    header.pop("__metadata__", None)
    for key, entry in header.items():
        assert entry["dtype"] == "F32", entry["dtype"]
        start, end = entry["data_offsets"]
        weights[key.removeprefix("model.")] = np.memmap(
            path, dtype=np.float32, mode="r", offset=8 + size + start, shape=tuple(entry["shape"])
        )
heads, kv = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
head_dim = config.get("head_dim") or config["hidden_size"] // heads
eps = config.get("rms_norm_eps", 1e-6)
theta = (config.get("rope_parameters") or {}).get("rope_theta", config.get("rope_theta", 10000.0))
inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)

def norm(x, w):
    return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))

def rotate(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], -1)

def forward(ids):
    length = len(ids)
    hidden = weights["embed_tokens.weight"][ids]
    angles = np.arange(length, dtype=np.float32)[:, None] * inv_freq[None]
    angles = np.concatenate([angles, angles], -1)
    cos, sin = np.cos(angles)[None], np.sin(angles)[None]
    for i in range(config["num_hidden_layers"]):
        p = f"layers.{i}."
        x = norm(hidden, weights[p + "input_layernorm.weight"])
        q = (x @ weights[p + "self_attn.q_proj.weight"].T).reshape(length, heads, head_dim).transpose(1, 0, 2)
        k = (x @ weights[p + "self_attn.k_proj.weight"].T).reshape(length, kv, head_dim).transpose(1, 0, 2)
        v = (x @ weights[p + "self_attn.v_proj.weight"].T).reshape(length, kv, head_dim).transpose(1, 0, 2)
        q, k = q * cos + rotate(q) * sin, k * cos + rotate(k) * sin
        k, v = np.repeat(k, heads // kv, 0), np.repeat(v, heads // kv, 0)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(head_dim)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attended = (scores / scores.sum(-1, keepdims=True)) @ v
        attended = attended.transpose(1, 0, 2).reshape(length, -1)
        hidden = hidden + attended @ weights[p + "self_attn.o_proj.weight"].T
        x = norm(hidden, weights[p + "post_attention_layernorm.weight"])
        gate = x @ weights[p + "mlp.gate_proj.weight"].T
        up = x @ weights[p + "mlp.up_proj.weight"].T
        hidden = hidden + (gate / (1 + np.exp(-gate)) * up) @ weights[p + "mlp.down_proj.weight"].T
    return norm(hidden, weights["norm.weight"])

class NumpyQueryEncoder:
    def __init__(self):
        self.fingerprint = settings["fingerprint"]
        self.dimension = config["hidden_size"]
        self.inputs = InputBuilder(LightTokenizer(Path(tokenizer_dir)), settings["max_length"])

    def encode_queries(self, texts, **_):
        rows = []
        for item in self.inputs.build(list(texts), settings["instruction"]):
            vector = forward(item.ids)[item.pool_start:].mean(0)
            rows.append(vector / np.linalg.norm(vector))
        return np.stack(rows)

encoder = NumpyQueryEncoder()
index = Index.open(index_dir, encoder=encoder)
hits = index.search(query, k=5)
vector = encoder.encode_queries([query])[0]
print(json.dumps({"hits": [h.chunk_id for h in hits], "torch": "torch" in sys.modules,
                  "transformers": "transformers" in sys.modules, "vector": vector.tolist()}))
"""

LEAN_QUERY = r"""
import json, sys
from ragkit import Index
index = Index.open(sys.argv[1])
hits = index.search(sys.argv[2], k=5)
vector = index.encoder.encode_queries([sys.argv[2]])[0]
print(json.dumps({"hits": [h.chunk_id for h in hits], "torch": "torch" in sys.modules,
                  "transformers": "transformers" in sys.modules, "vector": vector.tolist()}))
"""


def measure(command: list[str]) -> tuple[float, float, dict]:
    """(seconds, peak RSS in MB, the child's JSON line) of one fresh process."""
    seconds, peak, output = fresh_process(command)
    return seconds, peak, json.loads(output.splitlines()[-1])


def numpy_settings() -> tuple[str, str, dict]:
    """The default encoder's merged-weights folder, tokenizer folder and query settings."""
    from ragkit.encoder import Encoder
    from ragkit.encoder.merged import merged_folder
    from ragkit.encoder.resolve import resolve_encoder

    encoder = Encoder.from_pretrained("default", backend="lean")
    resolved = resolve_encoder("default")
    merged = merged_folder(resolved.backbone, resolved.adapters, resolved.config.layers)
    settings = {
        "fingerprint": encoder.fingerprint,
        "max_length": encoder.config.max_length,
        "instruction": encoder.config.instructions.get("query", ""),
    }
    return str(merged), str(resolved.tokenizer_folder), settings


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--index", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        index = args.index
        if index is None:
            index = Path(tmp) / "index"
            subprocess.run(
                [sys.executable, "-m", "ragkit", "index", str(HERE.parent / "docs"), "--index", str(index)],
                check=True,
                capture_output=True,
            )
        merged, tokenizer, settings = numpy_settings()
        systems = {
            "NumPy forward, no torch": [
                sys.executable,
                "-c",
                NUMPY_QUERY,
                merged,
                tokenizer,
                json.dumps(settings),
                str(index),
                QUERY,
            ],
            "Index.search, lean (as ragkit ask)": [sys.executable, "-c", LEAN_QUERY, str(index), QUERY],
        }
        rows: dict[str, list] = {name: [] for name in systems}
        for _ in range(args.runs):
            for name, command in systems.items():
                rows[name].append(measure(command))
    result: dict = {"query": QUERY, "runs": args.runs}
    vectors = {}
    for name, runs in rows.items():
        last = runs[-1][2]
        vectors[name] = last.pop("vector")
        result[name] = {
            "cold_s_median": round(statistics.median(r[0] for r in runs), 2),
            "cold_s": [round(r[0], 2) for r in runs],
            "peak_rss_mb_median": round(statistics.median(r[1] for r in runs)),
            **last,
        }
    import numpy as np

    a, b = (np.asarray(v) for v in vectors.values())
    result["query_vector_cosine"] = round(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), 6)
    emit(result, args.out)


if __name__ == "__main__":
    main()
