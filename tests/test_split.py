"""The seeded train/validation split (the notebook's random_split) and the processed .npz files."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vae.data.datasets import FILES
from vae.data.idx import format_idx
from vae.data.split import load_split, make_splits, split_indices, to_tensor
from vae.errors import UserError
from vae.io import load_npz

SEEDS = st.integers(0, 2**32 - 1)  # the params' range (vae.params)
FRACTIONS = st.floats(0.01, 0.99)


def notebook_split(n: int, seed: int, val_fraction: float = 0.1) -> tuple[list[int], list[int]]:
    """The notebook's split, without disturbing the global RNG for other tests."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        val = int(val_fraction * n)
        train_set, val_set = torch.utils.data.random_split(range(n), [n - val, val])
    return list(train_set.indices), list(val_set.indices)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(2, 3000), val_fraction=FRACTIONS, seed=SEEDS)
def test_split_partitions_range(n, val_fraction, seed):
    val_size = int(val_fraction * n)
    assume(0 < val_size < n)
    train, val = split_indices(n, val_fraction, seed)
    assert len(val) == val_size and len(train) == n - val_size
    assert not set(train.tolist()) & set(val.tolist())
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
    again = split_indices(n, val_fraction, seed)
    np.testing.assert_array_equal(again[0], train)
    np.testing.assert_array_equal(again[1], val)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(50, 3000), seeds=st.lists(SEEDS, min_size=2, max_size=2, unique=True))
def test_different_seeds_differ(n, seeds):
    a, _ = split_indices(n, 0.1, seeds[0])
    b, _ = split_indices(n, 0.1, seeds[1])
    assert not np.array_equal(a, b)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(10, 3000), seed=SEEDS)
def test_matches_notebook_random_split(n, seed):
    train, val = split_indices(n, 0.1, seed)
    assert (train.tolist(), val.tolist()) == notebook_split(n, seed)


@pytest.mark.parametrize("seed", [0, 42])
def test_matches_notebook_on_full_mnist_size(seed):
    train, val = split_indices(60_000, 0.1, seed)
    assert (len(train), len(val)) == (54_000, 6_000)
    assert (train.tolist(), val.tolist()) == notebook_split(60_000, seed)


def test_split_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    split_indices(100, 0.1, 7)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("n, val_fraction", [(5, 0.1), (10, 0.05), (1, 0.5), (0, 0.5)])
def test_empty_split_is_a_user_error(n, val_fraction):
    with pytest.raises(UserError, match="val_fraction"):
        split_indices(n, val_fraction, 0)


# --- make_splits on a tiny synthetic raw folder -----------------------------------------------------

def test_make_splits_writes_pickle_free_npz(raw_dir, tmp_path, idx_arrays):
    arrays = idx_arrays
    out = tmp_path / "processed"
    sizes = make_splits(raw_dir, out, val_fraction=0.2, seed=3)
    assert sizes == {"train": 40, "val": 10, "test": 10}
    assert sorted(p.name for p in out.iterdir()) == ["test.npz", "train.npz", "val.npz"]
    parts = {}
    for name in ("train", "val", "test"):
        with np.load(out / f"{name}.npz", allow_pickle=False) as f:
            parts[name] = {k: f[k] for k in f.files}
        part = parts[name]
        assert set(part) == {"images", "labels", "index"}
        assert part["images"].dtype == np.uint8 and part["images"].shape == (sizes[name], 28, 28)
        assert part["labels"].dtype == np.uint8 and part["labels"].shape == (sizes[name],)
        assert part["index"].dtype == np.int64
        src_images, src_labels = (FILES[0], FILES[1]) if name != "test" else (FILES[2], FILES[3])
        np.testing.assert_array_equal(part["images"], arrays[src_images][part["index"]])
        np.testing.assert_array_equal(part["labels"], arrays[src_labels][part["index"]])
    train_idx, val_idx = split_indices(50, 0.2, 3)
    np.testing.assert_array_equal(parts["train"]["index"], train_idx)
    np.testing.assert_array_equal(parts["val"]["index"], val_idx)
    np.testing.assert_array_equal(parts["test"]["index"], np.arange(10))
    images, labels = load_split(out / "val.npz")
    np.testing.assert_array_equal(images, parts["val"]["images"])
    np.testing.assert_array_equal(labels, parts["val"]["labels"])
    assert not list(out.glob(".*"))  # no temporary files left


def test_make_splits_is_deterministic(raw_dir, tmp_path):
    make_splits(raw_dir, tmp_path / "a", 0.2, seed=5)
    make_splits(raw_dir, tmp_path / "b", 0.2, seed=5)
    for name in ("train.npz", "val.npz", "test.npz"):
        a, b = load_npz(tmp_path / "a" / name), load_npz(tmp_path / "b" / name)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_train_subset_keeps_first_n_of_train_split(raw_dir, tmp_path):
    out = tmp_path / "processed"
    sizes = make_splits(raw_dir, out, val_fraction=0.2, seed=3, train_subset=7)
    assert sizes == {"train": 7, "val": 10, "test": 10}
    train_idx, val_idx = split_indices(50, 0.2, 3)
    np.testing.assert_array_equal(load_npz(out / "train.npz")["index"], train_idx[:7])
    np.testing.assert_array_equal(load_npz(out / "val.npz")["index"], val_idx)  # val unaffected


def test_train_subset_larger_than_the_split_is_a_user_error(raw_dir, tmp_path):
    out = tmp_path / "processed"
    assert make_splits(raw_dir, out, 0.2, seed=3, train_subset=40)["train"] == 40  # all of them
    with pytest.raises(UserError, match=r"train_subset = 41 but the training split has 40 images; "
                                        r"set it to at most 40"):
        make_splits(raw_dir, tmp_path / "other", 0.2, seed=3, train_subset=41)
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("prefix, images, labels",
                         [("train", FILES[0], FILES[1]), ("t10k", FILES[2], FILES[3])])
def test_mismatched_counts_are_a_user_error(raw_dir, tmp_path, idx_arrays, prefix, images, labels):
    (raw_dir / labels).write_bytes(format_idx(np.zeros(len(idx_arrays[images]) - 1, np.uint8)))
    out = tmp_path / "processed"
    with pytest.raises(UserError, match="images but .* labels") as info:
        make_splits(raw_dir, out, 0.2, seed=0)
    assert prefix in str(info.value) and str(raw_dir) in str(info.value)
    assert not out.exists()  # nothing written


def test_missing_raw_file_is_a_user_error(raw_dir, tmp_path):
    (raw_dir / FILES[3]).unlink()
    with pytest.raises(UserError, match=f"^{raw_dir / FILES[3]} is missing; restore it with `dvc checkout --force "):
        make_splits(raw_dir, tmp_path / "processed", 0.2, seed=0)
    assert not (tmp_path / "processed").exists()


def test_corrupt_raw_file_names_it(raw_dir, tmp_path):
    path = raw_dir / FILES[0]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="truncated or corrupt") as info:
        make_splits(raw_dir, tmp_path / "processed", 0.2, seed=0)
    assert str(path) in str(info.value)


def test_load_split_missing(tmp_path):
    with pytest.raises(UserError, match=r"train.npz is missing; .*`dvc repro -f -s split`"):
        load_split(tmp_path / "train.npz")


def test_to_tensor_scales_and_flattens():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    x = to_tensor(images)
    assert x.dtype == torch.float32 and x.shape == (1, 4)
    torch.testing.assert_close(x, torch.tensor([[0.0, 1.0, 0.2, 0.4]]))
