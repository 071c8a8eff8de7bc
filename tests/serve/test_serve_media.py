"""``POST /models/{name}/predict`` for the runs that read a picture or a sound (ocr, speech,
caption): the file base64 in JSON, the answer equal to ``rnnkit predict``'s (the task's
``predict_one`` on the same file), and every bad file refused with 422 naming the field. Runs as
``rnnkit train TASK --preset tiny`` would save them, with weights of step 0 (built here without
their data: the routes need the model, not a trained one)."""

import base64
import io
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="rnnkit serve needs fastapi")
pytest.importorskip("httpx", reason="the tests talk to the server through httpx")

with warnings.catch_warnings():  # starlette's note on httpx versions, at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from rnnkit.serve import create_app  # noqa: E402

MAX_MEDIA = 40_000


def save_run(root, task: str, cfg, model, vocab=None):
    from rnnkit.config import config_to_dict
    from rnnkit.train.checkpoint import save_checkpoint

    meta = {"task": task, "config": config_to_dict(cfg)}
    if vocab is not None:
        meta["vocab"] = vocab.to_dict()
    out = root / task
    save_checkpoint(out / "best.safetensors", model_state=model.state_dict(), meta=meta)
    return out


def media_runs(root) -> dict:
    from rnnkit.tasks import caption, ocr_task, speech
    from rnnkit.tasks.caption_model import CaptionModel
    from rnnkit.tasks.caption_task import caption_vocab
    from rnnkit.tasks.ocr_model import LineReader
    from rnnkit.tasks.speech_model import SpeechModel

    ocr, alphabet = ocr_task.tiny(), ocr_task.Alphabet("abcdefghij ")
    talk, scenes, vocab = speech.tiny(), caption.tiny(), caption_vocab()
    return {
        "ocr": save_run(root, "ocr", ocr, LineReader(len(alphabet), ocr.model), alphabet),
        "speech": save_run(root, "speech", talk, SpeechModel(talk.model)),
        "caption": save_run(root, "caption", scenes, CaptionModel(len(vocab), scenes.model), vocab),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return media_runs(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def client(runs):
    app = create_app(list(runs.values()), max_body=200_000, max_media=MAX_MEDIA)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def png(width: int, height: int, seed: int = 0) -> bytes:
    from PIL import Image, ImageDraw

    picture = Image.new("L", (width, height), 255)
    ImageDraw.Draw(picture).text((4, height // 4), "abc", fill=0)
    noise = np.random.default_rng(seed).integers(0, 40, (height, width), dtype=np.uint8)
    picture = Image.fromarray(np.asarray(picture) - noise)
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    return buf.getvalue()


def wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_runs_are_listed_with_predict(client):
    listed = {m["name"]: (m["kind"], m["operations"]) for m in client.get("/models").json()}
    assert listed == {
        "ocr": ("line reader", ["predict"]),
        "speech": ("speech", ["predict"]),
        "caption": ("captioner", ["predict"]),
    }


def test_ocr_reads_a_png_as_rnnkit_predict_does(client, runs, tmp_path):
    from rnnkit.tasks.ocr_commands import load_ocr_run, predict_one

    data = png(120, 32)
    out = client.post("/models/ocr/predict", json={"image": b64(data)}).json()
    (tmp_path / "line.png").write_bytes(data)
    assert out["output"] == predict_one(load_ocr_run(runs["ocr"]), str(tmp_path / "line.png"))
    assert "input" not in out and out["task"] == "ocr"
    cols = out["columns"]
    assert len(cols["labels"]) == len(cols["probability"]) == len(cols["blank"]) > 10
    assert set(cols["labels"]) <= {"<blank>", *"abcdefghij "}
    assert all(0 < p <= 1 for p in cols["probability"]) and all(0 < p < 1 for p in cols["blank"])


def test_speech_hears_a_wav_as_rnnkit_predict_does(client, runs, tmp_path):
    from rnnkit.tasks.speech_commands import load_speech_run, predict_one

    data = wav()
    out = client.post("/models/speech/predict", json={"audio": b64(data)}).json()
    (tmp_path / "digits.wav").write_bytes(data)
    assert out["output"] == predict_one(
        load_speech_run(runs["speech"]), str(tmp_path / "digits.wav")
    )
    assert set(out["output"]) <= set("0123456789")
    assert set(out["columns"]["labels"]) <= {"<blank>", *"0123456789"}


def test_caption_of_a_scene_with_its_attention_over_the_7x7_regions(client, runs, tmp_path):
    from rnnkit.tasks.caption_commands import load_caption_run, predict_one

    data = png(84, 84, seed=1)
    out = client.post("/models/caption/predict", json={"image": b64(data)}).json()
    (tmp_path / "scene.png").write_bytes(data)
    assert out["output"] == predict_one(
        load_caption_run(runs["caption"]), str(tmp_path / "scene.png")
    )
    weights = torch.tensor(out["attention"])
    assert weights.shape == (len(out["output_tokens"]), 49) and out["output_tokens"][-1] == "<eos>"
    torch.testing.assert_close(weights.sum(1), torch.ones(len(weights)))


@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        ("ocr", {"image": "not base64!"}, "not base64"),
        ("ocr", {"image": b64(b"GIF89a....")}, "not a PNG file"),
        ("speech", {"audio": b64(png(40, 32))}, "not a WAV file"),
        ("ocr", {"image": b64(png(400, 400, seed=2))}, f"over {MAX_MEDIA} bytes"),
        ("caption", {"image": b64(png(40, 40))}, "image: the picture is 40x40 pixels"),
        ("ocr", {"image": b64(png(4, 32))}, "image: 4x32 is too narrow"),
        ("speech", {"audio": b64(wav(0.01))}, "audio: "),
        ("ocr", {"input": "line.png"}, "input: a 'ocr' run reads a PNG picture: give 'image'"),
        ("speech", {"image": b64(png(40, 32))}, "give 'audio' instead of 'image'"),
        ("caption", {}, "give one of input, image, audio"),
    ],
)
def test_bad_files_get_422_naming_the_field(client, name, body, says):
    r = client.post(f"/models/{name}/predict", json=body)
    assert r.status_code == 422, r.text
    assert says in r.text
    field = next(iter(body), None)
    if isinstance(r.json()["detail"], list) and field:  # pydantic's: the field in loc
        assert r.json()["detail"][0]["loc"] == ["body", field]
