"""``python -m vae.studies queue|report NAME``: what ``make study`` and ``make report`` run."""

import argparse
import logging
import sys
import time

from vae.errors import UserError
from vae.studies.experiments import code_version, experiments, queue
from vae.studies.report import RESULTS_DIR, latest, read_record, write_report
from vae.studies.spec import load_study

log = logging.getLogger("vae")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vae.studies", description=__doc__)
    parser.add_argument("action", choices=("queue", "report"),
                        help="queue: the study's runs that are not done; report: docs/results/NAME.{csv,md,png}")
    parser.add_argument("study", help="a file studies/NAME.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[study] %(message)s", stream=sys.stderr)
    start = time.perf_counter()
    try:
        study = load_study(args.study)
        if args.action == "queue":
            record = latest(read_record(RESULTS_DIR / f"{study.name}.csv"))
            done = record[record["code"] == code_version()].to_dict("records") if len(record) else []
            queued = queue(study, done)
            log.info("%d of %d runs queued; start them with `dvc queue start`, follow with `dvc queue status`",
                     len(queued), len(study.runs()))
        else:
            runs = write_report(study, experiments(all_commits=True))
            log.info("%d of %d runs in %s/%s.md (%.1f s)", len(runs), len(study.runs()), RESULTS_DIR, study.name,
                     time.perf_counter() - start)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
