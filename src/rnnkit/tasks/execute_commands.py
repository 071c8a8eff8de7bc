"""What the execute task adds to the command line: ``rnnkit predict RUN PROGRAM`` (the model's
answer, beside what running the program prints; ``--attention`` draws the map) and ``rnnkit
eval RUN`` (per-character accuracy and exact match at every difficulty up to the run's)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.tasks.execute_programs import ProgramError, run_program
from rnnkit.tasks.execute_task import accuracies, examples, score_examples, stages, written


def program_text(text: str) -> str:
    """A program as given on the command line: a literal backslash-n (what a shell passes for
    "\\n" in double quotes) is a line break."""
    return text.replace("\\n", "\n")


def checked_program(text: str) -> tuple[str, int]:
    """The program and what it prints; a program outside the grammar is one line."""
    program = program_text(text)
    try:
        return program, run_program(program)
    except ProgramError as e:
        raise UserError(f"program {text!r}: {e}") from None


def _answer(loaded, program: str) -> str:
    from rnnkit.tasks.seq2seq_task import predict

    max_len = loaded.cfg.decode.max_len
    answer = predict(loaded.model, loaded.vocab, [program], max_len=max_len)[0][0][0]
    return written(answer, loaded.cfg.data.answer_order)


def predict_one(loaded, text: str) -> str:
    """The model's greedy answer for one program (``TaskSpec.predict``)."""
    return _answer(loaded, checked_program(text)[0])


def cmd_predict(argv: list[str]) -> int:
    from rnnkit.plots import check_writable, plot_attention
    from rnnkit.tasks.seq2seq_commands import load_seq2seq_run
    from rnnkit.tasks.seq2seq_task import attention_map

    p = argparse.ArgumentParser(
        prog="rnnkit predict", description="What an execute run answers for programs."
    )
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("programs", nargs="+", help='programs; "\\n" separates lines')
    p.add_argument("--attention", default=None, help="write the attention map(s) to this PNG")
    a = p.parse_args(argv)
    if a.attention:
        check_writable(a.attention, "--attention")
    checked = [checked_program(text) for text in a.programs]  # all refused before any work
    loaded = load_seq2seq_run(Path(a.run))
    if a.attention and loaded.model.decoder.attention is None:
        raise UserError(
            f"--attention: {loaded.path} was trained without attention (--model.attention none)"
        )
    if loaded.cfg.train.threads:
        import torch

        torch.set_num_threads(loaded.cfg.train.threads)
    for i, (program, value) in enumerate(checked):
        answer = _answer(loaded, program)
        verdict = "right" if answer == str(value) else f"wrong: it prints {value}"
        print(f"{answer}\t({verdict})")
        if a.attention:
            # the map shows the answer as the model wrote it
            shown = written(answer, loaded.cfg.data.answer_order)
            weights, xs, ys = attention_map(loaded.model, loaded.vocab, program, shown)
            path = Path(a.attention)
            if len(checked) > 1:
                path = path.with_name(f"{path.stem}_{i + 1}{path.suffix}")
            xs = ["⏎" if x == "\n" else x for x in xs]
            print(plot_attention(weights, path, source=xs, output=ys, title=f"{answer}"))
    return 0


def cmd_eval(argv: list[str]) -> int:
    import json

    from rnnkit.files import atomic_write
    from rnnkit.plots import plot_curves
    from rnnkit.tasks.eval_files import add_out_options, eval_output
    from rnnkit.tasks.seq2seq_commands import load_seq2seq_run

    p = argparse.ArgumentParser(
        prog="rnnkit eval",
        description="An execute run's scores on held-out programs at every difficulty up to "
        "its own: per-character accuracy (teacher forced) and exact match (greedy).",
    )
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--split", default="test", choices=("test", "val"), help="(default: test)")
    p.add_argument("--examples", type=int, default=500, help="programs per difficulty")
    p.add_argument("--batch-size", type=int, default=100, help="programs scored at once")
    add_out_options(p, "the scores against the length")
    a = p.parse_args(argv)
    if a.examples < 1 or a.batch_size < 1:
        raise UserError("--examples and --batch-size must be >= 1")
    out = eval_output(a.run, a.out, a.split, a.force)  # refused before the work, not after
    loaded = load_seq2seq_run(Path(a.run))
    if loaded.cfg.train.threads:
        import torch

        torch.set_num_threads(loaded.cfg.train.threads)
    d = loaded.cfg.data
    rows = []
    for length, nesting in stages(d.length, d.nesting):
        items = examples(
            a.examples, length, nesting, d.family, a.split, d.seed, loaded.cfg.data.answer_order
        )
        sums = score_examples(
            loaded.model, loaded.vocab, items, a.batch_size, loaded.cfg.decode.max_len, "cpu"
        )
        rows.append({"length": length, "nesting": nesting, "examples": len(items),
                     **accuracies(sums)})  # fmt: skip
    target = rows[-1]
    result = {
        "task": loaded.name,
        "checkpoint": str(loaded.path),
        "split": a.split,
        "family": d.family,
        "length": d.length,
        "nesting": d.nesting,
        "char_acc": target["char_acc"],
        "exact_match": target["exact_match"],
        "by_difficulty": rows,
    }
    print(f"execute {a.split} ({d.family}), {a.examples} programs per difficulty:")
    print("  length nesting  per-char acc (teacher forced)  exact match (greedy)")
    for r in rows:
        print(f"  {r['length']:6d} {r['nesting']:7d}  {r['char_acc']:29.4f}  "
              f"{r['exact_match']:20.4f}")  # fmt: skip
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    series = {}
    for nesting in range(1, d.nesting + 1):
        part = [r for r in rows if r["nesting"] == nesting]
        xs = [r["length"] for r in part]
        suffix = f", nesting {nesting}" if d.nesting > 1 else ""
        series[f"per-char (teacher forced){suffix}"] = (xs, [r["char_acc"] for r in part])
        series[f"exact match (greedy){suffix}"] = (xs, [r["exact_match"] for r in part])
    png = plot_curves(
        series,
        out.with_suffix(".png"),
        xlabel="length (digits of the numbers)",
        ylabel="accuracy",
        title=f"execute ({d.family}, {a.split}): accuracy by difficulty",
    )
    print(f"results: {out}, {png}")
    return 0


RUN_COMMANDS = {
    "predict": (cmd_predict, "an execute run's answers for programs (and attention maps)"),
    "eval": (cmd_eval, "an execute run's held-out scores by length and nesting"),
}
