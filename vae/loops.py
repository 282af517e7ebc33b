"""What the training and evaluation loops share: the evaluation batch and the per-step callback."""

from collections.abc import Callable

EVAL_BATCH = 1000  # images per batch when nothing is learned; fixed so metrics never depend on a knob
BatchCallback = Callable[[int, int], None]  # (epoch, batch), after every training step; stages pass Ctrl-C checks
