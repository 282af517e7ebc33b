"""The test set's latent means as a table, and their 2-D projections for plotting.

As the notebook: a 2-D latent space is shown as is; a larger one through PCA
(all test images) and t-SNE (a subset, for speed), both seeded. A 1-D one is shown as
is too, one strip per class.
"""

import logging

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

log = logging.getLogger("vae")


def latent_table(mu: np.ndarray, logvar: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]
                 ) -> pd.DataFrame:
    """One row per image: index, label, class name ("" for an image without a label, -1), mu_0.., logvar_0.."""
    d = mu.shape[1]
    table = pd.DataFrame({"index": np.arange(len(mu)), "label": labels.astype(int),
                          "class": [classes[y] if y >= 0 else "" for y in labels]})
    means = pd.DataFrame(mu, columns=[f"mu_{i}" for i in range(d)])
    logvars = pd.DataFrame(logvar, columns=[f"logvar_{i}" for i in range(d)])
    return pd.concat([table, means, logvars], axis=1)


def _points(table: pd.DataFrame, coords: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"index": table["index"].to_numpy(), "label": table["label"].to_numpy(),
                         "class": table["class"].to_numpy(), "x": coords[:, 0], "y": coords[:, 1]})


def projections(table: pd.DataFrame, tsne_subset: int, perplexity: float, seed: int
                ) -> dict[str, pd.DataFrame]:
    """2-D coordinates per method: ``latent_1d`` (the code against the label) when d == 1, ``latent_2d``
    when d == 2, else ``latent_pca`` and ``latent_tsne``."""
    mu = table.filter(regex=r"^mu_\d+$").to_numpy()
    if mu.shape[1] == 1:
        return {"latent_1d": _points(table, np.column_stack([mu[:, 0], table["label"].to_numpy()]))}
    if mu.shape[1] == 2:
        return {"latent_2d": _points(table, mu)}
    pca = PCA(n_components=2, random_state=seed).fit_transform(mu)
    log.info("t-SNE of %d latent means (perplexity %g); this takes a while", tsne_subset, perplexity)
    subset, codes = table.iloc[:tsne_subset], mu[:tsne_subset]
    collapsed = not np.ptp(codes, axis=0).any()
    if collapsed:  # t-SNE's PCA start divides by the codes' spread: NaN, and a crash in its Barnes-Hut code
        log.warning("warning: the %d codes t-SNE embeds are one point (the posterior collapsed); it starts at "
                    "random points instead of their PCA", tsne_subset)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="random" if collapsed else "pca", random_state=seed)
    return {"latent_pca": _points(table, pca), "latent_tsne": _points(subset, tsne.fit_transform(codes))}
