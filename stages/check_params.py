"""check-params: validate every key of params.yaml, so that a typo or a bad value never passes silently.

DVC runs this stage first whenever params.yaml changes, even when no stage that reads
the changed key would rerun. It writes nothing.
"""

from vae.cli import run_stage
from vae.params import load_params


def main(args: object) -> None:
    load_params()


if __name__ == "__main__":
    run_stage("check-params", main)
