"""check-params: validate every key of params.yaml, so that a typo or a bad value never passes silently.

DVC runs this stage first whenever params.yaml changes, even when no stage that reads
the changed key would rerun. It writes nothing.
"""

import argparse

from vae.runtime.cli import run_stage, stage_params


def main(args: argparse.Namespace) -> None:
    stage_params()


if __name__ == "__main__":
    run_stage("check-params", main, computes=False)
