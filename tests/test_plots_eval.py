"""plots_eval: the confusion matrix and the word-weight picture decode as real PNGs, not one
flat colour; bad inputs and unwritable paths fail in one line."""

import numpy as np
import pytest
import torch
from PIL import Image

from rnnkit.errors import UserError
from rnnkit.plots_eval import plot_confusion, plot_word_weights


def colours(path):
    """The distinct RGB colours of a PNG, after checking that it decodes."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        rgb = np.asarray(image.convert("RGB"))
    return {tuple(p) for p in rgb.reshape(-1, 3)}


def test_confusion_two_classes(tmp_path):
    path = plot_confusion([[40, 10], [5, 45]], ["neg", "pos"], tmp_path / "cm.png", title="t")
    assert path == tmp_path / "cm.png"
    assert len(colours(path)) > 20  # cells, text and a colour bar, not one flat colour


def test_confusion_many_labels_and_tensor(tmp_path):
    rng = np.random.default_rng(0)
    k = 50
    m = torch.tensor(rng.integers(0, 5, size=(k, k)) + np.diag(rng.integers(50, 100, size=k)))
    labels = [f"tag-{i}" for i in range(k)]
    path = plot_confusion(m, labels, tmp_path / "sub" / "cm50.png", normalize=False)
    with Image.open(path) as image:
        width, height = image.size
    assert width >= 1500 and height >= 1500  # ~0.3 inch a class: 50 labels stay readable
    assert len(colours(path)) > 20


def test_confusion_empty_row_is_not_nan(tmp_path):
    # A class that never occurs in the test set: its row is 0, not NaN, and the plot draws.
    path = plot_confusion(np.array([[3, 1, 0], [0, 0, 0], [1, 0, 2]]), "abc", tmp_path / "c.png")
    assert len(colours(path)) > 20


def test_confusion_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plot_confusion([[1, 2, 3]], ["a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="3 labels for a 2 x 2"):
        plot_confusion([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="non-negative"):
        plot_confusion([[1, -2], [3, 4]], ["a", "b"], tmp_path / "x.png")


def test_bad_path_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (tmp_path, blocker / "cm.png"):
        with pytest.raises(UserError) as e:
            plot_confusion([[1, 0], [0, 1]], ["a", "b"], bad)
        assert "\n" not in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(UserError, match="cannot write the plot"):
        plot_word_weights(["a"], [1.0], tmp_path)


def test_word_weights(tmp_path):
    words = "an utterly charming film that never once lets up its grip".split() * 3
    weights = torch.softmax(torch.linspace(-2, 2, len(words)), 0)
    path = plot_word_weights(words, weights, tmp_path / "w.png", title="positive (p = 0.93)")
    assert len(colours(path)) > 20
    with pytest.raises(ValueError, match="one weight per word"):
        plot_word_weights(["a", "b"], [1.0], tmp_path / "w2.png")
