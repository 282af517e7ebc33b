"""Commands the end-to-end tests run: a project command with this interpreter's tools, and a repo's files."""

import os
import subprocess
import sys
from pathlib import Path

from vae.data.download import MIRROR_ENV


def run(cwd: Path, *args: str, fails: bool | None = False, env: dict[str, str] | None = None) -> str:
    """Run a command with this interpreter's environment first on PATH; return stdout + stderr.

    Asserts that it succeeds, or with ``fails=True`` that it exits non-zero (``None``: either).
    ``env`` adds variables.
    """
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    if env.get(MIRROR_ENV) and not env[MIRROR_ENV].startswith(("http://", "https://", "file://")):
        env[MIRROR_ENV] = str(Path(env[MIRROR_ENV]).resolve())
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert fails is None or (proc.returncode != 0) == fails, \
        f"{' '.join(args)} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def git_files(repo: Path) -> list[str]:
    listing = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=repo,
                             capture_output=True, text=True, check=True).stdout
    return [f for f in listing.splitlines() if (repo / f).is_file()]
