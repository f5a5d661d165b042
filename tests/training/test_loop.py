"""The shared training engine on a tiny model: a resumed run matches an uninterrupted one bit for bit,
accumulation, early stopping, the adversary's schedule, devices and the fold runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import edurank.training.loop as loop_module
from edurank.errors import InputError
from edurank.training.loop import Loop, adamw_with_warmup, resolve_device, run_fold, seed_everything

X = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
Y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1


def make_loop(work: Path | None, accumulation: int = 1, adversary: object = None, from_epoch: int = 0) -> Loop:
    seed_everything(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    optimizer, scheduler = adamw_with_warmup(model.parameters(), 0.05, 0.0, 0.1, 30)
    return Loop(model, optimizer, scheduler, torch.device("cpu"), work, "test", accumulation=accumulation,
                adversary=adversary, adversary_from_epoch=from_epoch)  # type: ignore[arg-type]


def batches(epoch: int) -> list[list[int]]:
    order = np.random.default_rng(epoch).permutation(40).tolist()
    return [order[i:i + 8] for i in range(0, 40, 8)]


def mse(loop: Loop):
    return lambda rows: torch.nn.functional.mse_loss(loop.model(X[rows]).squeeze(-1), Y[rows])


def evaluation(loop: Loop):
    return lambda: {"mse": float(torch.nn.functional.mse_loss(loop.model(X).squeeze(-1), Y))}


def test_a_killed_run_resumes_to_the_same_weights_and_history(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    straight = make_loop(tmp_path / "straight")
    state = straight.fit(3, batches, mse(straight), evaluation(straight), evals_per_epoch=2)
    assert [h["epoch"] for h in state.history] == [0.4, 1.0, 1.4, 2.0, 2.4, 3.0]
    assert state.history[-1]["mse"] < state.history[0]["mse"]

    original, saves = loop_module.save_checkpoint, []

    def killed_after_third(path: Path, payload: dict) -> None:
        original(path, payload)
        saves.append(path)
        if len(saves) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop_module, "save_checkpoint", killed_after_third)
    killed = make_loop(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        killed.fit(3, batches, mse(killed), evaluation(killed), evals_per_epoch=2)
    monkeypatch.setattr(loop_module, "save_checkpoint", original)
    torch.manual_seed(123)  # whatever the process did since: the checkpoint restores the random state
    resumed = make_loop(tmp_path / "resumed")
    steps: list[int] = []
    step_loss = mse(resumed)
    state = resumed.fit(3, batches, lambda rows: steps.append(1) or step_loss(rows), evaluation(resumed), 2)
    assert len(steps) == 15 - 7  # 7 of the 15 batches ran before the kill (third evaluation at 1.4 epochs)
    assert state.history == straight.state.history
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_accumulation_steps_once_per_group_and_at_the_end() -> None:
    loop = make_loop(None, accumulation=2)
    steps: list[int] = []
    real_step = loop.optimizer.step
    loop.optimizer.step = lambda *a, **k: steps.append(1) or real_step(*a, **k)  # type: ignore[method-assign]
    loop.fit(2, batches, mse(loop))
    assert len(steps) == 2 * 3  # 5 batches per epoch: steps after batches 2, 4 and 5


def test_stop_ends_training_and_a_rerun_stays_stopped(tmp_path: Path) -> None:
    loop = make_loop(tmp_path)
    state = loop.fit(5, batches, mse(loop), evaluation(loop), stop=lambda s: len(s.history) >= 2)
    assert len(state.history) == 2 and state.epoch == 2
    again = make_loop(tmp_path)
    assert len(again.fit(5, batches, mse(again), evaluation(again), stop=lambda s: len(s.history) >= 2).history) == 2


class CountingAdversary:
    def __init__(self) -> None:
        self.attacks = self.restores = 0

    def attack(self) -> None:
        self.attacks += 1

    def restore(self) -> None:
        self.restores += 1


def test_the_adversary_attacks_from_its_epoch_on() -> None:
    adversary = CountingAdversary()
    loop = make_loop(None, adversary=adversary, from_epoch=1)
    loop.fit(3, batches, mse(loop))
    assert adversary.attacks == adversary.restores == 2 * 5


def test_devices() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="--device tpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--device cuda: torch sees no CUDA device"):
            resolve_device("cuda")


def test_a_finished_fold_is_kept_and_not_retrained(tmp_path: Path) -> None:
    calls: list[Path] = []

    def train(directory: Path) -> tuple[np.ndarray, list[dict]]:
        calls.append(directory)
        return np.arange(3.0), [{"epoch": 1.0}]

    first = run_fold(tmp_path / "fold0", "fold 0", train)
    again = run_fold(tmp_path / "fold0", "fold 0", train)
    assert calls == [tmp_path / "fold0"] and np.array_equal(first.predictions, again.predictions)
    assert again.history == [{"epoch": 1.0}] and again.seconds == 0.0


def test_an_epoch_without_batches_is_an_input_error_not_a_hang() -> None:
    loop = make_loop(None)
    with pytest.raises(InputError, match="epoch 1 has no batches"):
        loop.fit(1, lambda epoch: [], mse(loop))
