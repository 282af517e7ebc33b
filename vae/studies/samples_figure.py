"""The docs' samples figure: an experiment's prior samples beside its latent-density samples.

``python -m vae.studies.samples_figure --rev EXPERIMENT --out docs/samples.png`` (``make samples-figure``).
"""

import argparse
from pathlib import Path

import vae
from vae.figures import side_by_side


def main() -> None:
    parser = argparse.ArgumentParser(description="An experiment's prior and latent-density samples, side by side")
    parser.add_argument("--rev", default=None, help="an experiment, branch, tag or commit (default: the workspace)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = vae.load_model(rev=args.rev)
    density = vae.load_latent_density(rev=args.rev)
    side_by_side(args.out, {"from the prior N(0, I)": vae.sample(model, args.n, args.seed),
                            "from the ex-post latent density": vae.sample(model, args.n, args.seed, density)},
                 title=f"{args.rev or 'workspace'}: latent_dim {model.latent_dim}, seed {args.seed}")


if __name__ == "__main__":
    main()
