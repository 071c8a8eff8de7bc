"""What the language-model tasks add to the command line: ``rnnkit sample`` and ``rnnkit score``,
the end-of-run report (bits per token, perplexity, a sample) and ``predict`` for one text."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

from rnnkit.data.text import Vocab
from rnnkit.errors import UserError
from rnnkit.metrics import perplexity
from rnnkit.tasks.runs import load_lm, load_run
from rnnkit.train.train_config import check_seed


def sample_text(run: Path, prime: str | None, length: int, **choose) -> str:
    return generate(load_run(run), prime, length, **choose)


def continue_ids(model, prime_ids: list[int], length: int, **choose) -> list[int]:
    """``sample_sequence(model.step, None, prime_ids, length, **choose)``; for the models the
    compiled sampler takes (``rnnkit.kernels.fused.lm_sampler``: float32 LSTM or GRU stacks on
    the CPU), one compiled call per token, with the same random draws, so the same tokens."""
    return list(continue_steps(model, prime_ids, length, **choose))


def continue_steps(model, prime_ids: list[int], length: int, **choose) -> Iterator[int]:
    """``continue_ids`` one token at a time: each id yielded as soon as it is drawn (the same
    draws); the prime, length and options are checked at the call, before the first ``next``.
    ``weights="bfloat16"`` (compiled sampler only) samples the model with its matrices rounded
    to bfloat16, in half the bytes a token reads (``lm_sampler.PackedLM``)."""
    from rnnkit.decoding import check_sampling_options, sample_sequence_steps
    from rnnkit.kernels.fused import lm_sampler

    weights = choose.pop("weights", "float32")
    if weights not in lm_sampler.WEIGHTS:
        raise UserError(f"--weights must be one of {list(lm_sampler.WEIGHTS)}, got {weights!r}")
    compiled = isinstance(length, int) and length >= 0 and len(prime_ids) > 0
    packed = lm_sampler.packed_model(model, weights) if compiled else None
    if packed is None:
        if weights != "float32" and compiled:  # else the generic loop names the bad prime/length
            raise UserError(
                f"--weights {weights} needs the compiled sampler: a plain one-direction LSTM or "
                "GRU stack in float32 on the CPU, and a C++ compiler"
            )
        return sample_sequence_steps(model.step, None, prime_ids, length, **choose)
    if not choose.get("greedy"):
        options = ("temperature", "top_k", "top_p")
        check_sampling_options(**{key: choose[key] for key in options if key in choose})
    return lm_sampler.sample_steps(packed, list(prime_ids), length, **choose)


def generate(loaded, prime: str | None, length: int, **choose) -> str:
    """``length`` tokens sampled from a loaded language model after ``prime`` (default: a line
    start), the prime included; ``choose``: sample_sequence's options and ``seed`` (a
    torch.Generator of its own; None: torch's global generator)."""
    return "".join(generate_pieces(loaded, prime, length, **choose))


def generate_pieces(loaded, prime: str | None, length: int, **choose) -> Iterator[str]:
    """``generate`` as it is drawn: the prime (if one is given), then each token's text as soon
    as the token is drawn; joined, the pieces are ``generate``'s text (the same draws). Bad
    input raises at the call, before the first piece."""
    import torch

    vocab, model = loaded.vocab, loaded.model
    if prime is None or prime == "":
        prime_ids = loaded.start_ids()
        shown = ""
    else:
        prime_ids = vocab.encode(prime).tolist()
        shown = prime
    seed = choose.pop("seed", None)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    ids = continue_steps(model, prime_ids, length, generator=generator, **choose)
    return _pieces(vocab, shown, ids)


def _pieces(vocab: Vocab, shown: str, ids: Iterator[int]) -> Iterator[str]:
    if shown:
        yield shown
    yield from token_texts(vocab, ids)


def token_texts(vocab: Vocab, ids: Iterable[int]) -> Iterator[str]:
    """The text of each id in turn, such that the texts joined are ``vocab.decode(ids)``:
    characters as they are; words with a space before each word that follows a word, and
    ``<eos>`` as a line break."""
    if vocab.level == "char":
        for i in ids:
            yield vocab.decode([i])
        return
    eos = vocab.stoi.get(vocab.eos_token) if vocab.eos_token is not None else None
    after_word = False
    for i in ids:
        if i == eos:
            yield "\n"
            after_word = False
        else:
            yield (" " if after_word else "") + vocab.decode([i])
            after_word = True


def predict(loaded, text: str, length: int = 200) -> str:
    """The likeliest continuation of ``text`` (greedy), ``length`` tokens long."""
    ids = loaded.start_ids() + loaded.vocab.encode(text).tolist()
    return loaded.vocab.decode(continue_ids(loaded.model, ids, length, greedy=True))


def finish(task, result: dict, run_dir: Path, dry_run: bool) -> None:
    """The end of a language model's run: refuse a diverged one; the validation loss in nats,
    bits and perplexity; then a sample."""
    uniform = math.log(len(task.vocab))  # the loss of a uniform guess
    if not result["loss"] <= 2 * uniform:
        raise UserError(
            f"training diverged: validation loss {result['loss']:.4g} nats at step "
            f"{result['step']}, worse than a uniform guess ({uniform:.3f}); lower --train.lr "
            f"(checkpoints in {run_dir})"
        )
    unit = "bits/char" if task.level == "char" else "bits/word"
    bits = result.get("bpc", result.get("bits", math.nan))
    print(
        f"done: step {result['step']}, validation loss {result['loss']:.4f} nats "
        f"({bits:.3f} {unit}, perplexity {result['ppl']:.2f}), best {result['best']:.4f}, "
        f"{result['seconds'] / 60:.1f} min; checkpoints in {run_dir}"
        + (f"; {result['skipped']} non-finite step(s) skipped" if result["skipped"] else "")
    )
    if not dry_run:
        print("\nsample (temperature 0.8):")
        print(sample_text(run_dir, prime=None, length=400, temperature=0.8, seed=1))


def cmd_sample(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rnnkit sample", description="Generate text from a run.")
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--prime", default=None, help="text to start from (default: a line start)")
    p.add_argument("--length", type=int, default=500, help="tokens to generate (default: 500)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: mass p")
    p.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    p.add_argument("--seed", type=int, default=None, help="random seed for a repeatable sample")
    p.add_argument(
        "--weights",
        choices=["float32", "bfloat16"],
        default="float32",
        help="bfloat16: the LSTM/GRU's matrices rounded to bfloat16, half the bytes a token "
        "reads (faster; another model, so other text)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads that share each token's step (default: torch's, one per core); "
        "the same text for any number",
    )
    a = p.parse_args(argv)
    if a.length < 1:
        raise UserError(f"--length must be at least 1, got {a.length}")
    check_seed(a.seed)
    if a.threads is not None:
        import torch

        from rnnkit.train.train_config import MAX_THREADS

        if not 1 <= a.threads <= MAX_THREADS:
            raise UserError(f"--threads must be in [1, {MAX_THREADS}], got {a.threads}")
        torch.set_num_threads(a.threads)
    print(
        sample_text(
            Path(a.run),
            a.prime,
            a.length,
            temperature=a.temperature,
            top_k=a.top_k,
            top_p=a.top_p,
            greedy=a.greedy,
            seed=a.seed,
            weights=a.weights,
        )
    )
    return 0


def score_text(loaded, text: str) -> tuple[float, int]:
    """(log p(text | line start) in nats, the number of tokens scored) under a loaded model."""
    from rnnkit.decoding import sequence_log_prob

    ids = loaded.start_ids() + loaded.vocab.encode(text).tolist()
    total, _ = sequence_log_prob(loaded.model.step, None, ids)
    return total, len(ids) - len(loaded.start_ids())


def cmd_score(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rnnkit score", description="Log-probability of texts under a trained model."
    )
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("texts", nargs="+", help="the texts to score")
    a = p.parse_args(argv)
    loaded = load_run(Path(a.run))
    unit = "char" if loaded.level == "char" else "token"
    rows = []
    for text in a.texts:
        total, n = score_text(loaded, text)
        if n == 0:
            raise UserError(f"nothing to score in {text!r}: give a non-empty text")
        rows.append((total, text))
        unknown = loaded.vocab.unknown(text) if loaded.level == "word" else []
        note = (
            f"  ({len(unknown)} word(s) scored as <unk>: {', '.join(unknown)})" if unknown else ""
        )
        print(
            f"{total:10.3f} nats  {-total / math.log(2) / n:6.3f} bits/{unit}  "
            f"ppl {perplexity(-total, n):9.2f}  {text!r}{note}"
        )
    if len(rows) > 1:
        best = max(rows)[1]
        print(f"most likely (highest total log-probability): {best!r}")
    return 0


def hooks() -> dict:
    """The ``TaskSpec`` fields that every language-model task shares."""
    return {
        "load_vocab": Vocab.from_dict,
        "finish": finish,
        "load": load_lm,
        "predict": predict,
        "commands": {
            "sample": (cmd_sample, "generate text from a trained language model"),
            "score": (cmd_score, "log-probability and bits per token of texts"),
        },
    }
