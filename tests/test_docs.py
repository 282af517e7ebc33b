"""The README and docs/ never point at what is not there: links, images, make targets, params."""

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
