"""A small instruct model that streams an answer: the packaged SmolLM2-135M-Instruct here,
any Hugging Face chat model for real users."""

from __future__ import annotations

from collections.abc import Iterator
from threading import Thread

from ragkit.encoder.packaged import DEFAULT_BACKBONE
from ragkit.errors import RagkitError

DEFAULT_ANSWER_MODEL = DEFAULT_BACKBONE
"""The packaged SmolLM2-135M-*Instruct*: the same weights as the encoder's backbone, causal."""


class ChatModel:
    """Streams generated text for chat messages, formatted by the model's own chat template."""

    def __init__(
        self, name: str = DEFAULT_ANSWER_MODEL, *, max_new_tokens: int = 160, device: str | None = None
    ):
        from ragkit.encoder.backbone import load_model, load_tokenizer, resolve_backbone
        from ragkit.encoder.encoder import resolve_device

        backbone = resolve_backbone(name)
        self.tokenizer = load_tokenizer(backbone.folder)
        self.device = resolve_device(device)
        self.model = load_model(backbone.folder, causal_lm=True).to(self.device).eval()
        self.max_new_tokens = max_new_tokens

    def stream(self, messages: list[dict]) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            repetition_penalty=1.1,
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        )
        failure: list[BaseException] = []
        worker = Thread(target=_generate, args=(self.model, kwargs, streamer, failure), daemon=True)
        worker.start()
        yield from streamer
        worker.join()
        if failure:
            error = failure[0]
            raise RagkitError(f"the answer model failed: {type(error).__name__}: {error}") from error


def _generate(model, kwargs, streamer, failure: list) -> None:
    """Generate on a worker thread; an error ends the stream (no reader waits forever)."""
    import torch

    try:
        with torch.inference_mode():
            model.generate(**kwargs)
    except BaseException as exc:  # surfaced on the reading thread
        failure.append(exc)
        streamer.end()
