"""classifier: a small CNN trained on the train split, whose features score the VAE's images.

It depends on the data and its own params only, so no VAE experiment retrains it.
metrics: its test accuracy, and the reference floor of the Frechet distance (the train
split's first 10,000 images against the test set: what "as good as real data" scores).
"""

import argparse
import logging

import torch

from vae.classifier import FD_IMAGES, accuracy, features_and_logits, frechet_distance, save_classifier, train_classifier
from vae.data.split import image_shape, load_images, load_split
from vae.io import staged, write_json
from vae.params import resolve_device
from vae.runtime import interrupt
from vae.runtime.cli import run_stage, stage_params


def main(args: argparse.Namespace) -> None:
    params = stage_params()
    device = resolve_device(params.device)
    (train_x, train_y), (test_x, test_y) = (
        (images, torch.as_tensor(labels, dtype=torch.int64, device=device))
        for images, labels in (load_images(args.train, device), load_images(args.test, device)))
    if (train_y < 0).any():  # a folder without class folders: the classifier's metrics are not defined
        with staged(args.model, args.metrics) as (model_path, metrics_path):
            save_classifier(model_path, None)
            write_json(metrics_path, {})
        logging.getLogger("vae").info("the images have no labels: no classifier, and no metric of it is defined")
        return
    channels, side = image_shape(load_split(args.test)[0])
    model = train_classifier(train_x, train_y, params.classifier_epochs, params.classifier_batch_size,
                             params.classifier_lr, params.data_seed, on_batch=interrupt.check,
                             shape=(channels, side, side))
    test_features, test_logits = features_and_logits(model, test_x)  # one pass over the test set for both metrics
    metrics = {"classifier_test_accuracy": accuracy(test_logits, test_y),
               "fd_real_data_floor": frechet_distance(features_and_logits(model, train_x[:FD_IMAGES])[0],
                                                      test_features)}
    with staged(args.model, args.metrics) as (model_path, metrics_path):
        save_classifier(model_path, model)
        write_json(metrics_path, metrics)
    logging.getLogger("vae").info("test accuracy %.4f, FD floor %.3f; wrote %s and %s",
                                  metrics["classifier_test_accuracy"], metrics["fd_real_data_floor"],
                                  args.model, args.metrics)


if __name__ == "__main__":
    run_stage("classifier", main, "train", "test", "model", "metrics")
