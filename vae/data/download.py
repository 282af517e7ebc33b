"""Fetch a dataset's four IDX files, verify them, and only then store them.

Sources are tried in order: ``$VAE_DATA_MIRROR`` (a local folder, ``file://`` or
``http(s)://`` prefix holding ``mnist/`` and ``fashion-mnist/``) when set, then
the official mirrors. A source that times out, answers an error, or serves a
truncated, corrupt or wrong file is skipped for the next one. A file lands in
the output folder only after the MD5 of its uncompressed content matches the
official checksum, and it lands atomically.
"""

import gzip
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from urllib.parse import urlparse

from vae.data.datasets import FILES, DatasetSpec
from vae.errors import UserError
from vae.io import write_bytes

log = logging.getLogger("vae")

MIRROR_ENV = "VAE_DATA_MIRROR"


def sources(spec: DatasetSpec, mirror: str | None) -> list[str]:
    """The URL or folder prefixes to try for ``spec``, in order."""
    found = list(spec.urls)
    if mirror:
        found.insert(0, mirror.rstrip("/") + "/" + spec.mirror_folder + "/")
    return found


def _fetch(location: str, timeout: float) -> bytes:
    scheme = urlparse(location).scheme
    if scheme in ("http", "https", "file"):
        with urllib.request.urlopen(location, timeout=timeout) as response:
            return response.read()
    return Path(location).read_bytes()


def fetch_verified(prefix: str, name: str, md5: str, timeout: float) -> bytes:
    """Download ``prefix + name + '.gz'``, uncompress it and check its MD5; raise on any fault."""
    compressed = _fetch(prefix + name + ".gz", timeout)
    try:
        data = gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"corrupt or truncated gzip ({err})") from None
    digest = hashlib.md5(data).hexdigest()
    if digest != md5:
        raise ValueError(f"MD5 {digest} is not the official {md5}")
    return data


def _describe(err: Exception) -> str:
    if isinstance(err, http.client.IncompleteRead):
        return f"connection dropped after {len(err.partial)} bytes, {err.expected} more expected"
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"unreachable ({err.reason})"
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, FileNotFoundError):
        return "no such file"
    return str(err) or type(err).__name__


def _verified_in_place(path: Path, md5: str) -> bytes | None:
    """The content of ``path`` if it is already the official file (its MD5 matches), else None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data if hashlib.md5(data).hexdigest() == md5 else None


def download_dataset(spec: DatasetSpec, out_dir: str | Path, mirror: str | None = None,
                     timeout: float = 30.0) -> list[Path]:
    """Store the verified, uncompressed IDX files of ``spec`` in ``out_dir``.

    A file already in ``out_dir`` with the official MD5 is kept and not fetched, so a rerun (a
    code change DVC sees) costs nothing and works offline. All four files are verified before
    the first is written, so a failed download leaves ``out_dir`` as it was (dvc.yaml persists
    it: DVC does not empty it first). Then the folder holds those four files and nothing else.
    """
    out_dir = Path(out_dir)
    tried = sources(spec, mirror)
    verified, kept = {}, set()
    for name in FILES:
        if _verified_in_place(out_dir / name, spec.md5[name]) is not None:
            log.info("%s: already in %s, MD5 verified", name, out_dir)
            kept.add(name)
            continue
        failures = []
        for prefix in tried:
            try:
                verified[name] = fetch_verified(prefix, name, spec.md5[name], timeout)
            except (OSError, ValueError, http.client.HTTPException) as err:
                failures.append(f"{prefix}{name}.gz: {_describe(err)}")
                log.warning("skipping %s%s.gz: %s", prefix, name, _describe(err))
                continue
            log.info("%s: %d bytes from %s, MD5 verified", name, len(verified[name]), prefix)
            break
        else:
            kept = f"; {out_dir} is unchanged" if out_dir.is_dir() and any(out_dir.iterdir()) else ""
            raise UserError(
                f"could not get {spec.name} file {name} from any source: " + "; ".join(failures) + kept
                + _mirror_advice(f"{spec.mirror_folder}/{name}.gz", mirror))
    for name, data in verified.items():
        write_bytes(out_dir / name, data)
    for other in out_dir.iterdir():
        if other.name not in verified and other.name not in kept:
            other.unlink()
    return [out_dir / name for name in FILES]


def _mirror_advice(file: str, mirror: str | None) -> str:
    """The end of a failed download's line: set the mirror, or, where it is set, point it elsewhere."""
    if mirror:
        return f". {MIRROR_ENV} is set ({mirror}) but gave no good {file}: point it at a folder or URL that holds it"
    return f". Offline? Set {MIRROR_ENV} to a folder or URL holding {file} (e.g. export {MIRROR_ENV}=/path/to/mirror)"


def mirror_from_env() -> str | None:
    return os.environ.get(MIRROR_ENV) or None
