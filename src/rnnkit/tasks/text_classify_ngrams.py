"""The n-gram half of a text classifier (``--model.ngrams N``), fitted when training ends.

A naive-Bayes logistic regression over binary word n-gram features (NBSVM's features with a
logistic loss, Wang & Manning 2012, "Baselines and bigrams: simple, good sentiment and topic
classification"). For two classes, with x ∈ {0, 1}^G the sentence's n-grams (n = 1..N, those in
at least two training sentences) and the smoothed counts p = 1 + Σ_{y=1} x, q = 1 + Σ_{y=0} x
over the training split, each feature is scaled by its log-count ratio

    r = log((p / |p|₁) / (q / |q|₁)),

and a logistic regression (L2, C = 1; scikit-learn's) is fitted on x ∘ r, so the model's
logit is Σ_g x_g (c_g r_g) + b: one weight per n-gram, held in the network's buffers as
``ngram_weight`` (column of the second class; the first is 0) and ``ngram_bias``. With more
than two classes the features are unscaled and the regression multinomial.

The prediction mixes the two classifiers' probabilities, p = (1 - w) p_net + w p_ngram; w is
the value on a grid of 0.05 steps with the lowest validation loss (the mixture's negative
log-likelihood: a mixture weight is a likelihood's parameter, and the loss varies smoothly with
w where the accuracy of ~1,000 sentences jumps by single sentences). w = 0 keeps the network
alone. ``finish`` writes the fitted buffers and w
into the run's best checkpoint (``last.safetensors``, the one to resume, keeps the network
alone), so ``predict`` and ``eval`` use the mixture with nothing more to pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnnkit.tasks.text_classify_data import Example, TextVocab, make_batch

MIX_GRID = [i / 20 for i in range(21)]


def ngram_matrix(vocab: TextVocab, examples: list[Example]):
    """The binary n-gram features (n, G) of ``examples`` as a scipy CSR matrix."""
    from scipy.sparse import csr_matrix

    rows = [vocab.ngram_ids_of(vocab.encode(e.text)[0]) for e in examples]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    data = np.ones(len(indices), dtype=np.float64)
    return csr_matrix((data, indices, indptr), shape=(len(examples), len(vocab.ngrams)))


def log_count_ratio(x, y: np.ndarray) -> np.ndarray:
    """r = log((p/|p|₁) / (q/|q|₁)) with p = 1 + Σ_{y=1} x, q = 1 + Σ_{y=0} x; (G,)."""
    p = 1.0 + np.asarray(x[y == 1].sum(0)).ravel()
    q = 1.0 + np.asarray(x[y == 0].sum(0)).ravel()
    return np.log(p / p.sum()) - np.log(q / q.sum())


def fit_ngram_classifier(
    vocab: TextVocab, examples: list[Example], c: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (G, K), bias (K,)) of the n-gram classifier fitted on ``examples``."""
    from sklearn.linear_model import LogisticRegression

    x = ngram_matrix(vocab, examples)
    y = np.array([vocab.class_ids[e.label] for e in examples])
    k = len(vocab.classes)
    weight, bias = torch.zeros(len(vocab.ngrams), k), torch.zeros(k)
    if len(set(y.tolist())) < 2:  # one class seen: it is always the answer
        bias[int(y[0])] = 1.0
        return weight, bias
    if k == 2:
        r = log_count_ratio(x, y)
        lr = LogisticRegression(C=c, max_iter=2000).fit(x.multiply(r).tocsr(), y)
        weight[:, 1] = torch.from_numpy(lr.coef_[0] * r).float()
        bias[1] = float(lr.intercept_[0])
        return weight, bias
    lr = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    for row, cls in enumerate(lr.classes_):
        weight[:, int(cls)] = torch.from_numpy(lr.coef_[row]).float()
        bias[int(cls)] = float(lr.intercept_[row])
    return weight, bias


@torch.no_grad()
def choose_mix(model, vocab: TextVocab, examples: list[Example]) -> dict:
    """w on ``MIX_GRID`` with the lowest loss on ``examples``, and the accuracy of the network
    alone, the n-grams alone and the mixture."""
    was_training = model.training
    model.eval()
    model.ngram_mix.zero_()
    net, grams, labels = [], [], []
    for s in range(0, len(examples), 256):
        exs = examples[s : s + 256]
        chars = model.char_rnn is not None
        batch = make_batch(
            vocab, [e.text for e in exs], [e.label for e in exs], range(len(exs)), chars
        )
        net.append(F.log_softmax(model(batch)[0], -1))
        grams.append(F.log_softmax(model.ngram_logits(batch), -1))
        labels.append(batch.labels)
    net, grams, y = torch.cat(net), torch.cat(grams), torch.cat(labels)
    known = y >= 0  # a label the training split never had cannot be scored by either half
    net, grams, y = net[known], grams[known], y[known]
    if len(y) == 0:
        model.train(was_training)
        return {"mix": 0.0, "examples": 0}
    scored = []
    for w in MIX_GRID:
        model.ngram_mix.fill_(w)
        log_p = net if w == 0 else model.mixed(net, grams)
        accuracy = float((log_p.argmax(-1) == y).float().mean())
        scored.append((float(F.nll_loss(log_p, y)), w, accuracy))
    best = min(scored)
    model.ngram_mix.fill_(best[1])
    model.train(was_training)
    return {
        "mix": best[1],
        "accuracy_network": scored[0][2],
        "accuracy_ngrams": scored[-1][2],
        "accuracy_mixed": best[2],
        "loss_mixed": best[0],
        "examples": len(examples),
    }


def fit_into_checkpoint(task, run_dir: Path) -> dict:
    """Fit the n-gram classifier on ``task``'s training split, choose w on its validation
    split with the run's best network, and write both into the best checkpoint."""
    from rnnkit.train.checkpoint import load_checkpoint, load_model_state, save_checkpoint
    from rnnkit.train.run_dir import checkpoint_path

    if not task.vocab.ngrams:
        return {"ngrams": 0, "mix": 0.0}
    path = checkpoint_path(Path(run_dir))
    ckpt = load_checkpoint(path)
    model = task.model
    load_model_state(model, ckpt.model_state, path)
    weight, bias = fit_ngram_classifier(task.vocab, task.splits["train"])
    model.ngram_weight.copy_(weight.to(model.ngram_weight.device))
    model.ngram_bias.copy_(bias.to(model.ngram_bias.device))
    report = choose_mix(model, task.vocab, task.splits["val"])
    report["ngrams"] = len(task.vocab.ngrams)
    meta = {**ckpt.meta, "ngram_classifier": report}
    save_checkpoint(path, model_state=model.state_dict(), meta=meta, rng=False)
    return report


def finish(task, result: dict, run_dir: Path, dry_run: bool) -> None:
    """The end of a text-classification run: the report; with ``--model.ngrams``, the n-gram
    classifier fitted and mixed in (``fit_into_checkpoint``)."""
    print(task.report(result) + f"; checkpoints in {run_dir}")
    if task.cfg.model.ngrams > 0:
        r = fit_into_checkpoint(task, run_dir)
        if r["ngrams"] == 0 or "accuracy_mixed" not in r:
            why = (
                "no word n-gram is in two training sentences"
                if r["ngrams"] == 0
                else "no validation sentence has a label seen in training"
            )
            print(f"n-grams: {why}; the best checkpoint keeps the network alone")
            return
        print(
            f"n-grams: a naive-Bayes logistic regression over {r['ngrams']:,} word "
            f"1-{task.cfg.model.ngrams}-grams; validation accuracy: network "
            f"{r['accuracy_network']:.4f}, n-grams {r['accuracy_ngrams']:.4f}, mixed "
            f"{r['accuracy_mixed']:.4f} (w = {r['mix']:.2f}); written into the best checkpoint"
        )
