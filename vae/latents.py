"""The test set's latent means as a table, and their 2-D projections for plotting.

As the notebook: a 2-D latent space is shown as is; a larger one through PCA
(all test images) and t-SNE (a subset, for speed), both seeded.
"""

import logging

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

log = logging.getLogger("vae")


def latent_table(mu: np.ndarray, logvar: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]
                 ) -> pd.DataFrame:
    """One row per image: index, label, class name, mu_0.., logvar_0.."""
    d = mu.shape[1]
    table = pd.DataFrame({"index": np.arange(len(mu)), "label": labels.astype(int),
                          "class": [classes[y] for y in labels]})
    means = pd.DataFrame(mu, columns=[f"mu_{i}" for i in range(d)])
    logvars = pd.DataFrame(logvar, columns=[f"logvar_{i}" for i in range(d)])
    return pd.concat([table, means, logvars], axis=1)


def _points(table: pd.DataFrame, coords: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"index": table["index"].to_numpy(), "label": table["label"].to_numpy(),
                         "class": table["class"].to_numpy(), "x": coords[:, 0], "y": coords[:, 1]})


def projections(table: pd.DataFrame, tsne_subset: int, perplexity: float, seed: int
                ) -> dict[str, pd.DataFrame]:
    """2-D coordinates per method: ``latent_2d`` when d == 2, else ``latent_pca`` and ``latent_tsne``."""
    mu = table.filter(regex=r"^mu_\d+$").to_numpy()
    if mu.shape[1] == 2:
        return {"latent_2d": _points(table, mu)}
    pca = PCA(n_components=2, random_state=seed).fit_transform(mu)
    log.info("t-SNE of %d latent means (perplexity %g); this takes a while", tsne_subset, perplexity)
    subset = table.iloc[:tsne_subset]
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return {"latent_pca": _points(table, pca),
            "latent_tsne": _points(subset, tsne.fit_transform(mu[:tsne_subset]))}
