"""Ctrl-C and progress: training stops at the epoch it reached, the command line says so in
one line with exit status 130, and runs off a terminal report their epochs as lines."""

import os
import signal
import subprocess
import sys

import pytest

from towerjax.synthetic import SyntheticProblem
from towerjax.training import EpochLines, TrainConfig, TrainingInterrupted, train_seeds

PROBLEM = SyntheticProblem(n_rounds=40, n_test_rounds=20, n_actions=3, dim=4)
TINY = TrainConfig(hidden_sizes=(8,), embedding_size=4, batch_size=20, epochs=6, validation_fraction=0.0)


def test_epoch_lines_say_the_epoch_the_time_elapsed_and_the_time_left():
    lines = []
    progress = EpochLines(lines.append, every=3)
    progress.start(epochs=9, groups=1, label="ips x 2 seeds", seconds_compile=1.3)
    for epoch in range(1, 10):
        progress(epoch)
    assert lines[0] == "ips x 2 seeds: compiled in 1.3 s; training 9 epochs ..."
    assert [line.split(",")[0] for line in lines[1:]] == ["epoch 3 of 9", "epoch 6 of 9", "epoch 9 of 9"]
    assert all(" s elapsed, ~" in line and line.endswith(" s left") for line in lines[1:])
    assert lines[-1].endswith("~0 s left")


def test_an_interrupt_during_the_run_stops_it_at_that_epoch_and_restores_the_handler():
    handler = signal.getsignal(signal.SIGINT)
    seen = []

    def progress(epoch):  # stands in for Ctrl-C: the handler sets the same stop flag
        seen.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as stopped:
        train_seeds(TINY, seeds=1, problem=PROBLEM, progress=progress)
    assert (stopped.value.epoch, stopped.value.epochs) == (2, TINY.epochs)
    assert str(stopped.value) == f"interrupted at epoch 2 of {TINY.epochs}"
    assert seen == [1, 2]  # no epoch reported after the stop
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGINT) is handler


def test_ctrl_c_while_training_exits_130_with_one_line_and_no_traceback(tmp_path):
    """The command on a pipe (not a terminal): epoch lines, then Ctrl-C stops it at an epoch."""
    command = [
        sys.executable, "-m", "towerjax.cli", "train", "--seeds", "1", "--epochs", "20000",
        "--n-rounds", "40", "--n-test-rounds", "20", "--n-actions", "3", "--hidden-sizes", "8",
        "--embedding-size", "4", "--batch-size", "20", "--validation-fraction", "0",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        # A shell's background job (`cmd &`) inherits SIGINT ignored, and Python keeps it so:
        # the child gets the default disposition back, as a command typed at a terminal has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        before = [process.stderr.readline() for _ in range(2)]  # "compiled ...", the first epoch line
        assert "compiled in" in before[0] and before[1].startswith("epoch "), before
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=120)  # a generous bound: the process must end
        after = process.stderr.read()
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    lines = [line for line in after.splitlines() if not line.startswith("epoch ")]
    assert status == 130, after
    assert len(lines) == 1 and "Traceback" not in after, after
    assert lines[0].startswith("towerjax train: interrupted at epoch ") and lines[0].endswith(
        "; nothing saved"
    )
    epoch = int(lines[0].removeprefix("towerjax train: interrupted at epoch ").split()[0])
    assert 0 < epoch < 20000  # stopped by the epoch check, not at the end of the run


def test_ctrl_c_while_retraining_into_a_model_folder_leaves_the_previous_model_loadable(tmp_path):
    """`train --logs ... --out M --overwrite` interrupted mid-training: exit 130, M unchanged."""
    import numpy as np
    import pandas as pd

    from towerjax import own_logs
    from towerjax.serving import load_model

    rng = np.random.default_rng(0)
    n = 60
    logs = pd.DataFrame(
        {
            "age": rng.normal(size=n),
            "item_id": rng.choice(["a", "b", "c"], size=n),
            "reward": rng.integers(0, 2, size=n).astype(float),
            "pscore": np.full(n, 1 / 3),
        }
    )
    path, model = tmp_path / "logs.csv", tmp_path / "M"
    logs.to_csv(path, index=False)
    tiny = TrainConfig(hidden_sizes=(4,), embedding_size=4, epochs=1, validation_fraction=0.0)
    own_logs.fit(path, config=tiny, search=None, seeds=1, out=model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    command = [
        sys.executable, "-m", "towerjax.cli", "train", "--logs", str(path), "--out", str(model),
        "--overwrite", "--epochs", "20000", "--seeds", "1", "--hidden-sizes", "4",
        "--embedding-size", "4", "--validation-fraction", "0",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,  # own-logs training reports on stdout
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # see the test above
    )
    try:
        line = ""
        while not line.startswith("epoch "):  # the summary lines, "compiled ...", then epochs
            line = process.stdout.readline()
            assert line, "the command ended before training"
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=120)
        after = process.stdout.read()
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    assert status == 130 and "Traceback" not in after, after
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before  # byte for byte
    assert load_model(model).n_items == 3
