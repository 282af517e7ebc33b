"""docs/development.md's table of what reruns when you edit each module, generated from dvc.yaml.

A stage reruns when a module it lists among its deps changes, and so does every stage that
reads its outputs. ``python -m tests.rerun_table`` rewrites the table between its markers;
tests/test_dvc_files.py checks that it is current.
"""

from pathlib import Path

from vae.runtime.dvc_yaml import StageSpec, read_stage, stage_names

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs/development.md"
BEGIN, END = "<!-- rerun table: python -m tests.rerun_table -->", "<!-- end of rerun table -->"


def _reads(stage: StageSpec, other: StageSpec) -> bool:
    """Whether ``stage`` has a dep that is, or lies inside, an output of ``other``."""
    return any(dep == out or dep.startswith(out.rstrip("/") + "/") for dep in stage.deps for out in other.outs)


def reruns(dvc_yaml: Path = REPO / "dvc.yaml") -> dict[str, list[str]]:
    """Each project module any stage lists -> the stages that rerun when it changes, in dvc.yaml's order."""
    stages = [read_stage(name, dvc_yaml) for name in stage_names(dvc_yaml)]
    modules = sorted({dep for stage in stages for dep in stage.deps if dep.endswith(".py")})
    table = {}
    for module in modules:
        changed = {stage.name for stage in stages if module in stage.deps}
        for stage in stages:  # dvc.yaml lists a stage after those it reads
            if any(_reads(stage, other) for other in stages if other.name in changed):
                changed.add(stage.name)
        table[module] = [stage.name for stage in stages if stage.name in changed]
    return table


def markdown(dvc_yaml: Path = REPO / "dvc.yaml") -> str:
    rows = [f"| `{module}` | {', '.join(stages)} |" for module, stages in reruns(dvc_yaml).items()]
    header = "| you edit | `dvc repro` can rerun (the stages that list it, then those that read their outputs) |"
    return "\n".join([BEGIN, header, "|---|---|", *rows, END])


def current_block(text: str) -> str:
    """The table as docs/development.md has it (markers included), or '' if it has none."""
    start, end = text.find(BEGIN), text.find(END)
    return text[start:end + len(END)] if start >= 0 and end > start else ""


if __name__ == "__main__":
    text = DOC.read_text()
    block = current_block(text)
    if not block:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block; add the two markers where the table goes")
    DOC.write_text(text.replace(block, markdown()))
    print(f"wrote the rerun table of {DOC.relative_to(REPO)}")
