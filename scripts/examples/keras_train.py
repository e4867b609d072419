# SPDX-License-Identifier: MIT
"""A Keras 3 (TensorFlow backend) training job that works with trainsupd (copy the pattern).

What trainsupd expects of a task (docs/runtimes.md):
  1. A handler for the checkpoint signal (TRAINSUPD_CHECKPOINT_SIGNAL, SIGUSR1 by default) that
     only sets a flag; a callback saves at the next batch boundary. Without a handler the signal
     KILLS the process.
  2. Atomic checkpoints in TRAINSUPD_CHECKPOINT_DIR: model.save() to a temporary path in the same
     directory, fsync, os.replace over the old file. One .keras file holds the weights AND the
     optimizer state, including optimizer.iterations, from which the epoch is derived: there is
     no second file that could disagree with it.
  3. After a save, create TRAINSUPD_COMMIT_FILE: "checkpoint complete" (no settle wait).
  4. On start with TRAINSUPD_RESUMED=1, load the model trainsupd restored.
  5. SIGTERM means "stop now": trainsupd has already asked for (and waited for) a checkpoint.
"""

import math
import os
import signal
import sys

import keras
import numpy as np

CKPT_DIR = os.environ.get("TRAINSUPD_CHECKPOINT_DIR", "./checkpoints")
MODEL_PATH = os.path.join(CKPT_DIR, "model.keras")
TMP_PATH = os.path.join(CKPT_DIR, ".tmp-model.keras")  # Keras wants the .keras suffix
COMMIT_FILE = os.environ.get("TRAINSUPD_COMMIT_FILE")
EPOCHS, BATCH = 30, 64

checkpoint_wanted = False


def on_checkpoint_signal(signum, frame):
    global checkpoint_wanted
    checkpoint_wanted = True  # only a flag: the callback below does the saving


def on_sigterm(signum, frame):
    print("SIGTERM: stopping without saving", flush=True)
    sys.exit(143)


def save_model(model, why):
    os.makedirs(CKPT_DIR, exist_ok=True)
    model.save(TMP_PATH)  # weights + optimizer state (include_optimizer is the default)
    with open(TMP_PATH, "rb") as f:
        os.fsync(f.fileno())
    os.replace(TMP_PATH, MODEL_PATH)  # same directory: an atomic rename
    dir_fd = os.open(CKPT_DIR, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    if COMMIT_FILE:
        open(COMMIT_FILE, "w").close()  # tells trainsupd the checkpoint is complete
    print(f"checkpoint saved ({why})", flush=True)


class TrainsupdCheckpoint(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        global checkpoint_wanted
        if checkpoint_wanted:
            checkpoint_wanted = False
            save_model(self.model, f"asked, batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.model, f"end of epoch {epoch}")


def build_model():
    model = keras.Sequential([keras.Input((128,)), keras.layers.Dense(256, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main():
    sig = os.environ.get("TRAINSUPD_CHECKPOINT_SIGNAL", "SIGUSR1")
    if sig != "none":  # install before anything slow, so that an early signal is not fatal
        signal.signal(getattr(signal, sig if sig.startswith("SIG") else "SIG" + sig), on_checkpoint_signal)
    signal.signal(signal.SIGTERM, on_sigterm)

    rng = np.random.default_rng(0)  # stand-in for your dataset
    x = rng.normal(size=(20000, 128)).astype("float32")
    y = rng.integers(0, 10, size=(20000,))
    steps_per_epoch = math.ceil(len(x) / BATCH)

    if os.path.exists(MODEL_PATH):
        model = keras.models.load_model(MODEL_PATH)  # compiled, with the optimizer state
        done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        initial_epoch = done // steps_per_epoch
        # A partly done epoch is run again from its start: rewind the counter to match, so that
        # iterations // steps_per_epoch stays the epoch number however often this happens.
        model.optimizer.iterations.assign(initial_epoch * steps_per_epoch)
        print(f"resumed after {done} steps, at epoch {initial_epoch} "
              f"(snapshot {os.environ.get('TRAINSUPD_SNAPSHOT', 'local')})", flush=True)
    else:
        if os.environ.get("TRAINSUPD_RESUMED") == "1":
            print(f"warning: resumed, but {MODEL_PATH} is missing; starting fresh", flush=True)
        model, initial_epoch = build_model(), 0

    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, initial_epoch=initial_epoch,
              callbacks=[TrainsupdCheckpoint()], verbose=2)
    print("training complete", flush=True)  # exit 0: trainsupd makes a final sync and marks the job done


if __name__ == "__main__":
    main()
