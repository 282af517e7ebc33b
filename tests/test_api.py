"""The notebook API's errors: Python exceptions (FileNotFoundError, ValueError) naming the argument to pass,
never a stage's wording nor a raw DVC exception."""

from pathlib import Path

import pytest

import vae
from vae.api import BadFile, NotFound
from vae.model import VAE, VAEConfig, save_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current folder that is no repository at all."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_no_default_path_outside_a_repository_names_path_and_repo(outside: Path) -> None:
    for load, kind in ((vae.load_model, "model"), (vae.load_latent_density, "latent density")):
        with pytest.raises(FileNotFoundError) as info:
            load()
        assert str(info.value) == (f"no dvc.yaml in {outside}, so no default {kind} file; pass path= the file to "
                                   "load, or repo= the folder or URL of this pipeline's repository")
        assert "stage" not in str(info.value) and isinstance(info.value, NotFound)


def test_a_repo_that_is_not_a_dvc_repository_says_so(outside: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        vae.load_model(repo=str(outside))
    assert str(info.value) == (f"{outside} is not a DVC repository of this pipeline (no dvc.yaml); pass repo= the "
                               "folder or URL of one, or run from its root")


def test_load_metrics_outside_a_repository_raises_no_dvc_exception(outside: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        vae.load_metrics()
    assert type(info.value) is NotFound and "pass repo=" in str(info.value)
    assert not any(cls.__module__.startswith("dvc") for cls in type(info.value).__mro__)


def test_a_missing_or_damaged_file_in_the_working_tree(outside: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^nothere.pt is missing; pass path= a file the pipeline wrote$"):
        vae.load_model("nothere.pt")
    (outside / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError) as info:
        vae.load_model("empty.pt")
    assert isinstance(info.value, BadFile) and str(info.value).startswith("empty.pt is empty (0 bytes)")
    save_model(outside / "ok.pt", VAE(VAEConfig(hidden_dim=8, latent_dim=2)))
    assert vae.load_model("ok.pt").latent_dim == 2


def test_a_damaged_pipeline_output_says_how_to_restore_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())  # dvc.yaml's ${image_folder}
    (tmp_path / "models").mkdir()
    (tmp_path / "models/model.pt").write_bytes(b"\0" * 10)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:
        vae.load_model()
    assert str(info.value) == (
        "models/model.pt is not a torch file (its first bytes are not a zip archive's: another kind of file, or "
        "overwritten); restore it with `dvc checkout --force models/model.pt`, or `dvc repro -f -s train` where "
        "DVC's cache does not hold it; or pass path= another file")


def test_an_unknown_revision_names_the_rev_argument() -> None:
    with pytest.raises(FileNotFoundError) as info:
        vae.load_metrics(rev="no-such-experiment", repo=str(REPO))
    assert str(info.value) == (f"{REPO} has no experiment, branch, tag or commit named 'no-such-experiment'; pass "
                               "rev= one that exists (`dvc exp list --all-commits` lists the experiments)")
