"""What `edgecls train` shows while a model fits: one line per epoch through the Reporter (on stderr,
wrapped to a terminal, whole in a log) and, on a terminal, a rich bar over the epoch's batches that
clears itself when the epoch ends.

Keras's own progress output is turned off (fit's verbose=0): its bar line is some 130 columns wide and
redraws itself with backspaces, which an 80-column terminal folds into a screenful of fragments, and it
writes to stdout, which is the command's result.

    with epoch_progress(keras, reporter, epochs=30, steps=45) as progress:
        model.fit(..., verbose=0, callbacks=[..., progress])
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional

from edgecls.reporter import Reporter

# Keras's names for the figures an epoch ends with, as the line shows them; other metrics keep their own.
SHORT_NAMES = {"accuracy": "acc", "categorical_accuracy": "acc", "sparse_categorical_accuracy": "acc"}
LEARNING_RATE = "learning_rate"


def epoch_line(epoch: int, epochs: int, logs: Mapping[str, float], seconds: float) -> str:
    """`Epoch 2/30  loss 0.8429  acc 0.7269  val loss 0.3211  val acc 0.9274  1 s`: the training figures,
    then the validation ones (Keras's val_ names), then the epoch's time; some 75 columns."""
    def figure(name: str, value: float) -> str:
        return f"{SHORT_NAMES.get(name, name)} {value:.4f}"

    def loss_first(names: list[str]) -> list[str]:
        return sorted(names, key=lambda name: name != "loss")  # stable: the metrics keep Keras's order

    trained = [k for k in logs if not k.startswith("val_") and k != LEARNING_RATE]
    train = [figure(k, logs[k]) for k in loss_first(trained)]
    val = [f"val {figure(k, logs['val_' + k])}" for k in loss_first([k[4:] for k in logs if k.startswith("val_")])]
    took = f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    width = len(str(epochs))
    return "  ".join([f"Epoch {epoch:>{width}}/{epochs}", *train, *val, took])


@contextlib.contextmanager
def epoch_progress(keras: Any, reporter: Reporter, epochs: int, steps: int) -> Iterator[Any]:
    """A Keras callback that reports each epoch (epoch_line, and a line when the learning rate was lowered
    at its end, as ReduceLROnPlateau does; put it after that callback) and, where the reporter draws bars,
    a bar over its `steps` batches with the running loss. `epochs`: the last epoch's number (a later phase
    continues the count). The context closes a bar left open when fitting fails."""

    class EpochProgress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.bar: Optional[contextlib.AbstractContextManager] = None
            self.advance: Optional[Callable[..., None]] = None
            self.epoch, self.started, self.rate = 0, 0.0, None

        def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
            self.epoch, self.started, self.rate = epoch, time.perf_counter(), self.learning_rate()
            if reporter.bars:
                self.bar = reporter.task(f"Epoch {epoch + 1}/{epochs}", total=steps)
                self.advance = self.bar.__enter__()

        def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
            self.close()
            figures = {k: float(v) for k, v in (logs or {}).items()}
            reporter(epoch_line(epoch + 1, epochs, figures, time.perf_counter() - self.started))
            rate = self.learning_rate()
            if rate is not None and self.rate is not None and rate < self.rate:
                reporter(f"Learning rate lowered to {rate:g} (from {self.rate:g}): the validation loss stalled")

        def learning_rate(self) -> Optional[float]:
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is None:
                return None
            return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

        def close(self) -> None:
            if self.bar is not None:
                bar, self.bar, self.advance = self.bar, None, None
                bar.__exit__(None, None, None)

    class EpochProgressBar(EpochProgress):
        # Only where a bar is drawn: a batch hook makes Keras hand over each batch's logs at once, where it
        # otherwise dispatches them in the background (CallbackList's async_train).
        def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
            loss = (logs or {}).get("loss")
            if self.advance is not None:
                self.advance(1, description=None if loss is None else
                             f"Epoch {self.epoch + 1}/{epochs}  loss {float(loss):.4f}")

    progress = EpochProgressBar() if reporter.bars else EpochProgress()
    try:
        yield progress
    finally:
        progress.close()
