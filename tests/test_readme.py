"""The README and docs/: their code runs and prints what they say it prints, the README stays a
front door (at most 300 lines), and every relative link resolves to a file and a heading."""

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# a ```python block, optionally followed by "prints" and a plain block of its expected output
BLOCK = re.compile(r"```python\n(.*?)```(?:\s*prints\s*```\n(.*?)```)?", re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", text)]


# a block that begins with this comment reads files a command shown before it writes; the test
# named in the comment makes those files and runs the block
NEEDS_FILES = "# needs the files of the command above; run by "


def blocks() -> list:
    return [
        pytest.param(code, shown, id=f"{page.name}-{i}")
        for page in PAGES
        for i, (code, shown) in enumerate(BLOCK.findall(page.read_text()))
        if not code.startswith(NEEDS_FILES)
    ]


def test_a_block_that_needs_files_names_an_existing_test():
    for page in PAGES:
        for code, _ in BLOCK.findall(page.read_text()):
            if code.startswith(NEEDS_FILES):
                path, name = code.splitlines()[0].removeprefix(NEEDS_FILES).split("::")
                assert f"def {name.strip()}(" in (ROOT / path).read_text(), (page.name, name)


@pytest.mark.parametrize("code, shown", blocks())
def test_code_runs_and_prints_what_is_shown(code, shown):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"__name__": "readme"})
    if shown:
        printed = out.getvalue()
        assert numbers(printed) == pytest.approx(numbers(shown), rel=1e-3)
        words = re.compile(r"\b(True|False)\b")
        assert words.findall(printed) == words.findall(shown)


def test_readme_has_a_python_example_with_its_output():
    assert any(shown for _, shown in BLOCK.findall(README.read_text()))


def test_the_gradient_flow_example_prints_1_1_to_the_50th():
    api = (ROOT / "docs" / "api.md").read_text()
    (code,) = [code for code, _ in BLOCK.findall(api) if "jacobian_product" in code]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"__name__": "readme"})
    assert float(out.getvalue()) == pytest.approx(1.1**50)


def test_the_compiled_sampler_example_samples_as_sample_sequence():
    from rnnkit.kernels import fused

    if not fused.available():
        pytest.skip("no C++ compiler here")
    api = (ROOT / "docs" / "api.md").read_text()
    (code,) = [code for code, _ in BLOCK.findall(api) if "lm_sampler" in code]
    scope: dict = {"__name__": "readme"}
    exec(code, scope)
    from rnnkit.decoding import sample_sequence

    emb, rnn, head = scope["emb"], scope["rnn"], scope["head"]

    def step(ids, state):
        y, state = rnn(emb(ids)[None], state)
        return head(y[0]), state

    with torch.no_grad():
        want = sample_sequence(
            step, None, [0, 3], 100, temperature=0.8, generator=torch.Generator().manual_seed(1)
        )
    assert scope["ids"] == want and len(want) == 100


def test_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_fences_are_closed(page):
    fences = [line for line in page.read_text().splitlines() if line.startswith("```")]
    assert len(fences) % 2 == 0, f"{page.name}: a code block is not closed"


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    heads = re.findall(r"^#+\s+(.*?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: no heading #{anchor} in {dest.name}"
