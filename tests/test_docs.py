"""The README and docs/ never point at what is not there: links, images, make targets, params, and intervals
that no generated report (docs/results/*.md) states."""

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
MAKE = re.compile(r"\bmake ((?:[A-Z_]+=\S+ )*)([a-z][\w-]*)")
SET_PARAM = re.compile(r"-S[ =]([a-z_]+)=")
PARAM_LINE = re.compile(r"`([a-z_]+): [^`]+`")  # a params.yaml line quoted in the text, `beta: 4.0`
NUMBER = r"[+\-−]?\d+(?:\.\d+)?"
# An interval as the reports print it, a difference and its 95% bounds: -2.01 [-2.23, -1.80]
INTERVAL = re.compile(rf"(?<![\w.]){NUMBER} \[{NUMBER}, {NUMBER}\]")
REPORTS = sorted((REPO / "docs" / "results").glob("*.md"))
# Names in those forms that are not params, on purpose.
NOT_PARAMS = {"cache": "dvc.yaml's output option `cache: false`", "persist": "dvc.yaml's `persist: true`",
              "error": "an error line, `error: ...`", "latent_dims": "the typo the docs show being refused"}


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in page.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_image_resolves(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: {target}: no heading #{anchor} in {resolved.name}"


def code(text: str) -> str:
    """The fenced blocks and inline code spans of a page: where commands are written."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL))
    return "\n".join(blocks + spans)


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([a-z][\w-]*):", text, re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_make_target_the_docs_name_exists(page: Path) -> None:
    targets = makefile_targets()
    named = {m.group(2) for m in MAKE.finditer(code(page.read_text()))}
    assert named - targets == set(), f"{page.name} names make targets the Makefile lacks"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_param_the_docs_set_is_in_params_yaml(page: Path) -> None:
    params = set(yaml.safe_load((REPO / "params.yaml").read_text()))
    text = page.read_text()
    named = set(SET_PARAM.findall(text)) | set(PARAM_LINE.findall(text))
    assert named - params - set(NOT_PARAMS) == set(), f"{page.name} sets params that params.yaml lacks"


def test_the_checks_find_what_they_look_for() -> None:
    """The patterns match the forms the docs use (else the three tests above pass on nothing)."""
    assert LINK.findall("see [a](docs/a.md#b) and ![c](c.png)") == ["docs/a.md#b", "c.png"]
    assert [m.group(2) for m in MAKE.finditer(code("run `make study STUDY=x`, or make sure"))] == ["study"]
    assert code("a\n```bash\nmake report\n```\n`b`") == "make report\n\nb"
    assert [m.group(2) for m in MAKE.finditer("make SLURM_CPUS=1 slurm")] == ["slurm"]
    assert SET_PARAM.findall("dvc exp run -S latent_dim=8 -S beta=4") == ["latent_dim", "beta"]
    assert PARAM_LINE.findall("with `likelihood: binarized` and `hidden_layers: 3`") == ["likelihood", "hidden_layers"]
    assert {"study", "report", "slurm", "collect", "pipeline", "test"} <= makefile_targets()
    assert len(PAGES) > 8


def intervals(text: str) -> list[str]:
    """The intervals ``d [lo, hi]`` quoted in ``text``, written as the reports write them: a minus sign as ``-``,
    no ``+`` (a report prints +0.020 [0.007, 0.034] as 0.020 [0.007, 0.034] in one table and signed in another)."""
    return [re.sub(r"(?<![\d.])\+", "", m.group().replace("−", "-")) for m in INTERVAL.finditer(text)]


def unstated_intervals(text: str, reports: list[Path]) -> list[str]:
    """The intervals of ``text`` that none of the ``reports`` states: numbers typed by hand, or left behind when
    a report was regenerated."""
    stated = {i for report in reports for i in intervals(report.read_text())}
    return [i for i in intervals(text) if i not in stated]


@pytest.mark.parametrize("page", [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_interval_the_docs_quote_is_one_a_report_states(page: Path) -> None:
    assert unstated_intervals(page.read_text(), REPORTS) == [], f"{page.name} quotes intervals no report states"


def test_an_interval_no_report_states_is_found(tmp_path: Path) -> None:
    report = tmp_path / "study.md"
    report.write_text("| MNIST | beta-4 | **17.42 [16.00, 18.83]** | -2.01 [-2.23, -1.80] | 0.020 [0.007, 0.034] |\n")
    page = ("beta 4 costs 17.42 [16.00, 18.83] nats; IWAE k = 5 gains −2.01 [−2.23, −1.80], the probe +0.020 "
            "[0.007, 0.034], all within the tables [0, 1]; but not 17.4 [16.0, 18.8] nor -0.71 [-1.65, 0.24]")
    assert intervals(page) == ["17.42 [16.00, 18.83]", "-2.01 [-2.23, -1.80]", "0.020 [0.007, 0.034]",
                               "17.4 [16.0, 18.8]", "-0.71 [-1.65, 0.24]"]
    assert unstated_intervals(page, [report]) == ["17.4 [16.0, 18.8]", "-0.71 [-1.65, 0.24]"]
    assert len(REPORTS) >= 4 and all(intervals(report.read_text()) for report in REPORTS if report.stem != "paper")
