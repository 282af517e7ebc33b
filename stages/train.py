"""train: fit the VAE, saving every epoch so that a killed run resumes exactly.

Per epoch: the weights, a reconstruction grid of the first validation images, the loss
history and the latest losses (so `dvc exp show` follows a running experiment), and the
full training state to resume from. At the end, the model is the last epoch's weights.
"""

import argparse
import logging

from vae.checkpoint import TrainingRecord, run_key
from vae.cli import environment, run_stage
from vae.data.split import load_split, to_tensor
from vae.io import write_json
from vae.model import fixed_binarization
from vae.params import load_params, resolve_device
from vae.training import Schedule, TrainState, fit, logit_of_mean

RECON_IMAGES = 64  # first validation images shown in each epoch's reconstruction grid

log = logging.getLogger("vae")


def main(args: argparse.Namespace) -> None:
    params = load_params()
    device = resolve_device(params.device)
    train_x = to_tensor(load_split(args.train)[0], device)
    val_x = to_tensor(load_split(args.val)[0], device)
    log.info("read %d train and %d validation images; training on %s", len(train_x), len(val_x), device)

    key = run_key("train", params, device)
    record = TrainingRecord(args.model, args.epochs, args.state, args.reconstructions, args.history, args.metrics,
                            params.save_every)
    output_bias = logit_of_mean(train_x) if params.output_bias_init == "train_mean" else None
    state = TrainState.new(params.model_config(), params.lr, params.seed, device, params.adam_eps, output_bias)
    saved = record.resume(key, params.num_epochs)
    if saved is not None:
        state.load_dict(saved)

    if params.likelihood == "binarized":  # validated on one fixed draw; trained on a new draw every batch
        val_x = fixed_binarization(val_x)
    shown = val_x[:RECON_IMAGES]
    schedule = Schedule(params.lr, params.lr_schedule, params.lr_schedule_epochs, params.beta,
                        params.kl_warmup_epochs, params.objective, params.train_samples)
    fit(state, train_x, val_x, params.batch_size, params.num_epochs, params.seed,
        on_epoch=lambda s: record.save_epoch(s, key, params.num_epochs, shown, params.seed),
        schedule=schedule)
    record.finish(state, params.num_epochs, shown, params.seed)
    write_json(args.environment, environment(device))
    log.info("wrote %s (epoch %d), %s and %s", args.model, params.num_epochs, args.history, args.metrics)


if __name__ == "__main__":
    run_stage("train", main, "train", "val", "model", "epochs", "state", "reconstructions", "history", "metrics",
              "environment")
