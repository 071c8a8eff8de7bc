"""The request and response bodies, as pydantic models (FastAPI documents them on /docs).

Requests forbid unknown fields and take no type coercion (strict: "5" is not a number); text
lengths are capped by the server's ``max_length``, so the request models are made for it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

REQUEST = ConfigDict(extra="forbid", strict=True)
MAX_TEXTS = 64  # texts in one score request
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


class PredictResponse(BaseModel):
    model: str
    task: str
    input: str
    output: str = Field(
        description="seq2seq: the output text; tagger: the tags; classifier: the label"
    )
    attention: list[list[float]] | None = Field(
        None, description="seq2seq: weights (output tokens + <eos>) x (source tokens + <eos>)"
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


def request_models(max_length: int) -> SimpleNamespace:
    """The request bodies for a server whose texts and lengths are capped at ``max_length``."""

    class SampleRequest(BaseModel):
        model_config = REQUEST
        prime: str = Field("", max_length=max_length, description="text to start from")
        length: int = Field(200, ge=1, le=max_length, description="tokens to generate")
        temperature: float = Field(1.0, gt=0, le=100)
        top_k: int | None = Field(None, ge=1, description="sample among the k likeliest")
        top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling: mass p")
        greedy: bool = Field(False, description="always take the likeliest token")
        seed: int | None = Field(None, ge=0, lt=2**63, description="same seed, same text")

    class ScoreRequest(BaseModel):
        model_config = REQUEST
        texts: list[Annotated[str, Field(min_length=1, max_length=max_length)]] = Field(
            min_length=1, max_length=MAX_TEXTS
        )

    class PredictRequest(BaseModel):
        model_config = REQUEST
        input: str = Field(min_length=1, max_length=max_length)

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
