"""train: fit the VAE, saving every epoch so that a killed run resumes exactly.

Per epoch: the weights, a reconstruction grid of the first validation images, the loss
history and the latest losses (so `dvc exp show` follows a running experiment), and the
full training state to resume from. At the end, the model is the last epoch's weights.
"""

import argparse
import logging

from vae.data.split import load_images
from vae.errors import UserError
from vae.io import write_json
from vae.likelihoods import LIKELIHOODS
from vae.model import VAEConfig
from vae.params import resolve_device
from vae.runtime import interrupt
from vae.runtime.cli import run_stage, stage_params
from vae.runtime.machine import environment, missing_bf16_feature
from vae.runtime.record import TrainingRecord
from vae.runtime.run_key import run_key
from vae.training import TrainingSettings, TrainState, fit, logit_of_mean

RECON_IMAGES = 64  # first validation images shown in each epoch's reconstruction grid

log = logging.getLogger("vae")


def main(args: argparse.Namespace) -> None:
    params = stage_params()
    settings = TrainingSettings.from_params(params)
    device = resolve_device(params.device)
    train_x, _ = load_images(args.train, device)
    val_x, _ = load_images(args.val, device)
    log.info("read %d train and %d validation images; training on %s", len(train_x), len(val_x), device)
    if settings.precision == "bf16-mixed" and device.type == "cpu" and (missing := missing_bf16_feature()):
        log.warning("warning: this CPU lacks %s, so bf16-mixed emulates bfloat16 and trains slower than 32-true",
                    missing)

    key = run_key("train", params, device)
    record = TrainingRecord(args.model, args.epochs, args.state, args.reconstructions, args.history, args.metrics,
                            params.save_every)
    train_mean = params.output_bias_init == "train_mean"
    output_bias = logit_of_mean(train_x, LIKELIHOODS[params.likelihood]) if train_mean else None
    if params.pseudo_inputs_init == "data" and len(train_x) < params.pseudo_inputs:  # a folder's count (vae.params)
        raise UserError(f"pseudo_inputs = {params.pseudo_inputs} start at training images but {args.train} holds "
                        f"{len(train_x)}; lower pseudo_inputs or set pseudo_inputs_init: random")
    pseudo_inputs = train_x[:params.pseudo_inputs] if params.pseudo_inputs_init == "data" else None
    state = TrainState.new(VAEConfig.from_params(params), settings, device, output_bias=output_bias,
                           pseudo_inputs=pseudo_inputs)
    saved = record.resume(key, settings.num_epochs)
    if saved is not None:
        state.load_dict(saved)

    val_x = state.model.likelihood.held_out(val_x)  # e.g. one fixed binarization, scored every epoch
    shown = val_x[:RECON_IMAGES]
    fit(state, train_x, val_x, settings, on_batch=interrupt.check,
        on_epoch=lambda s: record.save_epoch(s, key, settings.num_epochs, shown, settings.seed))
    record.finish(state, settings.num_epochs, shown, settings.seed)
    write_json(args.environment, environment(device, params.numerics, params.threads))
    log.info("wrote %s (epoch %d), %s and %s", args.model, settings.num_epochs, args.history, args.metrics)


if __name__ == "__main__":
    run_stage("train", main, "train", "val", "model", "epochs", "state", "reconstructions", "history", "metrics",
              "environment")
