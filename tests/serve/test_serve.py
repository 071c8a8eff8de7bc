"""``rnnkit serve``: the routes on runs as ``rnnkit train`` leaves them (weights of step 0, which
is all the routes need), answers equal to the commands' (``rnnkit sample``, ``score``), every kind
of bad request, concurrent sampling without mixed state, and the command on a real socket."""

import json
import random
import re
import socket
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("fastapi", reason="rnnkit serve needs fastapi")
pytest.importorskip("uvicorn", reason="rnnkit serve needs uvicorn")
httpx = pytest.importorskip("httpx", reason="the tests talk to the server through httpx")

with warnings.catch_warnings():  # starlette's note on httpx versions, at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from rnnkit.cli import main  # noqa: E402
from rnnkit.serve import create_app, load_models  # noqa: E402
from rnnkit.tasks.lm_commands import sample_text  # noqa: E402

MAX_LENGTH, MAX_BODY = 300, 4096


def untrained_run(root, task: str, **data):
    """A run directory as ``rnnkit train TASK --preset tiny`` leaves it, its weights of step 0."""
    from rnnkit.config import config_to_dict
    from rnnkit.tasks.base import get_task
    from rnnkit.train.checkpoint import save_checkpoint

    spec = get_task(task)
    cfg = spec.presets["tiny"]()
    for key, value in data.items():
        setattr(cfg.data, key, value)
    built = spec.build(cfg, root / "cache" / task)
    meta = {
        "task": task,
        "level": built.level,
        "config": config_to_dict(cfg),
        "vocab": built.vocab.to_dict(),
    }
    out = root / task
    save_checkpoint(out / "best.safetensors", model_state=built.model.state_dict(), meta=meta)
    return out


def write_sentiment(path):
    rng = random.Random(0)
    words = "the film was good bad dull fine moving plot acting".split()
    lines = [
        f"{' '.join(rng.choices(words, k=5))} {i}\t{rng.choice(['pos', 'neg'])}" for i in range(80)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def write_conll(path):
    rng = random.Random(0)
    lines = []
    for _ in range(120):
        for _ in range(3):
            if rng.random() < 0.5:
                lines.append(f"{rng.choice(['met', 'the', 'in', 'saw'])}\tO")
            else:
                lines.append(
                    f"{rng.choice(['Ann', 'Bob', 'Paris'])}\tB-{rng.choice(['PER', 'LOC'])}"
                )
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    corpus = root / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 60)
    charlm = untrained_run(root, "charlm", path=str(corpus))
    val = {"step": 10, "split": "val", "loss": 2.5, "bpc": 3.6}
    (charlm / "log.jsonl").write_text(
        json.dumps({"step": 10, "split": "train"}) + "\n" + json.dumps(val) + "\n"
    )
    return {
        "charlm": charlm,
        "dates": untrained_run(root, "dates"),
        "sentiment": untrained_run(root, "sentiment", path=write_sentiment(root / "s.tsv")),
        "ner": untrained_run(root, "ner", path=write_conll(root / "n.conll")),
    }


@pytest.fixture(scope="module")
def client(runs):
    app = create_app(list(runs.values()), max_length=MAX_LENGTH, max_body=MAX_BODY)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_health_and_the_models_with_their_task_config_and_metrics(client):
    assert client.get("/health").json() == {"status": "ok", "models": 4}
    models = {m["name"]: m for m in client.get("/models").json()}
    assert {n: (m["task"], m["kind"]) for n, m in models.items()} == {
        "charlm": ("charlm", "language model"),
        "dates": ("dates", "seq2seq"),
        "sentiment": ("sentiment", "classifier"),
        "ner": ("ner", "tagger"),
    }
    assert models["charlm"]["operations"] == ["sample", "score", "activations"]
    assert models["charlm"]["metrics"] == {"step": 10, "loss": 2.5, "bpc": 3.6}
    assert models["dates"]["config"]["model"]["hidden_size"] > 0
    assert models["dates"]["metrics"] == {}
    paths = client.get("/openapi.json").json()["paths"]
    assert "/models/{name}/sample" in paths and "/models/{name}/predict" in paths


def test_sampling_is_repeatable_by_seed_and_equal_to_rnnkit_sample(client, runs):
    body = {"prime": "the ", "length": 40, "temperature": 0.9, "top_k": 10, "seed": 7}
    first = client.post("/models/charlm/sample", json=body).json()
    assert first == client.post("/models/charlm/sample", json=body).json()
    assert first["seed"] == 7 and first["text"].startswith("the ")
    other = client.post("/models/charlm/sample", json={**body, "seed": 8}).json()
    assert other["text"] != first["text"]
    want = sample_text(runs["charlm"], "the ", 40, temperature=0.9, top_k=10, seed=7)
    assert first["text"] == want
    drawn = client.post("/models/charlm/sample", json={"length": 5}).json()  # a seed is drawn
    again = client.post("/models/charlm/sample", json={"length": 5, "seed": drawn["seed"]})
    assert again.json()["text"] == drawn["text"]


def test_sampling_with_bfloat16_weights_is_rnnkit_sample_s(client, runs):
    from rnnkit.kernels import fused

    body = {"prime": "the ", "length": 40, "seed": 3, "weights": "bfloat16"}
    r = client.post("/models/charlm/sample", json=body)
    if not fused.available():  # the generic loop has no bfloat16 weights: one line, a 4xx
        assert r.status_code in (400, 422) and "compiled sampler" in r.text
        return
    want = sample_text(runs["charlm"], "the ", 40, seed=3, weights="bfloat16")
    assert r.status_code == 200 and r.json()["text"] == want
    bad = client.post("/models/charlm/sample", json={**body, "weights": "int8"})
    assert bad.status_code == 422 and "weights" in bad.text


def streamed(client, path: str, body: dict) -> tuple[list[bytes], httpx.Response]:
    with client.stream("POST", path, json=body) as r:
        return list(r.iter_raw()), r


@pytest.mark.parametrize("seed", [7, 123])
@pytest.mark.parametrize(
    "options",
    [{"prime": "the ", "temperature": 0.9, "top_k": 10}, {"prime": "", "top_p": 0.8}],
)
def test_the_stream_is_sample_s_text_sent_as_it_is_drawn(client, seed, options):
    body = {**options, "length": 60, "seed": seed}
    chunks, r = streamed(client, "/models/charlm/sample/stream", body)
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["x-rnnkit-seed"] == str(seed)
    whole = client.post("/models/charlm/sample", json=body).json()["text"]
    assert b"".join(chunks).decode() == whole
    assert len(chunks) > 1  # token by token, not the whole text at once


def test_the_stream_equals_sample_on_the_uncompiled_loop_too(client, monkeypatch):
    from rnnkit.kernels.fused import lm_sampler

    body = {"prime": "the", "length": 30, "temperature": 1.1, "seed": 5}
    compiled = client.post("/models/charlm/sample", json=body).json()["text"]
    monkeypatch.setattr(
        lm_sampler, "packed_model", lambda model, weights="float32": None
    )  # decoding's loop
    chunks, _ = streamed(client, "/models/charlm/sample/stream", body)
    assert b"".join(chunks).decode() == compiled and len(chunks) > 1


def test_a_stream_without_a_seed_names_the_one_drawn(client):
    chunks, r = streamed(client, "/models/charlm/sample/stream", {"length": 20})
    body = {"length": 20, "seed": int(r.headers["x-rnnkit-seed"])}
    assert (
        b"".join(chunks).decode() == client.post("/models/charlm/sample", json=body).json()["text"]
    )


def test_token_texts_join_to_the_decoded_text_for_words_and_line_ends():
    from rnnkit.data.vocab import Vocab
    from rnnkit.tasks.lm_commands import token_texts

    vocab = Vocab.from_words({"a": 3, "b": 2, "c": 1}, max_size=10)
    eos, a, b, c = (vocab.stoi[t] for t in (vocab.eos_token, "a", "b", "c"))
    for ids in [[], [eos], [eos, eos], [a, eos, b], [a, b, eos, c, a, eos], [eos, a, b]]:
        pieces = list(token_texts(vocab, ids))
        assert len(pieces) == len(ids) and "".join(pieces) == vocab.decode(ids)


def test_score_equals_rnnkit_score(client, runs, capsys):
    texts = ["the lazy dog.", "fox"]
    got = client.post("/models/charlm/score", json={"texts": texts}).json()["results"]
    assert main(["score", str(runs["charlm"]), *texts]) == 0
    printed = [float(line.split()[0]) for line in capsys.readouterr().out.splitlines()[:2]]
    assert [round(r["log_prob"], 3) for r in got] == printed
    assert [r["tokens"] for r in got] == [13, 3]
    r = got[0]
    assert r["bits_per_token"] == pytest.approx(-r["log_prob"] / 13 / 0.6931471805599453)


def test_predict_seq2seq_with_attention_weights(client):
    out = client.post("/models/dates/predict", json={"input": "march 3 1999"}).json()
    weights = torch.tensor(out["attention"])
    assert weights.shape == (len(out["output_tokens"]), len(out["source_tokens"]))
    assert out["source_tokens"][-1] == "<eos>" and len(out["source_tokens"]) == 13
    torch.testing.assert_close(weights.sum(1), torch.ones(len(weights)))


def test_activations_rank_the_units_of_rnnkit_lab_activations(client, runs):
    from rnnkit.lab.activations import character_classes, hidden_states, pick_units
    from rnnkit.tasks.runs import load_run

    text = "the quick brown fox.\nover the lazy dog.\n"
    out = client.post("/models/charlm/activations", json={"text": text, "top": 4}).json()
    assert out["characters"] == list(text) and out["state"] == "h" and out["layers"] == 1
    acts = hidden_states(load_run(runs["charlm"]), text)
    picks = sorted(pick_units(acts, character_classes(text)), key=lambda p: -abs(p["r"]))[:4]
    assert [(u["feature"], u["unit"]) for u in out["units"]] == [
        (p["class"], p["unit"]) for p in picks
    ]
    for u, p in zip(out["units"], picks, strict=True):
        assert u["r"] == pytest.approx(p["r"])
        torch.testing.assert_close(
            torch.tensor(u["activations"]), torch.tensor(acts[0, :, p["unit"]])
        )


def test_the_playground_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/playground.js"' in page.text
    for name, kind in [("playground.js", "javascript"), ("playground.css", "text/css")]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_predict_tagger_and_classifier(client):
    tagged = client.post("/models/ner/predict", json={"input": "Ann met Bob in Paris"}).json()
    assert tagged["tokens"] == "Ann met Bob in Paris".split() and len(tagged["tags"]) == 5
    assert set(tagged["tags"]) <= {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"}
    c = client.post("/models/sentiment/predict", json={"input": "the film was good"}).json()
    assert set(c["probabilities"]) == {"pos", "neg"} and c["label"] == c["output"]
    assert sum(c["probabilities"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("charlm/sample", {"length": MAX_LENGTH + 1}, 422, "length"),
        ("charlm/sample", {"prime": "a" * (MAX_LENGTH + 1)}, 422, "prime"),
        ("charlm/sample", {"length": "40"}, 422, "length"),
        ("charlm/sample", {"temperature": 0}, 422, "temperature"),
        ("charlm/sample", {"lenght": 40}, 422, "lenght"),
        ("charlm/sample/stream", {"length": MAX_LENGTH + 1}, 422, "length"),
        ("charlm/sample/stream", {"temperature": 0}, 422, "temperature"),
        ("charlm/sample/stream", {"top_k": "5"}, 422, "top_k"),
        ("charlm/sample/stream", {"prime": "the €"}, 422, "never seen in training"),
        ("dates/sample/stream", {}, 400, "'dates' run: no sample"),
        ("charlm/score", {"texts": ["fox", "a" * (MAX_LENGTH + 1)]}, 422, "texts"),
        ("charlm/score", {"texts": []}, 422, "texts"),
        ("charlm/score", {"texts": ["the €"]}, 422, "never seen in training"),
        ("dates/predict", {"input": 3}, 422, "input"),
        ("nobody/sample", {}, 404, "no model 'nobody'"),
        ("dates/sample", {}, 400, "'dates' run: no sample"),
        ("sentiment/score", {"texts": ["fox"]}, 400, "'sentiment' run: no score"),
        ("charlm/predict", {"input": "fox"}, 400, "'charlm' run: no predict"),
        ("charlm/activations", {"text": "the €"}, 422, "text: "),
        ("charlm/activations", {"text": "a" * (MAX_LENGTH + 1)}, 422, "text"),
        ("charlm/activations", {"text": "fox", "top": 0}, 422, "top"),
        ("charlm/activations", {"text": "fox", "state": "c"}, 422, "state: the cell state"),
        ("charlm/activations", {"text": "a"}, 422, "no character feature"),
        ("dates/activations", {"text": "fox"}, 400, "'dates' run: no activations"),
    ],
)
def test_bad_requests_are_refused_with_the_field_or_task_named(client, path, body, status, says):
    r = client.post(f"/models/{path}", json=body)
    assert r.status_code == status, r.text
    assert says in r.text


def test_bodies_over_the_cap_get_413_declared_or_streamed(client):
    big = json.dumps({"texts": ["fox"] * 2000}).encode()
    assert len(big) > MAX_BODY
    assert client.post("/models/charlm/score", content=big).status_code == 413

    def chunks():  # no Content-Length: the bytes read are counted
        yield from (big[i : i + 1000] for i in range(0, len(big), 1000))

    r = client.post("/models/charlm/score", content=chunks())
    assert r.status_code == 413 and "4096 bytes" in r.json()["detail"]


def test_an_exception_is_a_500_without_traceback_and_the_server_goes_on(runs, monkeypatch, caplog):
    models = load_models([runs["charlm"]])

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(models["charlm"], "sample", broken)
    with TestClient(create_app(models), raise_server_exceptions=False) as c:
        r = c.post("/models/charlm/sample", json={})
        assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
        assert "secret" not in r.text and "secret detail" in caplog.text
        assert c.get("/health").status_code == 200


def test_concurrent_sampling_equals_one_by_one(client):
    bodies = [{"prime": "the", "length": 30, "temperature": 1.2, "seed": s} for s in range(8)]
    alone = [client.post("/models/charlm/sample", json=b).json()["text"] for b in bodies]
    assert len(set(alone)) == 8
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda b: client.post("/models/charlm/sample", json=b), bodies))
    assert [r.json()["text"] for r in together] == alone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_serves_on_a_real_socket_and_stops(runs, monkeypatch, capsys):
    import uvicorn

    servers = []

    def run(app, **options):  # uvicorn.run, keeping the server so that the test can stop it
        servers.append(uvicorn.Server(uvicorn.Config(app, **options)))
        servers[0].run()

    monkeypatch.setattr(uvicorn, "run", run)
    threads = torch.get_num_threads()
    port = free_port()
    args = ["serve", str(runs["charlm"]), "--port", str(port)]
    thread = threading.Thread(target=main, args=(args,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not (servers and servers[0].started) and time.monotonic() < deadline:
            time.sleep(0.05)
        r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert r.json() == {"status": "ok", "models": 1}
    finally:
        if servers:
            servers[0].should_exit = True
        thread.join(30)
        torch.set_num_threads(threads)
    assert not thread.is_alive()
    assert re.search(rf"serving charlm on http://127.0.0.1:{port}", capsys.readouterr().out)


def test_a_missing_run_fails_in_one_line(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing" in err


def test_a_run_without_a_served_predict_is_listed_but_refused(runs):
    """A task the server has no predict for (e.g. fashion, images from a data set) is listed;
    predict names the task (a stand-in for such a run: its weights are not used)."""
    from types import SimpleNamespace

    from rnnkit.serve import ServedModel

    models = load_models([runs["charlm"]])
    fashion = SimpleNamespace(meta={"task": "fashion", "config": {"model": {"hidden_size": 8}}})
    models["fashion"] = ServedModel("fashion", "fashion", "other", runs["charlm"], fashion)
    with TestClient(create_app(models), raise_server_exceptions=False) as c:
        listed = {m["name"]: m for m in c.get("/models").json()}
        assert listed["fashion"]["operations"] == [] and listed["fashion"]["config"]["model"]
        r = c.post("/models/fashion/predict", json={"input": "a.png"})
        assert r.status_code == 400
        assert "'fashion' run: no predict" in r.text and "use rnnkit predict" in r.text
