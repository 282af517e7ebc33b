"""download_dataset against misbehaving sources: a local HTTP server, file:// URLs and folders.

Everything runs on 127.0.0.1 or the local file system with a tiny synthetic dataset,
so no test needs the network or the 50 MB real data (except the last one, which
uses the offline mirror when it is present and is skipped otherwise).
"""

import contextlib
import gzip
import hashlib
import http.server
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import synthetic_arrays
from vae.data.datasets import DATASETS, FILES, DatasetSpec
from vae.data.download import MIRROR_ENV, download_dataset, mirror_from_env, sources
from vae.data.idx import format_idx, read_idx
from vae.errors import UserError

CLIENT_TIMEOUT = 0.5  # seconds; the slow paths stall longer than this
STALL = 2.0  # how long a slow handler waits at most before giving up


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def corrupt(blob: bytes) -> bytes:
    """Flip a run of bytes in the middle of the compressed stream (header and trailer kept)."""
    mid = len(blob) // 2
    return blob[:mid] + bytes(b ^ 0xFF for b in blob[mid:mid + 16]) + blob[mid + 16:]


def wrong_content(data: bytes) -> bytes:
    """The same file with its last byte changed: a valid IDX file and gzip, but the wrong MD5."""
    return data[:-1] + bytes([data[-1] ^ 0x01])


def fake_spec(files: dict[str, bytes], urls: tuple[str, ...] = ()) -> DatasetSpec:
    return DatasetSpec(name="Fake", mirror_folder="fake", urls=urls,
                       md5={name: md5(data) for name, data in files.items()}, classes=tuple("0123456789"))


def assert_only_verified(out: Path, files: dict[str, bytes]) -> list[str]:
    """Every file in ``out`` is a whole, verified dataset file; no temporary files are left."""
    names = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert set(names) <= set(files), f"unexpected files in {out}: {names}"
    for name in names:
        assert md5((out / name).read_bytes()) == md5(files[name]), f"{name} landed unverified"
    return names


def make_handler(files: dict[str, bytes], stop: threading.Event) -> type:
    """A request handler whose behaviour is chosen by the first path component: /<mode>/<name>.gz."""

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 5  # per-request socket timeout, so a stuck client cannot hold a thread forever

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base signature)
            pass

        def send_body(self, body: bytes, length: int | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (the base class's name)
            with contextlib.suppress(ConnectionError, TimeoutError):  # the client gave up first, as it should
                self.serve()

        def serve(self) -> None:
            _, mode, filename = self.path.split("/", 2)
            name = filename.removesuffix(".gz")
            if name not in files or not filename.endswith(".gz"):
                self.send_error(404)
                return
            data = files[name]
            if mode == "good":
                self.send_body(gz(data))
            elif mode == "slow":  # says nothing until the client has timed out
                stop.wait(STALL)
                self.send_body(gz(data))
            elif mode == "stall":  # sends headers and half the body, then stalls
                blob = gz(data)
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob[: len(blob) // 2])
                self.wfile.flush()
                stop.wait(STALL)
            elif mode in ("404", "500"):
                self.send_error(int(mode))
            elif mode == "truncated":  # a cut-off file served as if it were whole
                blob = gz(data)
                self.send_body(blob[: len(blob) // 2])
            elif mode == "short":  # the connection drops before Content-Length bytes arrived
                blob = gz(data)
                self.send_body(blob[: len(blob) // 2], length=len(blob))
                self.close_connection = True
            elif mode == "corrupt":
                self.send_body(corrupt(gz(data)))
            elif mode == "wrongmd5":
                self.send_body(gz(wrong_content(data)))
            elif mode == "notgzip":
                self.send_body(data)
            else:
                self.send_error(400, f"unknown mode {mode}")

    return Handler


@pytest.fixture
def server(idx_files: dict[str, bytes]):
    """A threaded HTTP server on 127.0.0.1 serving the synthetic files; yields (base URL, files)."""
    files = idx_files
    stop = threading.Event()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(files, stop))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    finally:
        stop.set()  # release any handler still stalling
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def mirror(tmp_path: Path, idx_files: dict[str, bytes]) -> Path:
    """A VAE_DATA_MIRROR-style folder: <mirror>/fake/<name>.gz."""
    root = tmp_path / "mirror"
    (root / "fake").mkdir(parents=True)
    for name, data in idx_files.items():
        (root / "fake" / f"{name}.gz").write_bytes(gz(data))
    return root


# --- one bad source, then a good one ------------------------------------------------------------

BAD_MODES = {
    "slow": "timed out",
    "stall": "timed out",
    "404": "HTTP 404",
    "500": "HTTP 500",
    "truncated": "corrupt or truncated gzip",
    "short": "connection dropped after",
    "corrupt": "corrupt or truncated gzip",
    "notgzip": "corrupt or truncated gzip",
    "wrongmd5": "is not the official",
}


@pytest.mark.parametrize("mode", list(BAD_MODES))
def test_bad_http_source_is_skipped_for_good_http_source(server, tmp_path, mode, caplog):
    base, files = server
    spec = fake_spec(files, urls=(f"{base}/{mode}/", f"{base}/good/"))
    out = tmp_path / "raw"
    with caplog.at_level("WARNING", logger="vae"):
        written = download_dataset(spec, out, timeout=CLIENT_TIMEOUT)
    assert written == [out / name for name in FILES]
    assert assert_only_verified(out, files) == sorted(FILES)
    skipped = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(skipped) == len(FILES), skipped  # the bad source was tried (and skipped) for every file
    assert all(f"{base}/{mode}/" in s and BAD_MODES[mode] in s for s in skipped), skipped


@pytest.mark.parametrize("mode", ["404", "corrupt", "wrongmd5", "truncated"])
def test_bad_http_source_is_skipped_for_folder_mirror(server, tmp_path, mirror, mode):
    """The good source is last: a mirror tried first is bad, so use it as the last official URL."""
    base, files = server
    spec = fake_spec(files, urls=(f"{base}/{mode}/", mirror.joinpath("fake").as_posix() + "/"))
    out = tmp_path / "raw"
    download_dataset(spec, out, timeout=CLIENT_TIMEOUT)
    assert assert_only_verified(out, files) == sorted(FILES)


def test_bad_mirror_is_skipped_for_official_url(server, tmp_path):
    """VAE_DATA_MIRROR is tried first; when it serves corrupt files the official URLs still work."""
    base, files = server
    spec = fake_spec(files, urls=(f"{base}/good/",))
    out = tmp_path / "raw"
    download_dataset(spec, out, mirror=f"{base}/corrupt", timeout=CLIENT_TIMEOUT)
    assert assert_only_verified(out, files) == sorted(FILES)


# --- every source fails --------------------------------------------------------------------------

def test_all_sources_fail_lists_every_source(server, tmp_path):
    base, files = server
    modes = ["404", "500", "truncated", "corrupt", "wrongmd5", "slow"]
    spec = fake_spec(files, urls=tuple(f"{base}/{m}/" for m in modes))
    missing_mirror = tmp_path / "no-such-mirror"
    out = tmp_path / "raw"
    with pytest.raises(UserError) as info:
        download_dataset(spec, out, mirror=str(missing_mirror), timeout=CLIENT_TIMEOUT)
    msg = str(info.value)
    assert "\n" not in msg
    assert FILES[0] in msg  # the first file already fails
    assert f"{missing_mirror}/fake/{FILES[0]}.gz: no such file" in msg
    for mode, what in [("404", "HTTP 404"), ("500", "HTTP 500"), ("truncated", "corrupt or truncated gzip"),
                       ("corrupt", "corrupt or truncated gzip"), ("wrongmd5", "is not the official"),
                       ("slow", "timed out")]:
        assert f"{base}/{mode}/{FILES[0]}.gz: " in msg
        assert what in msg.split(f"{base}/{mode}/{FILES[0]}.gz: ", 1)[1].split(";")[0], (mode, msg)
    assert MIRROR_ENV in msg
    assert assert_only_verified(out, files) == []


def test_failure_midway_leaves_the_last_dataset_exactly_as_it_was(tmp_path, mirror, idx_files):
    """A mirror that lacks the third file: a clear error, and the folder keeps the last verified
    dataset byte for byte (nothing is written before all four files have verified)."""
    (mirror / "fake" / f"{FILES[2]}.gz").unlink()
    out = tmp_path / "raw"
    out.mkdir()
    previous = {name: format_idx(array) for name, array in synthetic_arrays(seed=1).items()}
    for name, data in previous.items():
        (out / name).write_bytes(data)
    with pytest.raises(UserError, match=f"{FILES[2]}.*no such file; {out} is unchanged.*{MIRROR_ENV}"):
        download_dataset(fake_spec(idx_files), out, mirror=str(mirror))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == previous


def test_success_replaces_the_folder_with_the_four_verified_files(tmp_path, mirror, idx_files):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "stale-file").write_bytes(b"from an older download")
    (out / FILES[0]).write_bytes(b"an older version")
    download_dataset(fake_spec(idx_files), out, mirror=str(mirror))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == idx_files


def test_corrupt_mirror_leaves_existing_outputs_alone(tmp_path, mirror, idx_files):
    """A failed download never overwrites a file already in the output folder with bad bytes."""
    out = tmp_path / "raw"
    out.mkdir()
    (out / FILES[1]).write_bytes(b"an older version")
    (mirror / "fake" / f"{FILES[1]}.gz").write_bytes(corrupt(gz(idx_files[FILES[1]])))
    with pytest.raises(UserError, match="corrupt or truncated gzip"):
        download_dataset(fake_spec(idx_files), out, mirror=str(mirror))
    assert (out / FILES[1]).read_bytes() == b"an older version"


def test_a_verified_dataset_is_kept_without_fetching_anything(tmp_path, mirror, idx_files, caplog):
    """A rerun (a code change DVC sees) finds the four files verified in place: no source is asked, offline too."""
    out = tmp_path / "raw"
    download_dataset(fake_spec(idx_files), out, mirror=str(mirror))
    (out / "stale-file").write_bytes(b"not part of the dataset")
    caplog.set_level("INFO", logger="vae")
    download_dataset(fake_spec(idx_files), out)  # no mirror, no official URL: would fail if it fetched
    assert {p.name: p.read_bytes() for p in out.iterdir()} == idx_files
    assert all("already in" in record.message for record in caplog.records)


def test_no_sources_at_all(tmp_path, idx_files):
    with pytest.raises(UserError, match=MIRROR_ENV):
        download_dataset(fake_spec(idx_files), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_a_mirror_that_is_set_is_not_asked_to_be_set(tmp_path, mirror, idx_files):
    (mirror / "fake" / f"{FILES[2]}.gz").unlink()
    with pytest.raises(UserError) as info:
        download_dataset(fake_spec(idx_files), tmp_path / "raw", mirror=str(mirror))
    assert str(info.value).endswith(f". {MIRROR_ENV} is set ({mirror}) but gave no good fake/{FILES[2]}.gz: point it "
                                    "at a folder or URL that holds it")
    assert "Set " not in str(info.value) and "export" not in str(info.value)
    with pytest.raises(UserError, match=rf"\. Offline\? Set {MIRROR_ENV} to a folder or URL holding fake/"):
        download_dataset(fake_spec(idx_files), tmp_path / "raw")  # unset: then it says how to set it


# --- good local mirrors ----------------------------------------------------------------------------

def test_folder_mirror(tmp_path, mirror, idx_files):
    out = tmp_path / "raw"
    download_dataset(fake_spec(idx_files), out, mirror=str(mirror))
    assert assert_only_verified(out, idx_files) == sorted(FILES)
    assert read_idx(out / FILES[0], (None, 28, 28)).shape == (50, 28, 28)


def test_folder_mirror_relative_with_trailing_slash(tmp_path, mirror, idx_files, monkeypatch):
    monkeypatch.chdir(tmp_path)
    download_dataset(fake_spec(idx_files), "raw", mirror="mirror/")
    assert assert_only_verified(tmp_path / "raw", idx_files) == sorted(FILES)


def test_file_url_mirror(tmp_path, mirror, idx_files):
    out = tmp_path / "raw"
    download_dataset(fake_spec(idx_files), out, mirror=mirror.as_uri())
    assert assert_only_verified(out, idx_files) == sorted(FILES)


def test_file_url_mirror_missing_file_falls_back(tmp_path, mirror, idx_files, server):
    base, _ = server
    (mirror / "fake" / f"{FILES[1]}.gz").unlink()
    out = tmp_path / "raw"
    download_dataset(fake_spec(idx_files, urls=(f"{base}/good/",)), out, mirror=mirror.as_uri())
    assert assert_only_verified(out, idx_files) == sorted(FILES)


def test_written_files_have_usual_permissions(tmp_path, mirror, idx_files):
    umask = os.umask(0)
    os.umask(umask)
    out = tmp_path / "raw"
    download_dataset(fake_spec(idx_files), out, mirror=str(mirror))
    assert {(out / name).stat().st_mode & 0o777 for name in FILES} == {0o666 & ~umask}


def test_sources_order_and_env(monkeypatch, idx_files):
    spec = fake_spec(idx_files, urls=("https://a.example/", "http://b.example/"))
    assert sources(spec, None) == ["https://a.example/", "http://b.example/"]
    assert sources(spec, "/m/") == ["/m/fake/", "https://a.example/", "http://b.example/"]
    monkeypatch.setenv(MIRROR_ENV, "")
    assert mirror_from_env() is None
    monkeypatch.setenv(MIRROR_ENV, "file:///srv/data")
    assert mirror_from_env() == "file:///srv/data"
    monkeypatch.delenv(MIRROR_ENV)
    assert mirror_from_env() is None


# --- the real offline mirror -----------------------------------------------------------------------

def real_mirror() -> Path:
    return Path(os.environ.get(MIRROR_ENV, ""))


@pytest.mark.skipif(not os.environ.get(MIRROR_ENV) or not (real_mirror() / "mnist").is_dir(),
                    reason=f"needs an offline MNIST mirror folder in {MIRROR_ENV}")
def test_real_mirror_mnist(tmp_path):
    spec = replace(DATASETS["MNIST"], urls=())  # the mirror only: never the network
    out = tmp_path / "raw"
    download_dataset(spec, out, mirror=str(real_mirror()))
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for name in FILES:
        assert md5((out / name).read_bytes()) == spec.md5[name]
    assert read_idx(out / "train-labels-idx1-ubyte", (None,)).shape == (60_000,)
    assert read_idx(out / "t10k-images-idx3-ubyte", (None, 28, 28)).shape == (10_000, 28, 28)
