"""The request and response bodies, as pydantic models (FastAPI documents them on /docs).

Requests forbid unknown fields and take no type coercion (strict: "5" is not a number); text
lengths are capped by the server's ``max_length``, so the request models are made for it."""

from __future__ import annotations

import base64
import binascii
from types import SimpleNamespace
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

REQUEST = ConfigDict(extra="forbid", strict=True)
MAX_TEXTS = 64  # texts in one score request
MAX_MEDIA = 1 << 20  # bytes of a file in a predict request (decoded); the body cap comes first
MAX_UNITS = 16  # units in one activations answer (one per character feature: 11 features)


class Health(BaseModel):
    status: str
    models: int


class ModelInfo(BaseModel):
    name: str
    task: str
    kind: str = Field(description="language model, seq2seq, tagger, classifier or other")
    operations: list[str]
    path: str
    config: dict[str, Any]
    metrics: dict[str, Any] = Field(description="the last validation record of log.jsonl")


class SampleResponse(BaseModel):
    model: str
    text: str = Field(description="the prime followed by the generated tokens")
    seed: int = Field(description="the seed used (drawn when the request gave none)")


class Scored(BaseModel):
    text: str
    log_prob: float = Field(description="log p(text | line start), in nats")
    tokens: int
    bits_per_token: float = Field(description="bits per char (charlm) or per word (wordlm)")
    perplexity: float


class ScoreResponse(BaseModel):
    model: str
    results: list[Scored]


class Columns(BaseModel):
    labels: list[str] = Field(description="per output frame: the likeliest label (or <blank>)")
    probability: list[float] = Field(description="per output frame: that label's probability")
    blank: list[float] = Field(description="per output frame: the blank's probability")


class PredictResponse(BaseModel):
    model: str
    task: str
    input: str | None = Field(None, description="the text read (none for an image or a sound)")
    output: str = Field(
        description="seq2seq: the output text; tagger: the tags; classifier: the label"
    )
    attention: list[list[float]] | None = Field(
        None,
        description="seq2seq: weights (output tokens + <eos>) x (source tokens + <eos>); "
        "caption: (output tokens + <eos>) x the 7x7 image regions, row-major",
    )
    source_tokens: list[str] | None = None
    output_tokens: list[str] | None = None
    tokens: list[str] | None = Field(None, description="tagger, classifier: the tokens read")
    tags: list[str] | None = Field(None, description="tagger: one tag per token")
    label: str | None = None
    probabilities: dict[str, float] | None = Field(None, description="classifier: per class")
    token_attention: list[float] | None = Field(
        None, description="classifier with attention pooling: one weight per token"
    )
    columns: Columns | None = Field(None, description="ocr, speech: the CTC posteriors")


class UnitActivations(BaseModel):
    feature: str = Field(description="the character feature the unit is the best match for")
    layer: int = Field(description="0-based layer")
    unit: int = Field(description="0-based unit in its layer")
    r: float = Field(description="Pearson r of the unit's activation with the feature")
    characters_in_feature: int
    activations: list[float] = Field(description="the unit's value after each character")


class ActivationsResponse(BaseModel):
    model: str
    state: str
    layers: int
    hidden_size: int
    characters: list[str] = Field(description="the text, one character per entry")
    units: list[UnitActivations] = Field(description="ranked by |r|, largest first")


PNG = b"\x89PNG\r\n\x1a\n"


def base64_file(what: str, max_bytes: int):
    """A validator: the base64 text of a PNG (``what`` "png") or WAV file of at most
    ``max_bytes`` bytes, returned decoded."""

    def decoded(text: str) -> bytes:
        if len(text) > 4 * -(-max_bytes // 3):
            raise ValueError(f"the file is over {max_bytes} bytes")
        try:
            data = base64.b64decode(text, validate=True)
        except binascii.Error as e:
            raise ValueError(f"not base64 ({e})") from None
        if len(data) > max_bytes:
            raise ValueError(f"the file is over {max_bytes} bytes")
        if what == "png" and not data.startswith(PNG):
            raise ValueError("not a PNG file (it does not start with the PNG signature)")
        if what == "wav" and not (data[:4] == b"RIFF" and data[8:12] == b"WAVE"):
            raise ValueError("not a WAV file (it does not start with RIFF....WAVE)")
        return data

    return AfterValidator(decoded)


def request_models(max_length: int, max_media: int = MAX_MEDIA) -> SimpleNamespace:
    """The request bodies for a server whose texts and lengths are capped at ``max_length`` and
    files (base64 in JSON) at ``max_media`` bytes."""

    class SampleRequest(BaseModel):
        model_config = REQUEST
        prime: str = Field("", max_length=max_length, description="text to start from")
        length: int = Field(200, ge=1, le=max_length, description="tokens to generate")
        temperature: float = Field(1.0, gt=0, le=100)
        top_k: int | None = Field(None, ge=1, description="sample among the k likeliest")
        top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling: mass p")
        greedy: bool = Field(False, description="always take the likeliest token")
        seed: int | None = Field(None, ge=0, lt=2**63, description="same seed, same text")
        weights: Literal["float32", "bfloat16"] = Field(
            "float32",
            description="bfloat16: the model's LSTM/GRU matrices rounded to bfloat16, half the "
            "bytes a token reads (the compiled sampler's models only)",
        )

    class ScoreRequest(BaseModel):
        model_config = REQUEST
        texts: list[Annotated[str, Field(min_length=1, max_length=max_length)]] = Field(
            min_length=1, max_length=MAX_TEXTS
        )

    class PredictRequest(BaseModel):
        model_config = REQUEST
        input: str | None = Field(
            None, min_length=1, max_length=max_length, description="a text (seq2seq, taggers...)"
        )
        image: Annotated[str, base64_file("png", max_media)] | None = Field(
            None, description="ocr, caption: a PNG file, base64"
        )
        audio: Annotated[str, base64_file("wav", max_media)] | None = Field(
            None, description="speech: a WAV file, base64"
        )

        @model_validator(mode="after")
        def one_of_them(self):
            given = [k for k in ("input", "image", "audio") if getattr(self, k) is not None]
            if len(given) != 1:
                raise ValueError(f"give one of input, image, audio; got {given or 'none'}")
            return self

    class ActivationsRequest(BaseModel):
        model_config = REQUEST
        text: str = Field(min_length=1, max_length=max_length, description="the text to read")
        state: Literal["h", "c"] = Field("h", description="h: hidden state; c: an LSTM's cell")
        top: int = Field(MAX_UNITS, ge=1, le=MAX_UNITS, description="the units to return")

    return SimpleNamespace(
        sample=SampleRequest,
        score=ScoreRequest,
        predict=PredictRequest,
        activations=ActivationsRequest,
    )
