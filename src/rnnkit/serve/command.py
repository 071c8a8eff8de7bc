"""``rnnkit serve RUN [RUN ...]``: the runs' models on uvicorn (see ``rnnkit.serve.app``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.serve.app import MAX_BODY, MAX_LENGTH
from rnnkit.serve.schemas import MAX_MEDIA


def cmd_serve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rnnkit serve", description="Serve trained runs over HTTP (OpenAPI page: /docs)."
    )
    p.add_argument("runs", nargs="+", help="run directories or .safetensors checkpoints")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument(
        "--max-length", type=int, default=MAX_LENGTH, help="longest text, most tokens to generate"
    )
    p.add_argument("--max-body", type=int, default=MAX_BODY, help="largest request body, bytes")
    p.add_argument(
        "--max-media", type=int, default=MAX_MEDIA, help="largest image or WAV to predict, bytes"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per request (default 1)")
    a = p.parse_args(argv)
    if not 0 <= a.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {a.port}")
    limits = [("--max-length", a.max_length), ("--max-body", a.max_body)]
    for flag, value in [*limits, ("--max-media", a.max_media)]:
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if a.threads < 1:
        raise UserError(f"--threads must be at least 1, got {a.threads}")
    import torch
    import uvicorn

    from rnnkit.serve.app import create_app
    from rnnkit.serve.served import load_models

    # many requests run at once, each on a small model: one thread each beats sharing cores
    torch.set_num_threads(a.threads)
    models = load_models([Path(r) for r in a.runs])
    app = create_app(models, max_length=a.max_length, max_body=a.max_body, max_media=a.max_media)
    print(f"serving {', '.join(models)} on http://{a.host}:{a.port} (API page: /docs)", flush=True)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    return 0
