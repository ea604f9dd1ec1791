"""Steps 3 and 4: the benchmark stage's runners on QuartzNet cells, and the Hourglass table.

Step 3 times each runner the way the benchmark grid does (``asr_core/bench/grid.py``: warm-up,
then timed iterations until a count or a time cap; ``data`` = the padded waveforms to the device
and the filterbank there, ``net`` = the runner and greedy decoding), without its FLAC files (the
grid module needs soundfile). Agreement: every runner gets the very features the CPU fp32
reference got, from one fixed random-weight model whose BatchNorm statistics were calibrated on
random audio (so activations are of normal size, as in a trained model, and fp16 does not
overflow for want of it).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from gpu_check.harness import Context, agreement, guarded, row, skipped
from gpu_check.project import (
    DLE_TABLE,
    BackendUnavailable,
    FilterbankConfig,
    PeakMemory,
    RunnerSpec,
    build_features,
    build_model,
    export_onnx,
    greedy_decode,
    latency_stats,
    make_runner,
    run_config,
)

SR = 16000
RUNNERS = ("torch_fp32", "torch_tf32", "torch_fp16", "torch_bf16", "torch_fp16_graphs", "torch_bf16_graphs")
FP32_TOL = 1e-3  # params/export.yaml fp32_max_abs_diff: the export stage's fp32 gate
WER_TOL = 0.005  # params/export.yaml wer_tolerance: its reduced-precision gate


@dataclass
class Cell:
    batch: int
    seconds: float
    wave: torch.Tensor  # (B, S) on the CPU: the timed data path moves it, as the grid's loader does
    wave_lens: torch.Tensor
    feats: torch.Tensor  # CPU fp32 features: the input of every agreement check
    lens: torch.Tensor
    ref_lp: torch.Tensor  # CPU fp32 log-probs and greedy tokens of the same model
    ref_lens: torch.Tensor
    ref_tokens: list[list[int]]

    @property
    def key(self) -> str:
        return f"bs{self.batch}x{self.seconds:g}s"


@torch.no_grad()
def calibrate(model: torch.nn.Module, features: torch.nn.Module, seed: int = 1) -> None:
    """BatchNorm running statistics = their average over a few batches of random audio."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(2):
        wave = 0.1 * torch.randn(4, 2 * SR, generator=g)
        model(*features(wave, torch.full((4,), 2 * SR)))
    model.eval()
    for m, mom in zip(bns, saved):
        m.momentum = mom


def make_cells(ctx: Context, model, features) -> list[Cell]:
    cells = []
    for i, (b, sec) in enumerate(ctx.sizes.cells):
        g = torch.Generator().manual_seed(100 + i)
        n = int(round(sec * SR))
        wave, lens = 0.1 * torch.randn(b, n, generator=g), torch.full((b,), n)  # equal clips, as the grid's
        with torch.inference_mode():
            f, fl = features(wave, lens)
            lp, ll = model(f, fl)
        if ctx.cuda:
            wave = wave.pin_memory()  # a serving process keeps its input buffers pinned
        cells.append(Cell(b, sec, wave, lens, f, fl, lp.float(), ll, greedy_decode(lp, ll)))
    return cells


def compare(cell: Cell, lp: torch.Tensor, ll: torch.Tensor) -> dict:
    """Max |log-prob difference| over the valid frames, equal output lengths, greedy agreement."""
    lp, ll = lp.detach().float().cpu(), ll.detach().cpu()
    diff = 0.0
    for i in range(cell.batch):
        n = int(min(cell.ref_lens[i], ll[i]))
        if n:
            diff = max(diff, float((lp[i, :n] - cell.ref_lp[i, :n]).abs().max()))
    out = {"max_abs_logprob_diff": diff, "lengths_equal": bool(torch.equal(ll, cell.ref_lens))}
    out.update(agreement(cell.ref_tokens, greedy_decode(lp, ll)))
    out["within_export_wer_tolerance"] = out["transcripts_identical"] or out["wer_vs_cpu_fp32"] <= WER_TOL
    return out


def time_runner(ctx: Context, runner, cell: Cell, features_dev) -> dict:
    s, dev = ctx.sizes, ctx.device
    data, net, e2e = [], [], []
    with PeakMemory(dev) as mem:
        for i in range(s.cell_warmup + s.cell_iterations):
            t0 = time.perf_counter()
            with torch.inference_mode():
                feats, lens = features_dev(cell.wave.to(dev, non_blocking=True), cell.wave_lens.to(dev))
            ctx.sync()
            t1 = time.perf_counter()
            lp, ll = runner(feats, lens)
            greedy_decode(lp, ll)  # .tolist() inside waits for the device
            t2 = time.perf_counter()
            if i >= s.cell_warmup:
                data.append(t1 - t0)
                net.append(t2 - t1)
                e2e.append(t2 - t0)
                if len(e2e) >= s.cell_min_iterations and sum(e2e) >= s.cell_max_seconds:
                    break
    out = {"iterations": len(e2e), "audio_seconds": cell.batch * cell.seconds}
    for name, xs in (("data", data), ("net", net), ("e2e", e2e)):
        out.update({f"{name}_{k}_ms": v for k, v in latency_stats(xs).items()})
    out["rtfx"] = round(out["audio_seconds"] / (out["e2e_p50_ms"] / 1000), 1)
    out["peak_mem_mb"] = round(mem.mb, 1) if mem.mb is not None else None
    return out


def runner_cell(ctx: Context, name: str, runner, cell: Cell, features_dev, eager: dict) -> dict:
    spec = RunnerSpec.parse(name) if name in RUNNERS else None
    with torch.inference_mode():
        lp, ll = runner(cell.feats, cell.lens)  # first call of this shape: a CUDA graph runner captures here
    fig = compare(cell, lp, ll)
    fig["precision"] = spec.precision if spec else "fp32"
    status, target = "ok", None
    if spec is not None and spec.cuda_graphs:  # the same kernels as the eager runner: the same numbers
        twin = eager.get((f"torch_{spec.precision}", cell.key))
        if twin is not None:
            d = float((lp.float().cpu() - twin[0]).abs().max())
            same = greedy_decode(lp, ll) == greedy_decode(*twin)
            fig.update(max_abs_diff_vs_eager=d, transcripts_equal_eager=same)
            ok = d <= FP32_TOL and same
            status, target = ("pass" if ok else "fail"), f"== eager torch_{spec.precision} (max |diff| <= {FP32_TOL:g})"
    elif fig["precision"] == "fp32":
        ok = fig["max_abs_logprob_diff"] <= FP32_TOL and fig["lengths_equal"] and fig["transcripts_identical"]
        status = "pass" if ok else "fail"
        target = f"export fp32 gate: max |diff| <= {FP32_TOL:g}, identical transcripts"
    else:
        eager[(name, cell.key)] = (lp.float().cpu(), ll.cpu())
    fig.update(time_runner(ctx, runner, cell, features_dev))
    text = (
        f"e2e p50 {fig['e2e_p50_ms']:.2f} / p99 {fig['e2e_p99_ms']:.2f} ms (net {fig['net_p50_ms']:.2f} / "
        f"{fig['net_p99_ms']:.2f}), RTFx {fig['rtfx']:.0f}, {fig['iterations']} it; vs CPU fp32: max |dlogp| "
        f"{fig['max_abs_logprob_diff']:.2g}, tokens {100 * fig['token_agreement']:.2f}% agree, "
        f"{fig['identical_utterances']}/{fig['utterances']} identical, WER vs fp32 {100 * fig['wer_vs_cpu_fp32']:.2f}%"
    )
    if "max_abs_diff_vs_eager" in fig:
        text += f"; vs eager: max |diff| {fig['max_abs_diff_vs_eager']:.2g}"
    if target is None and fig["precision"] != "fp32":
        target = f"reported (WER within {WER_TOL:g}: {fig['within_export_wer_tolerance']})"
    return row("3", f"{name} {cell.key}", status, text, fig, target)


def step3(ctx: Context) -> list[dict]:
    s = ctx.sizes
    torch.manual_seed(0)
    model = build_model("quartznet", s.qn_preset, 29, **dict(s.qn_overrides)).eval()
    features = build_features(FilterbankConfig()).eval()
    calibrate(model, features)
    features_dev = copy.deepcopy(features).to(ctx.device).eval()
    cells = make_cells(ctx, model, features)
    rows: list[dict] = []
    if ctx.cuda:
        rows += guarded("3", "filterbank on CUDA vs CPU", lambda: features_parity(ctx, cells, features_dev))
    eager: dict = {}
    for name in RUNNERS:
        try:
            runner = make_runner(name, model=copy.deepcopy(model), device=str(ctx.device))
        except BackendUnavailable as e:
            rows.append(skipped("3", name, str(e).removeprefix("skipped: ")))
            continue
        for cell in cells:
            rows += guarded(
                "3",
                f"{name} {cell.key}",
                lambda c=cell, n=name, r=runner: runner_cell(ctx, n, r, c, features_dev, eager),
            )
        del runner
    rows += guarded("3", "onnxruntime_fp32 (CUDA provider)", lambda: onnxruntime_cuda(ctx, model, cells, features_dev))
    for i, cell in enumerate(cells):
        rows.append(latency_target(ctx, i, cell, rows))
    return rows


def features_parity(ctx: Context, cells: list[Cell], features_dev) -> dict:
    """The filterbank on the GPU (the timed data path) against the CPU's, on the cells' audio."""
    diff, same_lens = 0.0, True
    for cell in cells:
        with torch.inference_mode():
            f, fl = features_dev(cell.wave.to(ctx.device), cell.wave_lens.to(ctx.device))
        f, fl = f.cpu(), fl.cpu()
        same_lens = same_lens and bool(torch.equal(fl, cell.lens)) and f.shape == cell.feats.shape
        for i in range(cell.batch):
            n = int(cell.lens[i])
            diff = max(diff, float((f[i, :, :n] - cell.feats[i, :, :n]).abs().max()))
    ok = diff <= FP32_TOL and same_lens
    text = f"max |diff| {diff:.3g} over the valid frames, shapes and lengths {'equal' if same_lens else 'DIFFER'}"
    fig = {"max_abs_diff": diff, "lengths_equal": same_lens}
    return row("3", "filterbank on CUDA vs CPU", "pass" if ok else "fail", text, fig, f"max |diff| <= {FP32_TOL:g}")


def onnxruntime_cuda(ctx: Context, model, cells: list[Cell], features_dev) -> list[dict]:
    name = "onnxruntime_fp32 (CUDA provider)"
    if not ctx.cuda:
        return [skipped("3", name, "onnxruntime's CUDA provider needs CUDA")]
    try:
        import onnxruntime as ort
    except ImportError:
        return [skipped("3", name, "onnxruntime is not installed")]
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return [skipped("3", name, f"this onnxruntime build has no CUDA provider (it has {providers})")]
    d = ctx.scratch("onnx")
    export_onnx(copy.deepcopy(model), d / "model.onnx", in_features=64)
    runner = make_runner("onnxruntime_fp32", export_dir=d, device="cuda")
    out = []
    for cell in cells:
        out += guarded(
            "3",
            f"onnxruntime_fp32 {cell.key}",
            lambda c=cell: runner_cell(ctx, "onnxruntime_fp32", runner, c, features_dev, {}),
        )
    return out


def latency_target(ctx: Context, i: int, cell: Cell, rows: list[dict]) -> dict:
    s = ctx.sizes
    timed = [r for r in rows if r["name"].endswith(cell.key) and "e2e_p99_ms" in r["figures"]]
    name = f"latency {cell.key}: best runner"
    if not timed:
        return skipped("3", name, "no runner timed this cell")
    best = min(timed, key=lambda r: r["figures"]["e2e_p99_ms"])
    f = best["figures"]
    target_ms, ref = s.cell_targets_ms[i], s.cell_reference_ms[i] if i < len(s.cell_reference_ms) else None
    fig = {
        "runner": best["name"].rsplit(" ", 1)[0],
        "e2e_p50_ms": f["e2e_p50_ms"],
        "e2e_p99_ms": f["e2e_p99_ms"],
        "net_p99_ms": f["net_p99_ms"],
        "target_ms": target_ms,
        "dle_a100_fp16_ms": ref,
    }
    text = (
        f"{fig['runner']}: e2e p50 {f['e2e_p50_ms']:.2f} ms, p99 {f['e2e_p99_ms']:.2f} ms "
        f"(net p99 {f['net_p99_ms']:.2f})"
    )
    if ctx.full and target_ms is not None:
        status = "pass" if f["e2e_p99_ms"] <= target_ms else "fail"
        r = row("3", name, status, text, fig, f"e2e p99 <= {target_ms:g} ms on an H100 (DLE A100 FP16: {ref} ms)")
    else:
        r = row("3", name, "ok", text, fig, "none at tiny size or on the CPU")
    r["elapsed_s"] = 0.0  # a verdict over the rows above, no run of its own
    return r


# -- step 4 --------------------------------------------------------------------------------------


def step4(ctx: Context) -> list[dict]:
    s = ctx.sizes
    kw = dict(
        batch_size=s.w2v_batch,
        seconds=s.w2v_seconds,
        steps=s.w2v_steps,
        warmup=s.w2v_warmup,
        device=str(ctx.device),
        precision="bf16",
    )
    results: dict[int, dict] = {}
    rows: list[dict] = []
    for f in (1, *s.w2v_factors):
        name = "plain Transformer" if f == 1 else f"factor {f}"

        def one(f=f, name=name) -> dict:
            r = run_config(s.w2v_preset, f, **kw)
            results[f] = r
            return row("4", name, "ok", "", r)

        rows += guarded("4", name, one)
    plain = results.get(1)
    for r in rows:
        fig = r["figures"]
        if r["status"] != "ok" or not fig:
            continue
        if plain is not None:
            fig["speedup"] = round(plain["step_s"] / fig["step_s"], 4)
            fig["memory_ratio"] = (
                round(fig["peak_mem_mb"] / plain["peak_mem_mb"], 4) if plain["peak_mem_mb"] > 0 else None
            )
        dle = DLE_TABLE.get(fig["factor"])
        mem = f"{100 * fig['memory_ratio']:.1f}%" if fig.get("memory_ratio") is not None else "n/a"
        r["summary"] = (
            f"{fig['plan']}: {1000 * fig['step_s']:.1f} ms/step, {fig['audio_s_per_s']:.1f} audio s/s, peak "
            f"{fig['peak_mem_mb']:.0f} MiB; vs plain {fig.get('speedup', float('nan')):.2f}x speed, {mem} memory"
            + (f" (DLE A100: {dle[0]:.2f}x, {100 * dle[1]:.2f}%)" if dle else "")
        )
        if fig["factor"] == 4 and ctx.full and plain is not None:
            ok = fig["speedup"] > 1.0 and (fig["memory_ratio"] or 2.0) < 1.0
            r["status"] = "pass" if ok else "fail"
            r["target"] = "faster and smaller than plain (DLE A100: 1.37x, 62.35%)"
        elif dle:
            r["target"] = f"reference: DLE A100 {dle[0]:.2f}x, {100 * dle[1]:.2f}%"
    return rows
