#!/usr/bin/env python
"""Seconds per DARTS search step and peak memory, per device, variant and order.

A *step* is ``DARTS.search_step``, the plain-PyTorch step ``DARTS.training_step`` wraps: the
architecture step (``DARTS.architecture_gradient`` on a val batch, alpha-gradient clip, Adam step),
then the weight step (forward on a train batch, cross-entropy, ``loss.backward()``, gradient-norm
clip at ``grad_clip``, SGD step), with the module's own optimisers from ``configure_optimizers()``.
No Trainer is built, so no start-up is ever timed. ``bf16`` runs the step under
``torch.autocast``, as ``Trainer(precision="bf16-mixed")`` runs ``training_step``.

Every (device, variant, order) runs in a fresh subprocess (``_harness.run_worker``), so that its
peak memory is its own (``_harness.PeakMemory``: on CPU the growth of the peak RSS after the
imports, on CUDA ``torch.cuda.max_memory_allocated``). Each run also records the architecture gradient of its first
step (same seed, hence the same initial weights and batch in every run); the table reports its
relative L2 difference to the CPU fp32 contiguous run, so speed levers are seen to keep the numbers.
The table shows measured figures only, side by side: the variants are each other's alternatives.

Usage::

    python benchmarks/darts_step.py                  # paper size: C=16, 8 cells, batch 64, 32x32
    python benchmarks/darts_step.py --image-size 8   # the 8x8 reference point
    python benchmarks/darts_step.py --quick          # tiny sizes: checks the script in seconds
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from _harness import (
    PeakMemory,
    WorkerError,
    describe_machine,
    fmt_bytes,
    fmt_duration,
    fmt_median_iqr,
    fmt_seconds,
    format_table,
    median_iqr,
    run_worker,
    serve_worker,
)

NUM_CLASSES = 10
IN_CHANNELS = 3

LAYOUTS = ("auto", "contiguous", "channels_last")  # auto: the module's default, memory_format="auto"
PRECISIONS = ("tf32", "bf16")  # default (no token): true fp32, TF32 off on CUDA
FUSION = ("unfused", "per_op_relu", "strided_dilation")  # unfused = both levers off
CHECKPOINTING = ("checkpoint", "no_checkpoint")  # every cell / none; no token: the module's checkpoint_cells="auto"
TOKENS = LAYOUTS + PRECISIONS + ("compile",) + FUSION + CHECKPOINTING
REFERENCE = "contiguous+unfused+no_checkpoint"  # the authors' formulation, in torch's default layout
DEFAULT_VARIANTS = {
    "cpu": [REFERENCE, "auto", "auto+no_checkpoint"],
    "cuda": [REFERENCE, "auto", "auto+no_checkpoint", "channels_last", "auto+tf32", "auto+bf16", "auto+compile"],
}
DEFAULT_STEPS = {"cpu": 3, "cuda": 20}
DEFAULT_WARMUP = {"cpu": 1, "cuda": 5}
QUICK = {"C": 4, "layers": 3, "batch_size": 8, "image_size": 8, "steps": 2, "warmup": 1}
PAPER = {"C": 16, "layers": 8, "batch_size": 64, "image_size": 32}

# Rough cost model for the run-time estimate only (fitted on a 2-core CPU with this script):
# seconds per forward+backward pass = overhead + per_unit * batch * image^2 * C^2 * layers.
CPU_PASS_OVERHEAD_S = 0.06
CPU_PASS_PER_UNIT_S = 4.5e-8  # at 2 threads; scaled by 2 / threads (refitted: the unfused reference is slower, the defaults faster)
CUDA_PASS_S = 0.06  # launch-bound at these sizes: a guess, not fitted
WORKER_STARTUP_S = 5.0
COMPILE_S = {"cpu": 120.0, "cuda": 120.0}
PASSES_PER_STEP = {1: 2, 2: 5}  # (val arch pass + weight pass) / (+ unrolled, w+ and w- passes)


# ---------------------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """One speed configuration: memory layout (``auto``: the module's default), precision lever,
    whether the supernet is compiled, the fusion levers (``lit_automl.spaces.cells.set_fusion``):
    each mixed edge computes the ReLU its conv ops share once (off: ``per_op_relu``) and dilated
    convs on reduction edges run on the inputs they read (off: ``strided_dilation``; both off:
    ``unfused``, the authors' formulation), and which cells recompute their activations in
    backward (``None``: the module's ``checkpoint_cells="auto"``; ``checkpoint``: all; ``no_checkpoint``: none)."""

    layout: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    shared_relu: bool = True
    subsample_dilated: bool = True
    checkpoint: Optional[bool] = None

    @property
    def name(self) -> str:
        parts = [self.layout] + ([self.precision] if self.precision != "fp32" else []) + (["compile"] if self.compile else [])
        if not self.shared_relu and not self.subsample_dilated:
            parts.append("unfused")
        else:
            parts += ([] if self.shared_relu else ["per_op_relu"]) + ([] if self.subsample_dilated else ["strided_dilation"])
        return "+".join(parts + ({None: [], True: ["checkpoint"], False: ["no_checkpoint"]}[self.checkpoint]))

    @property
    def memory_format(self) -> str:
        return {"auto": "auto", "contiguous": "contiguous_format"}.get(self.layout, self.layout)

    @property
    def is_reference(self) -> bool:
        return self.name == REFERENCE


def parse_variant(text: str) -> Variant:
    """``"channels_last+bf16+compile"`` -> Variant; raises ValueError naming the bad part."""
    tokens = [t.strip() for t in text.split("+")]
    bad = [t for t in tokens if t not in TOKENS]
    if bad or not text:
        raise ValueError(
            f"invalid variant {text!r}: unknown part(s) {bad}; a variant is '+'-joined parts from "
            f"{list(TOKENS)}, e.g. 'channels_last+bf16'"
        )
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"invalid variant {text!r}: a part is repeated")
    if all(t in tokens for t in CHECKPOINTING):
        raise ValueError(f"invalid variant {text!r}: at most one of {list(CHECKPOINTING)}")
    if "unfused" in tokens and len([t for t in tokens if t in FUSION]) > 1:
        raise ValueError(f"invalid variant {text!r}: 'unfused' already turns off {list(FUSION[1:])}")
    layouts = [t for t in tokens if t in LAYOUTS]
    precisions = [t for t in tokens if t in PRECISIONS]
    if len(layouts) > 1:
        raise ValueError(f"invalid variant {text!r}: at most one layout from {list(LAYOUTS)}")
    if len(precisions) > 1:
        raise ValueError(f"invalid variant {text!r}: at most one precision lever from {list(PRECISIONS)}")
    unfused = "unfused" in tokens
    return Variant(layouts[0] if layouts else "auto", precisions[0] if precisions else "fp32", "compile" in tokens,
                   not (unfused or "per_op_relu" in tokens), not (unfused or "strided_dilation" in tokens),
                   True if "checkpoint" in tokens else False if "no_checkpoint" in tokens else None)


# ---------------------------------------------------------------------------------------- worker


@dataclass
class RunSpec:
    """Everything one worker process needs."""

    device: str
    variant: str
    order: int
    C: int
    layers: int
    batch_size: int
    image_size: int
    steps: int
    warmup: int
    seed: int
    threads: Optional[int]
    grad_only: bool = False


@dataclass
class RunResult:
    """What one worker reports back (``error`` set when the run failed)."""

    ok: bool
    error: Optional[str] = None
    median_s: Optional[float] = None
    times_s: List[float] = field(default_factory=list)
    peak_bytes: Optional[int] = None
    memory_kind: str = ""
    grad: Optional[List[float]] = None
    threads: Optional[int] = None
    note: Optional[str] = None
    layout: Optional[str] = None  # the layout the run used (what "auto" settled on)


def _set_tf32(enabled: bool) -> None:
    """TF32 for CUDA convolutions and matmuls on or off (off: fp32 means IEEE fp32)."""
    import torch

    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # the newer per-backend API
        value = "tf32" if enabled else "ieee"
        torch.backends.cudnn.conv.fp32_precision = value
        torch.backends.cuda.matmul.fp32_precision = value
    else:
        torch.backends.cudnn.allow_tf32 = enabled
        torch.backends.cuda.matmul.allow_tf32 = enabled


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compile_note() -> str:
    """How many graphs dynamo produced and how often it broke a graph (eager fallbacks show here)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return ""
    graphs = counters["stats"].get("unique_graphs", 0)
    breaks = sum(counters["graph_break"].values())
    return f"compiled: {graphs} graphs, {breaks} graph breaks"


def measure(spec: RunSpec) -> RunResult:
    """Build the module, run ``warmup + steps`` search steps, measure; never raises."""
    import torch

    from lit_automl.nas.darts import DARTS
    from lit_automl.spaces.cells import set_fusion

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    memory = PeakMemory(spec.device)  # after the imports: what the search itself needs
    result = RunResult(ok=False, threads=torch.get_num_threads())
    try:
        device = torch.device(spec.device)
        variant = parse_variant(spec.variant)
        if device.type == "cuda":
            _set_tf32(variant.precision == "tf32")

        torch.manual_seed(spec.seed)
        module = DARTS(C=spec.C, layers=spec.layers, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS,
                       order=spec.order, epochs=50, memory_format=variant.memory_format,
                       checkpoint_cells="auto" if variant.checkpoint is None else variant.checkpoint).to(device)
        set_fusion(module.model, variant.shared_relu, variant.subsample_dilated)
        optimizers, _ = module.configure_optimizers()
        w_opt = optimizers[0]

        amp: Callable[[], Any] = contextlib.nullcontext
        if variant.precision == "bf16":
            def amp() -> Any:
                return torch.autocast(device.type, dtype=torch.bfloat16)
        if variant.compile:
            module.model.compile()  # in place: parameter names (and functional_call) unchanged

        gen = torch.Generator().manual_seed(spec.seed + 1)

        def batch() -> Tuple[Any, Any]:
            x = torch.randn(spec.batch_size, IN_CHANNELS, spec.image_size, spec.image_size, generator=gen)
            y = torch.randint(0, NUM_CLASSES, (spec.batch_size,), generator=gen)
            return x.to(device), y.to(device)

        pairs = [(batch(), batch()) for _ in range(min(max(spec.warmup + spec.steps, 1), 4))]

        def architecture_gradient(train: Tuple[Any, Any], val: Tuple[Any, Any]) -> List[Any]:
            """The first phase's gradient, before any step (the numbers the variants are compared on)."""
            xi = 0.0 if spec.order == 1 else w_opt.param_groups[0]["lr"]
            with amp():
                return module.architecture_gradient(train, val, xi, w_opt)[0]

        def flat(grads: Sequence[Any]) -> List[float]:
            return torch.cat([g.detach().reshape(-1) for g in grads]).double().cpu().tolist()

        # Initial weights and batch: comparable across variants (computed untimed, before any step).
        result.grad = flat(architecture_gradient(*pairs[0]))
        if not spec.grad_only:
            times = []
            for i in range(spec.warmup + spec.steps):
                train, val = pairs[i % len(pairs)]
                _sync(device)
                t0 = time.perf_counter()
                with amp():
                    module.search_step({"train": train, "val": val}, optimizers)
                _sync(device)
                times.append(time.perf_counter() - t0)
            result.times_s = times[spec.warmup:]
            result.median_s = median_iqr(result.times_s)[0]
        result.peak_bytes, result.memory_kind = memory.read(), memory.kind
        result.layout = module.memory_format_name
        cells = module.model.recomputed_cells
        notes = [f"recomputes {len(cells or ())}/{spec.layers} cells"] + ([_compile_note()] if variant.compile else [])
        result.note = "; ".join(notes)
        result.ok = True
    except Exception as exc:  # reported in the table instead of a number
        first_line = (str(exc).strip().splitlines() or [""])[0]
        result.error = f"{type(exc).__name__}: {first_line}"[:300]
        import traceback

        traceback.print_exc()
    return result


def worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """What a worker process runs (``_harness.serve_worker``): one measurement, as a JSON-able dict."""
    return asdict(measure(RunSpec(**spec)))


# ---------------------------------------------------------------------------------------- arguments


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _variant_arg(text: str) -> str:
    try:
        return parse_variant(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _unique(values: Sequence[Any]) -> List[Any]:
    return list(dict.fromkeys(values))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Median seconds per DARTS search step (architecture step on a val batch + weight "
        "step on a train batch) and peak memory, at the paper's search size by default.",
        epilog="Variants are '+'-joined parts: a layout (auto: the module's default | contiguous | channels_last), "
        "optionally fusion levers turned off (unfused: both | per_op_relu: each conv op runs its own ReLU | "
        "strided_dilation: dilated convs on reduction edges run the strided dilated kernel), optionally 'checkpoint' "
        "or 'no_checkpoint' (every cell or none recomputes its activations in backward; without either, the "
        "module's default checkpoint_cells='auto'), optionally a "
        "precision lever (tf32: CUDA only | bf16: autocast around the forward passes), optionally "
        "'compile' (torch.compile of the supernet). Without a lever, fp32 is IEEE fp32 (TF32 off). "
        f"Defaults: CPU {DEFAULT_VARIANTS['cpu']}, CUDA {DEFAULT_VARIANTS['cuda']}.",
    )
    parser.add_argument("--steps", type=_int_at_least(1), default=None,
                        help=f"timed steps per run (default {DEFAULT_STEPS['cpu']} on CPU, {DEFAULT_STEPS['cuda']} on CUDA)")
    parser.add_argument("--warmup", type=_int_at_least(0), default=None,
                        help=f"untimed warm-up steps (default {DEFAULT_WARMUP['cpu']} on CPU, {DEFAULT_WARMUP['cuda']} on CUDA)")
    parser.add_argument("--image-size", type=_int_at_least(1), default=None,
                        help=f"input height = width (default {PAPER['image_size']}; 8 gives the 8x8 reference point)")
    parser.add_argument("--batch-size", type=_int_at_least(2), default=None,
                        help=f"batch per half: the train and the val batch each (default {PAPER['batch_size']})")
    parser.add_argument("--C", type=_int_at_least(1), default=None, help=f"initial channels (default {PAPER['C']})")
    parser.add_argument("--layers", type=_int_at_least(1), default=None, help=f"cells (default {PAPER['layers']})")
    parser.add_argument("--orders", type=int, nargs="+", choices=(1, 2), default=[1, 2], metavar="{1,2}",
                        help="1: first order (xi = 0), 2: second order (default: both)")
    parser.add_argument("--variants", type=_variant_arg, nargs="+", default=None, metavar="VARIANT",
                        help="variants to run on every selected device (default: per device, see below)")
    parser.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=None,
                        help="devices (default: cpu, plus cuda when torch.cuda.is_available())")
    parser.add_argument("--threads", type=_int_at_least(1), default=None,
                        help="torch.set_num_threads in every run (default: leave torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and batches (default 0)")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny sizes to check the script in seconds ({QUICK}); explicit flags win")
    return parser


@dataclass
class Config:
    """Validated settings of the whole benchmark."""

    C: int
    layers: int
    batch_size: int
    image_size: int
    orders: List[int]
    runs: List[Tuple[str, str, int]]  # (device, variant, order), in run order
    skipped: List[Tuple[str, str, str]]  # (device, variant, why)
    steps: Dict[str, int]
    warmup: Dict[str, int]
    threads: Optional[int]
    seed: int
    quick: bool


def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser, cuda_available: bool) -> Config:
    """Defaults filled in and cross-flag checks done; errors go through ``parser.error``."""
    base = dict(PAPER)
    if args.quick:
        base.update({k: QUICK[k] for k in PAPER})
    sizes = {k: getattr(args, k) if getattr(args, k) is not None else base[k] for k in PAPER}

    devices = _unique(args.devices) if args.devices else ["cpu"] + (["cuda"] if cuda_available else [])
    if "cuda" in devices and not cuda_available:
        parser.error("invalid --devices value 'cuda': torch.cuda.is_available() is False on this machine "
                     "(allowed here: cpu)")
    variants = _unique(args.variants) if args.variants else None
    if variants and "cuda" not in devices:
        tf32 = [v for v in variants if parse_variant(v).precision == "tf32"]
        if tf32:
            parser.error(f"invalid --variants value(s) {tf32}: tf32 is a CUDA setting and no CUDA device is "
                         f"selected (devices: {devices}); allowed parts on CPU: {[t for t in TOKENS if t != 'tf32']}")
    orders = _unique(args.orders)

    runs, skipped = [], []
    for device in devices:
        for name in variants or DEFAULT_VARIANTS[device]:
            if device == "cpu" and parse_variant(name).precision == "tf32":
                skipped.append((device, name, "tf32 is a CUDA setting"))
                continue
            runs.extend((device, name, order) for order in orders)

    def per_device(value: Optional[int], defaults: Dict[str, int], quick: int) -> Dict[str, int]:
        if value is not None:
            return {d: value for d in defaults}
        return {d: quick for d in defaults} if args.quick else dict(defaults)

    return Config(
        C=sizes["C"], layers=sizes["layers"], batch_size=sizes["batch_size"], image_size=sizes["image_size"],
        orders=orders, runs=runs, skipped=skipped,
        steps=per_device(args.steps, DEFAULT_STEPS, QUICK["steps"]),
        warmup=per_device(args.warmup, DEFAULT_WARMUP, QUICK["warmup"]),
        threads=args.threads, seed=args.seed, quick=args.quick,
    )


# ---------------------------------------------------------------------------------------- estimate


def estimate_seconds(cfg: Config, device: str, variant: str, order: int, grad_only: bool = False) -> float:
    """Rough wall time of one worker (start-up, compile, warm-up and timed steps)."""
    threads = cfg.threads or os.cpu_count() or 1
    if device == "cpu":
        units = cfg.batch_size * cfg.image_size ** 2 * cfg.C ** 2 * cfg.layers
        per_pass = CPU_PASS_OVERHEAD_S + CPU_PASS_PER_UNIT_S * units * 2 / min(threads, os.cpu_count() or threads)
    else:
        per_pass = CUDA_PASS_S
    if grad_only:
        return WORKER_STARTUP_S + per_pass * (PASSES_PER_STEP[order] - 1)
    n_steps = cfg.steps[device] + cfg.warmup[device]
    extra = COMPILE_S[device] if parse_variant(variant).compile else 0.0
    return WORKER_STARTUP_S + extra + n_steps * per_pass * PASSES_PER_STEP[order]


# ---------------------------------------------------------------------------------------- table


def _rel_diff(grad: Optional[List[float]], ref: Optional[List[float]]) -> Optional[float]:
    if grad is None or ref is None or len(grad) != len(ref):
        return None
    num = math.sqrt(sum((g - r) ** 2 for g, r in zip(grad, ref)))
    den = math.sqrt(sum(r * r for r in ref))
    return num / den if den > 0 else float("inf") if num > 0 else 0.0


def render_table(cfg: Config, results: Dict[Tuple[str, str, int], RunResult],
                 refs: Dict[int, Optional[List[float]]]) -> str:
    header = ["device", "variant", "layout", "order", "s/step median [IQR]", "steps timed", "peak memory",
              f"time, memory / {REFERENCE}", "arch-grad rel. diff vs CPU fp32", "notes"]
    rows = []
    for device, variant, order in cfg.runs:
        res = results.get((device, variant, order))
        if res is None:
            rows.append([device, variant, "", str(order), "not run", "", "", "", "", "interrupted"])
            continue
        if not res.ok:
            rows.append([device, variant, "", str(order), "failed", "", "", "", "", res.error or "unknown error"])
            continue
        is_ref = device == "cpu" and parse_variant(variant).is_reference
        diff = _rel_diff(res.grad, refs.get(order))
        diff_text = "reference" if is_ref else ("n/a" if diff is None else f"{diff:.1e}")
        rows.append([device, variant, res.layout or "", str(order), fmt_median_iqr(res.times_s), str(len(res.times_s)),
                     f"{fmt_bytes(res.peak_bytes)} {res.memory_kind}",
                     _ratios(res, results.get((device, REFERENCE, order))), diff_text, res.note or ""])
    for device, variant, why in cfg.skipped:
        rows.append([device, variant, "", "-", "skipped", "", "", "", "", why])
    return format_table(header, rows, align="lllrrrrrrl")


def _ratios(res: RunResult, ref: Optional[RunResult]) -> str:
    """``res``'s time and peak memory as fractions of the same device and order's reference run."""
    if ref is None or not ref.ok or not ref.median_s or not ref.peak_bytes or res.median_s is None or res.peak_bytes is None:
        return "n/a"
    return f"{res.median_s / ref.median_s:.2f}, {res.peak_bytes / ref.peak_bytes:.2f}"


# ---------------------------------------------------------------------------------------- driver


def run_one(spec: RunSpec) -> RunResult:
    """Run ``spec`` in a fresh Python process (``_harness.run_worker``) and read back its result."""
    try:
        return RunResult(**run_worker(__file__, asdict(spec)))
    except WorkerError as exc:
        print(exc.output[-3000:], file=sys.stderr)
        tail = exc.output.strip().splitlines()[-1:] or ["no output"]
        return RunResult(ok=False, error=f"{exc}: {tail[0][:200]}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if serve_worker(argv, worker):
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    cfg = resolve(args, parser, cuda)

    # The CPU fp32 REFERENCE run of each order is the gradient reference; when it is not among the
    # runs, a gradient-only run provides it.
    reference_runs = [o for o in cfg.orders if ("cpu", REFERENCE, o) not in cfg.runs]
    estimate = sum(estimate_seconds(cfg, d, v, o) for d, v, o in cfg.runs)
    estimate += sum(estimate_seconds(cfg, "cpu", REFERENCE, o, grad_only=True) for o in reference_runs)

    print("DARTS search step benchmark")
    print(f"  network: C={cfg.C}, {cfg.layers} cells, batch {cfg.batch_size} per half, "
          f"{cfg.image_size}x{cfg.image_size}x{IN_CHANNELS} inputs, {NUM_CLASSES} classes; seed {cfg.seed}"
          + ("  [--quick: tiny sizes, timings meaningless]" if cfg.quick else ""))
    print("  step: DARTS.search_step (architecture_gradient on the val batch + clip/Adam step on alpha, then "
          "forward/backward/clip/SGD on the train batch); driven directly (no Trainer), so no start-up is timed")
    print(f"  {describe_machine()}" + (f"; threads per run: {cfg.threads}" if cfg.threads else ""))
    print("  steps timed / warm-up: " + ", ".join(f"{d} {cfg.steps[d]}/{cfg.warmup[d]}" for d in sorted({r[0] for r in cfg.runs})))
    print(f"  {len(cfg.runs) + len(reference_runs)} runs, each in a fresh process; estimated run time: "
          f"~{fmt_duration(estimate)} (rough)")
    print(flush=True)

    results: Dict[Tuple[str, str, int], RunResult] = {}
    refs: Dict[int, Optional[List[float]]] = {}
    start = time.perf_counter()
    queue = [("cpu", REFERENCE, o, True) for o in reference_runs] + [(d, v, o, False) for d, v, o in cfg.runs]
    interrupted = False
    for i, (device, variant, order, grad_only) in enumerate(queue, 1):
        spec = RunSpec(device=device, variant=variant, order=order, C=cfg.C, layers=cfg.layers,
                       batch_size=cfg.batch_size, image_size=cfg.image_size, steps=cfg.steps[device],
                       warmup=cfg.warmup[device], seed=cfg.seed, threads=cfg.threads, grad_only=grad_only)
        label = f"{device} {variant} order {order}" + (" (reference gradient only)" if grad_only else "")
        print(f"[{i}/{len(queue)}] {label} ...", end=" ", file=sys.stderr, flush=True)
        try:
            res = run_one(spec)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            interrupted = True
            break
        status = (f"{fmt_seconds(res.median_s)} s/step" if res.median_s is not None else "done") if res.ok \
            else f"FAILED ({res.error})"
        print(f"{status}  [elapsed {fmt_duration(time.perf_counter() - start)}]", file=sys.stderr, flush=True)
        if device == "cpu" and parse_variant(variant).is_reference:
            refs[order] = res.grad if res.ok else None
        if not grad_only:
            results[(device, variant, order)] = res

    print()
    print(render_table(cfg, results, refs))
    print()
    print("arch-grad rel. diff: ||g - g_ref|| / ||g_ref|| of the first step's architecture gradient (normal and "
          f"reduce alphas), same initial weights and batch; g_ref from CPU fp32 {REFERENCE} (the authors' formulation).")
    print("memory: CPU = growth of the run's peak RSS after imports (fresh process per run); "
          "CUDA = torch.cuda.max_memory_allocated.")
    print(f"total wall time: {fmt_duration(time.perf_counter() - start)}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
