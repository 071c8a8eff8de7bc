"""The ASGI application: routes over the served models, a cap on request bodies, and a guard
that turns any exception into a 500 JSON answer (logged, no traceback to the client).

    GET  /health                  {"status": "ok", "models": N}
    GET  /models                  name, task, kind, operations, config, metrics of each run
    POST /models/{name}/sample    language models: text from a prime (seeded)
    POST /models/{name}/sample/stream  the same text as plain UTF-8, sent token by token as it
                                  is drawn; the seed in the X-Rnnkit-Seed header
    POST /models/{name}/score     language models: log-probability, bits per token of texts
    POST /models/{name}/predict   seq2seq (+ attention), taggers (tags), classifiers
                                  (probabilities); ocr, speech (+ CTC columns), caption
                                  (+ attention) from a base64 PNG or WAV
    POST /models/{name}/activations  character language models: the hidden units that best
                                  track simple character features, their value per character
    GET  /                        the playground: one static page (static/) over these routes

Endpoints are plain ``def``: FastAPI runs them in its thread pool, so requests are served
concurrently; a stream's iterator is a sync one, which starlette advances in the same thread
pool, one ``next`` at a time; see ``served`` for why they share no state."""

import logging
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from rnnkit.errors import UserError
from rnnkit.serve.schemas import (
    MAX_MEDIA,
    ActivationsResponse,
    Health,
    ModelInfo,
    PredictResponse,
    SampleResponse,
    ScoreResponse,
    request_models,
)
from rnnkit.serve.served import ServedModel, Unsupported, load_models

log = logging.getLogger("rnnkit.serve")

MAX_LENGTH = 2000  # characters of a text, tokens to generate
MAX_BODY = 64 * 1024  # bytes of a request body
STATIC = Path(__file__).with_name("static")  # the playground: index.html, playground.js, .css


class Guard:
    """ASGI middleware: a body over ``max_body`` bytes gets 413 (checked on Content-Length and
    on the bytes actually read, so a chunked body is capped too); an exception that escapes the
    app gets a 500 JSON answer and is logged with its traceback on the server only."""

    def __init__(self, app, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = JSONResponse({"detail": f"request body over {self.max_body} bytes"}, 413)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return await too_large(scope, receive, send)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        started = False

        async def watch(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, replay, watch)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                await JSONResponse({"detail": "internal server error"}, 500)(scope, replay, send)


def create_app(
    runs: list[Path] | dict[str, ServedModel],
    *,
    max_length: int = MAX_LENGTH,
    max_body: int = MAX_BODY,
    max_media: int = MAX_MEDIA,
) -> FastAPI:
    """The server's ASGI application.

    Args:
        runs: run directories or checkpoints (each loaded once), or models already loaded
            (``load_models``).
        max_length: the longest text (characters) and the most tokens to generate; longer: 422
            naming the field.
        max_body: the largest request body in bytes; larger: 413.
        max_media: the largest file (decoded) in a predict request's image or audio; larger:
            422 naming the field. A file in base64 takes 4/3 of its size in the body, which
            ``max_body`` caps first.
    """
    if min(max_length, max_body, max_media) < 1:
        raise ValueError(
            f"max_length, max_body and max_media must be >= 1, got {max_length}, {max_body}, "
            f"{max_media}"
        )
    models = runs if isinstance(runs, dict) else load_models(runs)
    bodies = request_models(max_length, max_media)
    app = FastAPI(
        title="rnnkit serve",
        description="Trained rnnkit runs: sample and score (language models), predict.",
    )
    app.add_middleware(Guard, max_body=max_body)

    def get(name: str) -> ServedModel:
        if name not in models:
            raise HTTPException(404, f"no model {name!r}; models: {', '.join(models)}")
        return models[name]

    @app.exception_handler(Unsupported)
    def unsupported(request, e: Unsupported):
        return JSONResponse({"detail": str(e)}, 400)

    @app.exception_handler(UserError)
    def user_error(request, e: UserError):  # e.g. a character the model never saw
        return JSONResponse({"detail": str(e)}, 422)

    @app.get("/health")
    def health() -> Health:
        return Health(status="ok", models=len(models))

    @app.get("/models")
    def list_models() -> list[ModelInfo]:
        return [
            ModelInfo(
                name=m.name,
                task=m.task,
                kind=m.kind,
                operations=list(m.operations),
                path=str(m.path),
                config=m.config,
                metrics=m.metrics,
            )
            for m in models.values()
        ]

    @app.post("/models/{name}/sample")
    def sample(name: str, body: bodies.sample) -> SampleResponse:  # type: ignore[valid-type]
        choose = body.model_dump(exclude={"prime", "length", "seed"})
        text, seed = get(name).sample(body.prime, body.length, body.seed, **choose)
        return SampleResponse(model=name, text=text, seed=seed)

    @app.post("/models/{name}/sample/stream", response_class=StreamingResponse)
    def sample_stream(name: str, body: bodies.sample) -> StreamingResponse:  # type: ignore[valid-type]
        """The text of ``/sample`` for the same body, as text/plain, each token sent as soon as
        it is drawn; the seed in the ``X-Rnnkit-Seed`` header. Bad input: the same 4xx as
        ``/sample``, before the stream starts."""
        choose = body.model_dump(exclude={"prime", "length", "seed"})
        pieces, seed = get(name).sample_stream(body.prime, body.length, body.seed, **choose)
        return StreamingResponse(
            pieces, media_type="text/plain; charset=utf-8", headers={"X-Rnnkit-Seed": str(seed)}
        )

    @app.post("/models/{name}/score")
    def score(name: str, body: bodies.score) -> ScoreResponse:  # type: ignore[valid-type]
        m = get(name)
        m.need("score")
        return ScoreResponse(model=name, results=[m.score(t) for t in body.texts])

    @app.post("/models/{name}/predict", response_model_exclude_none=True)
    def predict(name: str, body: bodies.predict) -> PredictResponse:  # type: ignore[valid-type]
        m = get(name)
        out = m.predict(body.input, body.image, body.audio)
        return PredictResponse(model=name, task=m.task, input=body.input, **out)

    @app.post("/models/{name}/activations")
    def activations(name: str, body: bodies.activations) -> ActivationsResponse:  # type: ignore[valid-type]
        out = get(name).activations(body.text, body.state, body.top)
        return ActivationsResponse(model=name, **out)

    @app.get("/", include_in_schema=False)
    def playground() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
