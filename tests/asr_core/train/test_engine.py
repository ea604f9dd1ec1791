"""The training engine: exact resume after SIGKILL, bad batches, accumulation, precision, DDP, checkpoints.

The kill/resume test runs this module as a script (``python -m tests.test_engine run ...``) in
subprocesses: a tiny QuartzNet CTC run on a synthetic corpus, deterministic on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from asr_core.models.artifact import load_model
from asr_core.testing import SMALL_QUARTZNET as SMALL
from asr_core.testing import make_corpus
from asr_core.train import EMA, ScheduleConfig, build_optimizer, build_schedule
from asr_core.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from asr_core.train.engine import RecipeBase, TrainConfig, TrainingAborted, train
from asr_core.train.precision import Precision
from tests import REPO


def recipe_params(root: Path, num_workers: int = 0, batch_size: int = 3) -> dict:
    return {
        "model": {"family": "quartznet", "preset": "tiny", "overrides": dict(SMALL)},
        "data": {
            "train_manifest": str(root / "train.jsonl"),
            "dev_manifest": str(root / "dev.jsonl"),
            "vocab": None,
            "batch_size": batch_size,
            "max_batch_seconds": None,
            "num_workers": num_workers,
        },
        "optim": {
            "name": "novograd",
            "lr": 0.01,
            "ema": 0.9,
            "schedule": {"name": "exponential", "warmup_steps": 3, "hold_steps": 5, "exp_gamma": 0.9},
        },
    }


def _run_ctc(args) -> None:
    """Entry point of the kill/resume subprocesses (deterministic: 1 thread, deterministic algorithms)."""
    from asr_core.train.ctc_recipe import CTCRecipe, CTCRecipeConfig

    torch.set_num_threads(1)
    cfg = TrainConfig(
        max_steps=args.steps, ckpt_every=5, eval_every=10, log_every=1, keep_ckpts=10, deterministic=True, seed=7
    )
    recipe = CTCRecipe(
        CTCRecipeConfig.from_dict(recipe_params(Path(args.root), num_workers=1)), max_steps=args.steps, seed=7
    )

    class Slow:  # only slows the run down after a step so that the kill lands mid-training
        def on_log(self, step, metrics):
            if args.sleep_after is not None and step > args.sleep_after:
                time.sleep(0.4)

    summary = train(cfg, recipe, args.ckpt, [Slow()], best_model_path=Path(args.ckpt).parent / "model.pt")
    Path(args.summary).write_text(json.dumps(summary, default=str))


def _ckpt_tensors(path: Path) -> dict[str, torch.Tensor]:
    ck = load_checkpoint(path)
    out = {f"model.{k}": v for k, v in ck["model"].items()}
    out.update({f"ema.{k}": v for k, v in ck["ema"]["shadow"].items()})
    for pid, s in ck["optimizer"]["state"].items():
        out.update({f"opt.{pid}.{k}": v for k, v in s.items() if isinstance(v, torch.Tensor)})
    return out


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path):
    root = make_corpus(tmp_path / "corpus")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def cmd(name, *extra):
        return [
            sys.executable,
            "-m",
            "tests.asr_core.train.test_engine",
            "run",
            "--root",
            str(root),
            "--steps",
            "20",
            "--ckpt",
            str(tmp_path / name / "ckpt"),
            "--summary",
            str(tmp_path / name / "summary.json"),
            *extra,
        ]

    (tmp_path / "full").mkdir()
    (tmp_path / "killed").mkdir()
    victim = subprocess.Popen(
        cmd("killed", "--sleep-after", "10"), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    full = subprocess.run(cmd("full"), check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert full.returncode == 0, full.stdout + full.stderr

    ckpt10 = tmp_path / "killed" / "ckpt" / "ckpt-00000010.pt"
    deadline = time.monotonic() + 90
    while not ckpt10.exists():
        assert victim.poll() is None, victim.stdout.read().decode()
        assert time.monotonic() < deadline, "no checkpoint at step 10"
        time.sleep(0.05)
    time.sleep(0.5)  # a step or so past the checkpoint
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    steps = [s for s, _ in list_checkpoints(tmp_path / "killed" / "ckpt")]
    assert 10 in steps and 20 not in steps, steps

    resumed = subprocess.run(cmd("killed"), check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["resumed_from"] == max(steps) and summary["steps"] == 20

    a = _ckpt_tensors(tmp_path / "full" / "ckpt" / "ckpt-00000020.pt")
    b = _ckpt_tensors(tmp_path / "killed" / "ckpt" / "ckpt-00000020.pt")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"
    changed = load_checkpoint(tmp_path / "full" / "ckpt" / "ckpt-00000005.pt")["model"]
    assert any(not torch.equal(changed[k], a[f"model.{k}"]) for k in changed)  # it did train
    # the best model (EMA weights) of both runs is the same file content, and it loads
    m1, _, _ = load_model(tmp_path / "full" / "model.pt")
    m2, feats, vocab = load_model(tmp_path / "killed" / "model.pt")
    assert all(torch.equal(x, y) for x, y in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert vocab.num_outputs == 29 and not feats.training


# -- a toy recipe: the engine without speech ----------------------------------------------------


class ToyData:
    """Loader and sampler in one: a fixed list of batches per epoch, with a resumable position."""

    def __init__(self, batches):
        self.batches, self.epoch, self.pos = batches, 0, 0

    def set_epoch(self, epoch):
        if epoch != self.epoch:
            self.epoch, self.pos = epoch, 0

    @property
    def remaining(self):
        return len(self.batches) - self.pos

    def __iter__(self):
        while self.pos < len(self.batches):
            self.pos += 1
            yield self.batches[self.pos - 1]

    def state_dict(self):
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, s):
        self.epoch, self.pos = s["epoch"], s["pos"]


def toy_batches(sizes, seed=0, poison=(), skipped=None):
    g = torch.Generator().manual_seed(seed)
    out, k = [], 0
    for b, n in enumerate(sizes):
        x = torch.randn(n, 4, generator=g)
        ids = [f"u{k + i}" for i in range(n)]
        k += n
        batch = {
            "x": x,
            "y": x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1,
            "utt_ids": ["poison" if b in poison and i == 0 else u for i, u in enumerate(ids)],
            "audio_seconds": float(n),
        }
        if skipped and b in skipped:
            batch["skipped"] = [(f"missing{b}", "missing file (x.flac)")]
        out.append(batch)
    return out


class ToyRecipe(RecipeBase):
    device = "cpu"

    def __init__(self, batches, lr=0.05, opt="adamw", ema=False):
        torch.manual_seed(0)
        self.model = nn.Linear(4, 1)
        self.optimizer = build_optimizer(opt, self.model, lr)
        self.schedule = build_schedule(ScheduleConfig(name="exponential", hold_steps=10**6), lr, steps_per_epoch=1)
        self.ema = EMA(self.model, 0.5) if ema else None
        self.train_loader = self.sampler = ToyData(batches)

    def loss(self, model, batch):
        pred = model(batch["x"]).squeeze(-1)
        loss = ((pred - batch["y"]) ** 2).mean()
        if "poison" in batch["utt_ids"]:
            loss = loss * float("nan")
        return loss, len(batch["utt_ids"])

    def evaluate(self, model):
        return {"wer": float(sum(p.abs().sum() for p in model.parameters()))}


class Recorder:
    def __init__(self):
        self.bad, self.logs, self.evals, self.ckpts = [], [], [], []

    def on_bad(self, step, ids, reason):
        self.bad.append((step, ids, reason))

    def on_log(self, step, m):
        self.logs.append((step, m))

    def on_eval(self, step, m):
        self.evals.append((step, m))

    def on_checkpoint(self, step, path):
        self.ckpts.append((step, path))


def test_nonfinite_loss_batch_is_skipped_counted_and_reported(tmp_path):
    rec, r = ToyRecipe(toy_batches([3] * 6, poison={2}, skipped={4})), Recorder()
    out = train(TrainConfig(max_steps=5, max_bad_batches=2, ckpt_every=0, log_every=1), rec, tmp_path, [r])
    assert out["steps"] == 5 and out["bad_batches"] == 1 and out["skipped_utterances"] == 1
    assert (2, ["poison", "u7", "u8"], "non-finite loss") in r.bad  # step 2 done when batch 2 failed
    assert any(ids == ["missing4"] and "utterance dropped: missing file" in reason for _, ids, reason in r.bad)
    assert all(math.isfinite(float(p.detach().sum())) for p in rec.model.parameters())
    assert all(math.isfinite(m["loss"]) for _, m in r.logs)


def test_too_many_bad_batches_abort_with_the_ids(tmp_path):
    rec = ToyRecipe(toy_batches([2] * 4, poison={0, 1, 2, 3}))
    with pytest.raises(TrainingAborted, match=r"3 bad batches in 3 .*non-finite loss, utterances \['poison', 'u"):
        train(TrainConfig(max_steps=5, max_bad_batches=2, max_bad_fraction=0.0, ckpt_every=0), rec, tmp_path)
    assert latest_checkpoint(tmp_path) is None  # nothing written for a broken run


@pytest.mark.parametrize("sizes", [[3, 3], [2, 5]])
def test_grad_accumulation_equals_one_big_batch(tmp_path, sizes):
    """accum 2 over batches of sizes (a, b) == one batch of a + b (per-item mean), with a BN-free model."""
    small = toy_batches(sizes * 4, seed=3)
    big = [
        {"x": torch.cat([p["x"], q["x"]]), "y": torch.cat([p["y"], q["y"]]), "utt_ids": p["utt_ids"] + q["utt_ids"]}
        for p, q in zip(small[::2], small[1::2])
    ]
    results = []
    for batches, accum, d in [(small, 2, "a"), (big, 1, "b")]:
        rec = ToyRecipe(batches, opt="adamw")
        train(TrainConfig(max_steps=4, grad_accum=accum, clip_norm=0.5, ckpt_every=0), rec, tmp_path / d)
        results.append(torch.cat([p.detach().flatten() for p in rec.model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_fp16_on_cpu_is_refused_clearly_and_bf16_trains(tmp_path):
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device.*bf16"):
        Precision("fp16", "cpu")
    with pytest.raises(ValueError, match="fp16"):
        train(TrainConfig(max_steps=1, precision="fp16"), ToyRecipe(toy_batches([2])), tmp_path / "x")
    with pytest.raises(ValueError, match="precision must be one of"):
        Precision("fp8")
    rec = ToyRecipe(toy_batches([4] * 3))
    before = rec.model.weight.detach().clone()
    out = train(TrainConfig(max_steps=3, precision="bf16", ckpt_every=0), rec, tmp_path / "bf16")
    assert math.isfinite(out["final_loss"]) and not torch.equal(before, rec.model.weight)
    assert load_checkpoint(latest_checkpoint(tmp_path / "bf16"))["precision"]["precision"] == "bf16"


def test_bf16_ctc_recipe_runs_and_evaluates_with_ema(tmp_path):
    from asr_core.train.ctc_recipe import CTCRecipe, CTCRecipeConfig

    root = make_corpus(tmp_path / "c", splits=(("train", 6), ("dev", 2)), missing=1)
    recipe = CTCRecipe(CTCRecipeConfig.from_dict(recipe_params(root)), max_steps=3)
    r = Recorder()
    out = train(
        TrainConfig(max_steps=3, precision="bf16", eval_every=3, ckpt_every=0),
        recipe,
        tmp_path / "ck",
        [r],
        best_model_path=tmp_path / "model.pt",
    )
    assert math.isfinite(out["final_loss"]) and out["skipped_utterances"] >= 1
    assert r.evals and set(r.evals[0][1]) >= {"wer", "cer", "loss"}
    model, _, _ = load_model(tmp_path / "model.pt")
    ema = recipe.ema.shadow.state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())  # model.pt holds EMA weights


def test_resume_at_an_epoch_boundary_continues_exactly(tmp_path):
    """Checkpoint taken right at an epoch's end (4 batches, ckpt every 4): same weights as one run."""
    one = ToyRecipe(toy_batches([2] * 4), ema=True)
    train(TrainConfig(max_steps=10, ckpt_every=0), one, tmp_path / "one")
    two = ToyRecipe(toy_batches([2] * 4), ema=True)
    train(TrainConfig(max_steps=4, ckpt_every=4), two, tmp_path / "two")
    two = ToyRecipe(toy_batches([2] * 4), ema=True)
    out = train(TrainConfig(max_steps=10, ckpt_every=4), two, tmp_path / "two")
    assert out["resumed_from"] == 4 and out["epoch"] == 2
    assert torch.equal(one.model.weight, two.model.weight) and torch.equal(one.ema.shadow.weight, two.ema.shadow.weight)


def test_time_budget_stops_cleanly_with_a_checkpoint(tmp_path):
    class Slow(ToyRecipe):
        def loss(self, model, batch):
            time.sleep(0.05)
            return super().loss(model, batch)

    out = train(TrainConfig(max_steps=10**6, max_minutes=0.3 / 60, ckpt_every=0), Slow(toy_batches([2] * 3)), tmp_path)
    assert out["stopped_by"] == "time_budget" and 1 <= out["steps"] < 100
    assert latest_checkpoint(tmp_path).name == f"ckpt-{out['steps']:08d}.pt"


class SlowPoly(ToyRecipe):
    """20 ms a step, and a linear decay over 10,000 steps: far more than a 2-second budget holds."""

    def __init__(self, batches, sleep=0.02):
        super().__init__(batches)
        self.sleep = sleep
        cfg = ScheduleConfig(name="polynomial", warmup_steps=2, final_lr_scale=0.01)
        self.schedule = build_schedule(cfg, 0.05, total_steps=10**4)

    def loss(self, model, batch):
        time.sleep(self.sleep)
        return super().loss(model, batch)


def test_fit_to_budget_shortens_the_run_and_ends_its_schedule_on_time(tmp_path):
    rec, recipe = Recorder(), SlowPoly(toy_batches([2] * 3))
    cfg = TrainConfig(max_steps=10**4, max_minutes=2 / 60, fit_to_budget=True, fit_after_steps=5, ckpt_every=0)
    out = train(cfg, recipe, tmp_path, [rec])
    planned = out["planned_steps"]
    assert out["stopped_by"] == "fitted_steps" and out["steps"] == planned
    assert 20 < planned < 100  # ~1.9 s of 20 ms steps
    assert recipe.schedule.state_dict()["fingerprint"]["total_steps"] == planned
    assert rec.logs[-1][1]["lr"] == pytest.approx(recipe.schedule.lr_at(planned - 1))
    assert rec.logs[-1][1]["lr"] < 0.05 * (0.01 + 2 / planned)  # the decay ran to its end
    fast = train(
        TrainConfig(max_steps=40, max_minutes=1, fit_to_budget=True, fit_after_steps=5),
        SlowPoly(toy_batches([2] * 3), sleep=0),
        tmp_path / "fast",
    )
    assert fast["stopped_by"] == "max_steps" and fast["steps"] == 40 and fast["planned_steps"] == 40


def test_the_fitted_length_is_refined_once_the_first_slow_steps_are_past(tmp_path, caplog):
    class Warming(SlowPoly):  # 50 ms a step at first, then 10 ms (as oneDNN's first shapes, exaggerated)
        calls = 0

        def loss(self, model, batch):
            Warming.calls += 1
            self.sleep = 0.05 if Warming.calls <= 12 else 0.01
            return super().loss(model, batch)

    cfg = TrainConfig(max_steps=10**4, max_minutes=2 / 60, fit_to_budget=True, fit_after_steps=5, ckpt_every=0)
    with caplog.at_level(logging.INFO, logger="asr_core.train.engine"):
        out = train(cfg, Warming(toy_batches([2] * 3)), tmp_path)
    plans = [int(m.split("; ")[1].split()[0]) for m in caplog.messages if m.startswith("fit_to_budget")]
    assert len(plans) == 2 and plans[0] < plans[1] == out["planned_steps"] == out["steps"], plans


def test_a_fitted_run_resumes_with_its_length_and_schedule(tmp_path):
    """The plan is in the checkpoints: a resumed call neither refits nor runs to max_steps."""
    cfg = dict(max_steps=10**4, fit_to_budget=True, fit_after_steps=5, ckpt_every=10, keep_ckpts=1000)
    one = SlowPoly(toy_batches([2] * 3))
    out = train(TrainConfig(max_minutes=1.5 / 60, **cfg), one, tmp_path)
    planned = out["planned_steps"]
    assert planned < 10**4 and planned > 30
    for p in tmp_path.glob("ckpt-*.pt"):
        if int(p.stem.split("-")[1]) > 30:  # after both fits (steps 10 and 25)
            p.unlink()
    two = SlowPoly(toy_batches([2] * 3), sleep=0)  # a fast machine would have planned otherwise
    again = train(TrainConfig(max_minutes=1.5 / 60, **cfg), two, tmp_path)
    assert again["resumed_from"] == 30 and again["steps"] == planned == again["planned_steps"]
    assert torch.equal(one.model.weight, two.model.weight) and torch.equal(one.model.bias, two.model.bias)


def test_fit_to_budget_without_a_budget_runs_max_steps(tmp_path):
    out = train(
        TrainConfig(max_steps=12, fit_to_budget=True, fit_after_steps=2), SlowPoly(toy_batches([2]), 0), tmp_path
    )
    assert out["stopped_by"] == "max_steps" and out["steps"] == 12 and out["planned_steps"] is None
    with pytest.raises(ValueError, match="fit_after_steps"):
        TrainConfig(fit_to_budget=True, max_minutes=1, fit_after_steps=0)


# -- DDP: two gloo ranks ---------------------------------------------------------------------


def _ddp_batches():
    """Pairs (rank 0, rank 1) per step: pair 1 has an empty batch on rank 0 (all its utterances
    dropped), pair 3 a non-finite loss on rank 1. Both steps are dropped on both ranks."""
    b = toy_batches([3, 2] * 4, seed=5, poison={7})
    b[2] = {"x": torch.zeros(0, 4), "y": torch.zeros(0), "utt_ids": [], "skipped": [("gone", "missing file")]}
    return b


def _ddp_worker(rank, world, port, outdir):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        rec, r = ToyRecipe(_ddp_batches()[rank::world]), Recorder()
        out = train(TrainConfig(max_steps=4, ckpt_every=2, eval_every=2), rec, Path(outdir) / "ck", [r])
        w = torch.cat([p.detach().flatten() for p in rec.model.parameters()])
        torch.save({"w": w, "out": out, "bad": r.bad, "evals": len(r.evals)}, Path(outdir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_match_one_process_and_skip_together(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=False) for i in range(2))
    assert torch.equal(r0["w"], r1["w"])  # DDP keeps the replicas identical
    # steps: pair 0, (pair 1 dropped), pair 2, (pair 3 dropped), next epoch: pair 0, (pair 1 dropped), pair 2
    assert r0["out"]["bad_batches"] == r1["out"]["bad_batches"] == 3 and r0["out"]["world_size"] == 2
    reasons = [(ids, why) for _, ids, why in r0["bad"]]
    assert (["gone"], "empty batch (every utterance dropped)") in reasons
    assert any("poison" in ids and why == "non-finite loss" for ids, why in reasons)  # rank 1's ids, from rank 0
    assert r1["bad"] == [] and r0["evals"] == 2 and r1["evals"] == 0
    # one process on the concatenated pairs (the dropped ones poisoned) ends with the same weights
    b = _ddp_batches()
    merged = [
        {
            "x": torch.cat([p["x"], q["x"]]),
            "y": torch.cat([p["y"], q["y"]]),
            "utt_ids": p["utt_ids"] + q["utt_ids"] + (["poison"] if not p["utt_ids"] else []),
        }
        for p, q in zip(b[::2], b[1::2])
    ]
    single = ToyRecipe(merged)
    train(TrainConfig(max_steps=4, ckpt_every=0), single, tmp_path / "single")
    torch.testing.assert_close(
        torch.cat([p.detach().flatten() for p in single.model.parameters()]), r0["w"], rtol=1e-5, atol=1e-6
    )
    assert {s for s, _ in list_checkpoints(tmp_path / "ck")} == {2, 4}


# -- checkpoint files ------------------------------------------------------------------------


def test_checkpoints_are_atomic_rotated_and_corruption_names_the_file(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, {"step": step, "w": torch.ones(2) * step, "rng": [torch.zeros(3)]}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert latest_checkpoint(tmp_path).name == "ckpt-00000004.pt"
    assert not [p for p in tmp_path.iterdir() if ".tmp." in p.name]
    assert torch.equal(load_checkpoint(latest_checkpoint(tmp_path))["w"], torch.full((2,), 4.0))
    bad = tmp_path / "ckpt-00000005.pt"
    bad.write_bytes(latest_checkpoint(tmp_path).read_bytes()[:100])
    with pytest.raises(CheckpointError, match="ckpt-00000005.pt: corrupt or unreadable"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not a model file"):
        load_model(tmp_path / "ckpt-00000004.pt")


def _main(argv=None):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--root", required=True)
    r.add_argument("--steps", type=int, required=True)
    r.add_argument("--ckpt", required=True)
    r.add_argument("--summary", required=True)
    r.add_argument("--sleep-after", type=int, default=None)
    _run_ctc(p.parse_args(argv))


if __name__ == "__main__":
    _main()


def test_auto_precision_is_bf16_only_where_the_hardware_computes_it(monkeypatch):
    from asr_core.train import precision as precision_mod

    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision_mod, "native_bf16", lambda device, native=native: native)
        prec = Precision("auto", "cpu")
        assert (prec.requested, prec.precision, prec.dtype) == (
            "auto",
            expected,
            torch.bfloat16 if native else torch.float32,
        )
        assert TrainConfig.from_dict({"precision": "auto"}).precision == "auto"
    assert Precision("bf16", "cpu").precision == "bf16"  # asked for explicitly: whatever the CPU
