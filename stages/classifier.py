"""classifier: a small CNN trained on the train split, whose features score the VAE's images.

It depends on the data and its own params only, so no VAE experiment retrains it.
metrics: its test accuracy, and the reference floor of the Frechet distance (the train
split's first 10,000 images against the test set: what "as good as real data" scores).
"""

import argparse
import logging

import torch

from vae.classifier import accuracy, features_and_logits, save_classifier, train_classifier
from vae.cli import run_stage
from vae.data.split import load_split, to_tensor
from vae.io import write_json
from vae.metrics import FD_IMAGES, frechet_distance
from vae.params import load_params, resolve_device


def main(args: argparse.Namespace) -> None:
    params = load_params()
    device = resolve_device(params.device)
    (train_x, train_y), (test_x, test_y) = (
        (to_tensor(images, device), torch.as_tensor(labels, dtype=torch.int64, device=device))
        for images, labels in (load_split(args.train), load_split(args.test)))
    model = train_classifier(train_x, train_y, params.classifier_epochs, params.classifier_batch_size,
                             params.classifier_lr, params.data_seed)
    metrics = {"classifier_test_accuracy": accuracy(model, test_x, test_y),
               "fd_real_data_floor": frechet_distance(features_and_logits(model, train_x[:FD_IMAGES])[0],
                                                      features_and_logits(model, test_x)[0])}
    save_classifier(args.model, model)
    write_json(args.metrics, metrics)
    logging.getLogger("vae").info("test accuracy %.4f, FD floor %.3f; wrote %s and %s",
                                  metrics["classifier_test_accuracy"], metrics["fd_real_data_floor"],
                                  args.model, args.metrics)


if __name__ == "__main__":
    run_stage("classifier", main, "train", "test", "model", "metrics")
