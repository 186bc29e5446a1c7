"""ragkit's adapters on disk are peft's: peft reads them, and older unprefixed files still load."""

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from test_encoder import TEXTS, _encoder_with_adapter

from ragkit import Encoder
from ragkit.encoder.adapters import ADAPTER_WEIGHTS


def test_peft_reads_a_saved_adapter_and_merges_to_ragkit_s_weights(tiny_backbone_dir: Path, tmp_path: Path):
    from peft import PeftModel
    from transformers import AutoModel

    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=1)
    folder = saved / "adapters" / "00-mntp"
    assert all(k.startswith("base_model.model.layers.") for k in load_file(folder / ADAPTER_WEIGHTS))

    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_backbone_dir), folder)
    assert sum(n.endswith("lora_A.default.weight") for n, _ in peft_model.named_parameters()) > 0
    merged = peft_model.merge_and_unload().state_dict()
    ours = Encoder.from_pretrained(str(saved)).model.state_dict()
    moved = 0
    for name, tensor in ours.items():
        torch.testing.assert_close(merged[name], tensor, atol=1e-6, rtol=1e-5)
        moved += int(not torch.equal(tensor, AutoModel.from_pretrained(tiny_backbone_dir).state_dict()[name]))
    assert moved > 0  # the adapter changed weights, so agreement is not trivial


def test_an_adapter_written_without_peft_s_prefix_still_loads(tiny_backbone_dir: Path, tmp_path: Path):
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=2)
    expected = Encoder.from_pretrained(str(saved))
    weights = saved / "adapters" / "00-mntp" / ADAPTER_WEIGHTS
    tensors = load_file(weights)
    save_file({k.removeprefix("base_model.model."): v for k, v in tensors.items()}, str(weights))
    assert not any(k.startswith("base_model.") for k in load_file(weights))

    old = Encoder.from_pretrained(str(saved))
    assert old.fingerprint == expected.fingerprint
    np.testing.assert_allclose(old.encode(TEXTS), expected.encode(TEXTS), atol=1e-6)


def test_resaving_a_loaded_encoder_keeps_adapter_names(tiny_backbone_dir: Path, tmp_path: Path):
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=3)
    again = Encoder.from_pretrained(str(saved)).save(tmp_path / "again")
    assert [p.name for p in (again / "adapters").iterdir()] == ["00-mntp"]
    assert Encoder.from_pretrained(str(again)).fingerprint == Encoder.from_pretrained(str(saved)).fingerprint
