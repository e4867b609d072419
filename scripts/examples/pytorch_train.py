# SPDX-License-Identifier: MIT
"""A PyTorch training loop that works with trainsupd (copy the pattern into your own train.py).

What trainsupd expects of a task (docs/runtimes.md):
  1. A handler for the checkpoint signal (TRAINSUPD_CHECKPOINT_SIGNAL, SIGUSR1 by default) that
     only sets a flag; the loop saves at the next batch boundary. Without a handler the signal
     KILLS the process.
  2. Atomic checkpoints in TRAINSUPD_CHECKPOINT_DIR: write a temporary file in the same
     directory, fsync it, os.replace it over the old one (a reader never sees half a file).
  3. After a save, create TRAINSUPD_COMMIT_FILE: "checkpoint complete" (no settle wait).
  4. On start with TRAINSUPD_RESUMED=1, load the checkpoint trainsupd restored.
  5. SIGTERM means "stop now": trainsupd has already asked for (and waited for) a checkpoint.
With DistributedDataParallel, only rank 0 saves and creates the commit file.
"""

import os
import signal
import sys

import torch
from torch import nn

CKPT_DIR = os.environ.get("TRAINSUPD_CHECKPOINT_DIR", "./checkpoints")
CKPT = os.path.join(CKPT_DIR, "checkpoint.pt")
COMMIT_FILE = os.environ.get("TRAINSUPD_COMMIT_FILE")
EPOCHS, STEPS_PER_EPOCH, SAVE_EVERY = 20, 500, 200

checkpoint_wanted = False


def on_checkpoint_signal(signum, frame):
    global checkpoint_wanted
    checkpoint_wanted = True  # only a flag: saving inside a signal handler is unsafe


def on_sigterm(signum, frame):
    print("SIGTERM: stopping without saving", flush=True)
    sys.exit(143)


def save_checkpoint(model, optimizer, epoch, step):
    os.makedirs(CKPT_DIR, exist_ok=True)
    tmp = CKPT + ".tmp"  # same directory: os.replace is an atomic rename
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "epoch": epoch, "step": step}
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, CKPT)
    dir_fd = os.open(CKPT_DIR, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    if COMMIT_FILE:
        open(COMMIT_FILE, "w").close()  # tells trainsupd the checkpoint is complete
    print(f"checkpoint saved: epoch {epoch} step {step}", flush=True)


def load_checkpoint(model, optimizer):
    """(epoch, step) to continue from: the restored checkpoint's, or (0, 0)."""
    if not os.path.exists(CKPT):
        if os.environ.get("TRAINSUPD_RESUMED") == "1":
            print(f"warning: resumed, but {CKPT} is missing; starting fresh", flush=True)
        return 0, 0
    state = torch.load(CKPT, map_location="cpu")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    print(f"resumed from epoch {state['epoch']} step {state['step']} "
          f"(snapshot {os.environ.get('TRAINSUPD_SNAPSHOT', 'local')})", flush=True)
    return state["epoch"], state["step"]


def main():
    sig = os.environ.get("TRAINSUPD_CHECKPOINT_SIGNAL", "SIGUSR1")
    if sig != "none":  # install before anything slow, so that an early signal is not fatal
        signal.signal(getattr(signal, sig if sig.startswith("SIG") else "SIG" + sig), on_checkpoint_signal)
    signal.signal(signal.SIGTERM, on_sigterm)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    epoch, step = load_checkpoint(model, optimizer)  # optimizer.load_state_dict moves state to the params' device

    global checkpoint_wanted
    while epoch < EPOCHS:
        while step < STEPS_PER_EPOCH:
            x = torch.randn(64, 128, device=device)  # stand-in for your DataLoader
            y = torch.randint(0, 10, (64,), device=device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            if checkpoint_wanted or step % SAVE_EVERY == 0:
                checkpoint_wanted = False
                save_checkpoint(model, optimizer, epoch, step)
        print(f"epoch {epoch} done, loss {loss.item():.4f}", flush=True)
        epoch, step = epoch + 1, 0
        save_checkpoint(model, optimizer, epoch, step)  # (epoch, 0): the next epoch starts clean
    print("training complete", flush=True)  # exit 0: trainsupd makes a final sync and marks the job done


if __name__ == "__main__":
    main()
