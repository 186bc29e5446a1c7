"""int8 documents for CPUs without bf16: NNCF post-training quantization of the OpenVINO engine.

    pip install nncf
    python bench/int8_documents.py [--calibration 64] [--rounds 3] [--out results.json]

The default encoder's fp32 OpenVINO engine is quantized by NNCF (weights and activations
int8, the transformer preset) on Wikipedia summaries from the packaged training corpus, once
with SmoothQuant (activation outliers moved into the weights, alpha 0.95 for matrix
products) and once without. Each quantized engine then faces the document-precision check
ragkit uses for bf16 (probe vectors within cosine 0.99 of fp32, top-10 neighbours agreeing
at 0.95 or more: ragkit/encoder/document_precision.py), and embeds the paragraphs of docs/
interleaved with torch fp32 and the fp32 engine, round by round. Not a ragkit code path:
a measurement of whether int8 is worth one.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import numpy as np
from bench_output import emit
from document_precision import paragraphs, rate

from ragkit.encoder import Encoder
from ragkit.encoder.document_precision import MIN_AGREEMENT, MIN_COSINE, measure
from ragkit.encoder.inputs import collate
from ragkit.encoder.openvino_engine import MODEL_FILE, OpenVinoBody
from ragkit.trainer.corpus import load_corpus

HERE = Path(__file__).resolve().parent


def calibration_inputs(encoder: Encoder, count: int) -> list[dict]:
    """Padded batches of 4 summaries each, as the engine receives them."""
    texts = load_corpus(None).passages[::97][:count]
    encoded = encoder._inputs.build(texts, "", encoder.config.document_max_length)
    batches = []
    for start in range(0, len(encoded), 4):
        batch = collate(encoded[start : start + 4], encoder._inputs.pad_id, encoder.padding_side)
        batches.append(
            {k: np.asarray(batch[k], dtype=np.int64) for k in ("input_ids", "attention_mask", "position_ids")}
        )
    return batches


def quantized(reference: Encoder, batches: list[dict], smooth_quant: bool) -> Encoder:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    body = reference.model
    core = ov.Core()
    model = core.read_model(Path(body.folder) / MODEL_FILE)
    alphas = AdvancedSmoothQuantParameters(matmul=0.95 if smooth_quant else -1.0)
    int8 = nncf.quantize(
        model,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),
        advanced_parameters=AdvancedQuantizationParameters(smooth_quant_alphas=alphas),
    )
    compiled = core.compile_model(int8, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    engine = OpenVinoBody(compiled, body.config, body._embeddings.num_embeddings, body.parameter_count)
    engine.dtype_name = "int8"
    candidate = copy.copy(reference)
    candidate.model = engine
    return candidate


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--calibration", type=int, default=64, help="summaries to calibrate on")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    reference = Encoder.from_pretrained("default", backend="openvino")
    if getattr(reference.model, "backend", None) != "openvino":
        raise SystemExit("the OpenVINO engine does not apply here (pip install 'ragkit[openvino]')")
    batches = calibration_inputs(reference, args.calibration)
    engines = {"torch fp32": Encoder.from_pretrained("default", backend="torch"), "openvino fp32": reference}
    result: dict = {"calibration_texts": args.calibration, "check": {}}
    for smooth in (True, False):
        name = f"int8{' + SmoothQuant' if smooth else ''}"
        engines[name] = quantized(reference, batches, smooth)
        cosine, agreement = measure(reference, engines[name])
        result["check"][name] = {
            "min_cosine": round(cosine, 4),
            "top_agreement": round(agreement, 4),
            "passes": cosine >= MIN_COSINE and agreement >= MIN_AGREEMENT,
        }
    texts = paragraphs(HERE.parent / "docs", 96)
    for encoder in engines.values():
        rate(encoder, texts[:8])
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, encoder in engines.items():
            rates[name].append(rate(encoder, texts))
    base = statistics.median(rates["torch fp32"])
    result["texts"] = len(texts)
    result["texts_per_s"] = {n: round(statistics.median(r), 2) for n, r in rates.items()}
    result["ratio_to_torch_fp32"] = {n: round(statistics.median(r) / base, 2) for n, r in rates.items()}
    emit(result, args.out)


if __name__ == "__main__":
    main()
