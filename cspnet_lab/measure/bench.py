"""Time and memory, measured: does a cut in multiply-adds become a cut in time and memory?

* Inference (no gradients) and a training step (forward + backward + SGD step), after warm-up, in
  interleaved rounds: each round times every model of a comparison group once, in a rotated order, so drift
  in the machine's speed falls on all of them. Repetition ``k`` of every model in a group comes from round
  ``k``: the repetitions are *paired*, and :func:`speedups` resamples whole rounds to put a bootstrap
  interval on each time ratio. CPU: ``torch.utils.benchmark``; CUDA: synchronised events.
* Memory: the bytes of activations saved for backward (exact, any device, via
  ``torch.autograd.graph.saved_tensors_hooks``) and, on CUDA, the peak memory one model's step needs.
* Where the time goes: a ``torch.profiler`` breakdown of one step into operator categories
  (:data:`CATEGORIES`, :func:`op_category`).
* A run survives its failures: an out-of-memory or any other error in one case becomes that case's row
  (status ``"oom"``/``"error"``) and the run goes on; rows are appended to the result file (atomically)
  as they come, so a killed run loses only the group in progress and ``resume=True`` skips what is done; a
  time cap ends a run early with what it has. Every output path is checked before anything is measured.
* Results are JSON files with full provenance (device, versions, date, git commit, exact command,
  settings), validated when read (:func:`load_results`): a file with a non-finite time or a non-positive
  count is refused with one line naming the file, the row and the field.
"""

from __future__ import annotations

import datetime
import gc
import contextlib
import json
import math
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from . import costs
from .stats import MIN_ROUNDS, paired_bootstrap, realised_fraction, verdict  # noqa: F401 (re-exported)
from .. import _checks
from .._io import FolderLock, atomic_write_text
from ..models.registry import ModelSpec

SCHEMA = "cspnet_lab.bench/2"
READABLE_SCHEMAS = ("cspnet_lab.bench/1", SCHEMA)   # /1: every row measured, no status field
MODES = ("inference", "train")
DEVICES = ("cpu", "cuda")
STATUSES = ("ok", "oom", "error", "skipped")


@dataclass
class BenchSettings:
    models: list[str]
    batch_sizes: list[int] = field(default_factory=lambda: [8])
    input_sizes: list[int] = field(default_factory=lambda: [224])
    modes: list[str] = field(default_factory=lambda: list(MODES))
    device: str = "cpu"
    channels_last: bool = False
    bf16: bool = False          # bf16 autocast (CUDA; on CPU too, where the CPU supports it)
    repeats: int = 10           # timed samples per case = interleaved rounds
    warmup: int = 3             # untimed calls per case first
    min_run_time: float = 1.0   # seconds of timing per case, split over its samples
    threads: int | None = None
    time_cap_s: float | None = None   # stop starting new rounds / groups after this many seconds
    profile: bool = True        # torch.profiler breakdown of each case (profile_steps steps)
    profile_steps: int = 2

    def validate(self) -> None:
        """ValueError naming the first bad setting; nothing is built or measured before this passes."""
        if not isinstance(self.models, (list, tuple)) or not self.models:
            raise ValueError(f"models must be a non-empty list of model specs, got {self.models!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but no CUDA device is available")
        for name in ("channels_last", "bf16", "profile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes must be among {', '.join(MODES)}; got {self.modes!r}")
        for name, values in (("batch_sizes", self.batch_sizes), ("input_sizes", self.input_sizes)):
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name} must be a non-empty list of positive integers, got {values!r}")
        for name, low in (("repeats", 1), ("warmup", 0), ("profile_steps", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")
        for name in ("min_run_time", "time_cap_s"):
            v = getattr(self, name)
            if v is None and name == "time_cap_s":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {v!r}")
        from ..models.densenet import min_input_size
        for text in self.models:
            spec = ModelSpec.parse(text)
            cfg = spec.config()                 # ValueError for bad names/values
            for size in self.input_sizes:
                if size < min_input_size(cfg):
                    raise ValueError(f"input size {size} is too small for {spec.label}: "
                                     f"must be >= {min_input_size(cfg)}")


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _command() -> str:
    """The command line as typed: ``python -m cspnet_lab ...`` when run as a module, no local paths."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("cspnet_lab", "__main__.py")):
        argv[0:1] = ["python", "-m", "cspnet_lab"]
    elif argv and argv[0]:
        argv[0:1] = ["python", os.path.relpath(argv[0]) if os.path.isabs(argv[0]) else argv[0]]
    return " ".join(argv)


def provenance(settings: BenchSettings) -> dict:
    dev = settings.device
    info = {
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else cpu_name(),
        "device_type": dev,
        "device_memory_bytes": torch.cuda.get_device_properties(0).total_memory if dev == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if dev == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if dev == "cuda" else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": _command(),
    }
    try:
        root = pathlib.Path(__file__).resolve().parents[2]
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                            cwd=root, timeout=10).stdout.strip() or None
    except Exception:
        info["git_commit"] = None
    return info


def _summary(times_s: list[float]) -> dict:
    q = statistics.quantiles(times_s, n=4) if len(times_s) >= 2 else [times_s[0]] * 3
    return {"median_s": statistics.median(times_s), "iqr_s": q[2] - q[0], "min_s": min(times_s),
            "reps_s": times_s}


def _sample(fn, device: str, inner: int) -> float:
    """Seconds per call, averaged over ``inner`` back-to-back calls: ``torch.utils.benchmark.Timer`` on CPU,
    synchronised CUDA events on GPU."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000.0 / inner
    from torch.utils import benchmark
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.timeit(inner).mean


# --------------------------------------------------------------------------- where the time goes

CATEGORIES = ("convolution", "batch norm", "ReLU", "concat/split", "pooling", "optimizer", "other")

# Matched against an operator's name, then its parents' (innermost first): aten::empty inside
# mkldnn_convolution is convolution time. Backward operators run inside autograd's
# "evaluate_function: XBackward0", so they land with their forward operator's category; in particular
# CatBackward0 holds the split of a concat's gradient *and* the sums of the gradients that a feature map
# receives from every layer that read it (autograd adds them up as they arrive).
_CATEGORY_PATTERNS = [
    ("convolution", re.compile(r"conv", re.I)),
    ("batch norm", re.compile(r"batch_?norm", re.I)),
    ("ReLU", re.compile(r"relu|threshold|clamp_min", re.I)),
    ("concat/split", re.compile(r"aten::(cat|_cat|concat|concatenate|split|split_with_sizes|chunk|narrow|"
                                r"slice|unsafe_split)$|(Cat|Split|SplitWithSizes|Slice|Narrow|Unbind)Backward")),
    ("pooling", re.compile(r"pool", re.I)),
]


def op_category(chain) -> str:
    """The category of a profiled operator, given its name and its parents' names
    (innermost first).

    Anything inside ``torch.optim``'s ``Optimizer.step``/``zero_grad`` is
    "optimizer"; otherwise the first name in the chain that matches a pattern decides;
    "other" if none does (the classifier's matrix multiply, the loss, autograd's
    bookkeeping).
    """
    chain = [chain] if isinstance(chain, str) else list(chain)
    if any(name.startswith("Optimizer.") for name in chain):
        return "optimizer"
    for name in chain:
        for category, pattern in _CATEGORY_PATTERNS:
            if pattern.search(name):
                return category
    return "other"


def profile_breakdown(fn, device: str = "cpu", steps: int = 2) -> dict:
    """Seconds per call of ``fn`` in each of :data:`CATEGORIES`, from ``torch.profiler``.

    Each of ``steps`` calls is profiled on its own and every category keeps its median over the calls, so
    one call slowed by another process does not decide the picture. Operators' self times are summed,
    so nothing is counted twice. On CUDA the clock is the GPU's (kernel time attributed to the operator
    that launched it); on CPU it is the host's.

    Returns ``{"clock", "steps", "total_s", "by_category_s", "top_other_s"}``; ``top_other_s`` names the
    five largest operators left in "other", so an unclassified cost cannot hide there. The profiler adds
    overhead per operator, so shares are what to read, not the absolute total.
    """
    fn()                                 # one untimed call: allocator and algorithm caches warm
    if device == "cuda":
        torch.cuda.synchronize()
    per_step = [_profile_once(fn, device) for _ in range(steps)]
    by_cat = {c: statistics.median(p[0][c] for p in per_step) for c in CATEGORIES}
    other: dict[str, float] = {}
    for _, ops, _ in per_step:
        for name, sec in ops.items():
            other[name] = other.get(name, 0.0) + sec / steps
    top = dict(sorted(other.items(), key=lambda kv: -kv[1])[:5])
    return {"clock": per_step[0][2], "steps": steps, "total_s": sum(by_cat.values()),
            "by_category_s": by_cat, "top_other_s": top}


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null while the profiler starts and stops: its C++ side writes a
    ``USDT: ... profiler_start/stop`` line there for every profile, which Python cannot catch. Always
    descriptor 2: Jupyter's and pytest's ``sys.stderr.fileno()`` can name a copy of it."""
    fd = 2
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _profile_once(fn, device: str):
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with _quiet_stderr():
        prof = profile(activities=activities)
        prof.__enter__()
    try:
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
    finally:
        with _quiet_stderr():
            prof.__exit__(None, None, None)
    events = [e for e in prof.events() if str(getattr(e, "device_type", "CPU")).endswith("CPU")]

    def clock(e, on_device):
        if not on_device:
            return e.self_cpu_time_total
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)

    on_device = device == "cuda" and sum(clock(e, True) for e in events) > 0
    by_cat = dict.fromkeys(CATEGORIES, 0.0)
    other: dict[str, float] = {}
    for e in events:
        us = clock(e, on_device)
        if not us:
            continue
        chain, p = [e.name], e.cpu_parent
        while p is not None:
            chain.append(p.name)
            p = p.cpu_parent
        cat = op_category(chain)
        by_cat[cat] += us * 1e-6
        if cat == "other":
            other[e.name] = other.get(e.name, 0.0) + us * 1e-6
    return by_cat, other, "device" if on_device else "cpu"


def profile_paired(models, mode: str = "train", batch: int = 4, input_size: int = 128, device: str = "cpu",
                   steps: int = 10, threads: int | None = None) -> list[dict]:
    """Profile ``models`` in ``steps`` interleaved rounds (each round profiles one step of every model, in
    an order rotated from round to round), keeping every step: the per-category times of round ``k`` are
    paired across models, as :func:`paired_bootstrap` needs.

    Returns one result-like row per model (``model``, ``mode``, ``batch``, ``input_size``, ``macs``,
    ``profile``) whose profile holds the per-category medians (``by_category_s``, ``total_s``) and every
    step (``steps_s``: category -> list of seconds; ``steps_total_s``). ``threads`` sets
    ``torch.set_num_threads`` for the run and restores it afterwards.
    """
    settings = BenchSettings(models=list(models), batch_sizes=[batch], input_sizes=[input_size],
                             modes=[mode], device=device, profile_steps=steps, threads=threads)
    settings.validate()
    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        cases = [_Case(ModelSpec.parse(m), batch, input_size, mode, settings) for m in models]
        for case in cases:
            case.fn()                    # untimed: allocator and algorithm caches warm
        steps_s = [{c: [] for c in CATEGORIES} for _ in cases]
        for k in range(steps):
            for i in [(j + k) % len(cases) for j in range(len(cases))]:
                by_cat = _profile_once(cases[i].fn, device)[0]
                for c in CATEGORIES:
                    steps_s[i][c].append(by_cat[c])
    finally:
        torch.set_num_threads(before)
    rows = []
    for case, per in zip(cases, steps_s):
        totals = [sum(per[c][k] for c in CATEGORIES) for k in range(steps)]
        by_cat = {c: statistics.median(per[c]) for c in CATEGORIES}
        rows.append(dict(model=case.spec.label, mode=mode, batch=batch, input_size=input_size,
                         macs=costs.analyze(case.spec.config(), input_size, batch=batch).macs,
                         profile={"clock": "cpu" if device == "cpu" else "device", "steps": steps,
                                  "total_s": sum(by_cat.values()), "by_category_s": by_cat,
                                  "steps_s": per, "steps_total_s": totals}))
    return rows


# --------------------------------------------------------------------------- one case

def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


class _Case:
    """One (model, batch, size, mode): the model, its inputs, the step to time and the row to fill."""

    def __init__(self, spec: ModelSpec, batch: int, size: int, mode: str, settings: BenchSettings) -> None:
        self.spec, self.batch, self.size, self.mode = spec, batch, size, mode
        self.settings = settings
        self.times: list[float] = []
        self.inner = 1
        dev = torch.device(settings.device)
        torch.manual_seed(0)
        fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.model = spec.build().to(dev).to(memory_format=fmt)
        cfg = self.model.config
        self.x = torch.randn(batch, cfg.in_channels, size, size, device=dev).to(memory_format=fmt)
        self.y = torch.randint(0, cfg.num_classes, (batch,), device=dev)
        self.opt = None
        if mode == "train":
            self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)

    def autocast(self):
        if self.settings.bf16:
            return torch.autocast(self.settings.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fn(self) -> None:
        model = self.model
        if self.mode == "inference":
            model.eval()
            with torch.no_grad(), self.autocast():
                model(self.x)
            return
        model.train()
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss = nn.functional.cross_entropy(model(self.x), self.y)
        loss.backward()
        self.opt.step()

    def sample(self) -> float:
        return _sample(self.fn, self.settings.device, self.inner)

    def calibrate(self) -> None:
        """Warm up, then set the calls per sample so one sample lasts about min_run_time / repeats."""
        s = self.settings
        for _ in range(s.warmup):
            self.fn()
        if s.device == "cuda":
            torch.cuda.synchronize()
        one = _sample(self.fn, s.device, 1)
        self.inner = max(1, int(s.min_run_time / s.repeats / max(one, 1e-9)))

    def resident_bytes(self) -> int:
        """Memory this case holds between steps: weights, buffers, optimizer state, input and target."""
        state = [t for st in (self.opt.state.values() if self.opt else []) for t in st.values()]
        return _tensor_bytes([*self.model.parameters(), *self.model.buffers(), *state, self.x, self.y])

    def cuda_peak_bytes(self) -> int:
        """Peak memory of one step of this model alone: what the step allocates on top of what is already
        there, plus what the case keeps resident (other models of the group are left out)."""
        if self.opt:
            self.opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        self.fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before + self.resident_bytes()

    def row(self) -> dict:
        s = self.settings
        row = _base_row(self.spec, self.batch, self.size, self.mode)
        row.update(status="ok", **_summary(self.times), rounds=len(self.times), calls_per_sample=self.inner)
        row["throughput_per_s"] = self.batch / row["median_s"]
        if self.mode == "train":
            self.model.train()
            with self.autocast():
                row["saved_activation_bytes"] = costs.saved_tensor_bytes(self.model, self.x)
        if s.device == "cuda":
            try:
                row["cuda_peak_bytes"] = self.cuda_peak_bytes()
            except Exception as err:                 # a failed extra never loses the timing
                row["cuda_peak_error"] = _one_line(err)
        if s.profile:
            try:
                row["profile"] = profile_breakdown(self.fn, s.device, s.profile_steps)
            except Exception as err:
                row["profile_error"] = _one_line(err)
        return row


def _base_row(spec: ModelSpec, batch: int, size: int, mode: str) -> dict:
    row = {"model": spec.label, "name": spec.name, "overrides": dict(spec.overrides), "batch": batch,
           "input_size": size, "mode": mode}
    report = costs.analyze(spec.config(), size, batch=batch)
    row["params"], row["macs"] = report.params, report.macs
    return row


_one_line = _checks.one_line


_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def _failure_row(spec, batch, size, mode, err: BaseException) -> dict:
    """The row of a case that failed: "oom" (with the allocation that failed, when the message gives it)
    or "error", and the error in one line."""
    text = str(err)
    oom = isinstance(err, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))) \
        or "out of memory" in text.lower()
    row = _base_row(spec, batch, size, mode)
    row.update(status="oom" if oom else "error", message=_one_line(err))
    m = re.search(r"Tried to allocate ([\d.]+) (B|KiB|MiB|GiB|TiB)", text)
    if m:
        row["memory_requested_bytes"] = int(float(m.group(1)) * _UNITS[m.group(2)])
    return row


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- a run

def _groups(settings: BenchSettings) -> list[tuple[int, int, str]]:
    """Comparison groups: the models of one group are timed in the same interleaved rounds."""
    return [(size, batch, mode) for size in settings.input_sizes for batch in settings.batch_sizes
            for mode in settings.modes]


def _key(row: dict) -> tuple:
    return (row["model"], row["input_size"], row["batch"], row["mode"])


_RESUMABLE = ("models", "batch_sizes", "input_sizes", "modes", "device", "channels_last", "bf16", "repeats",
              "warmup", "min_run_time", "profile", "profile_steps")


def check_output(out, resume: bool = False, overwrite: bool = False, settings: BenchSettings | None = None):
    """Check the result path before anything is measured; return the earlier result when resuming.

    An existing file is never overwritten unless ``overwrite``; with ``resume`` it must be a valid result of
    the same settings (its finished cases are then skipped).
    """
    path = pathlib.Path(out)
    if resume and overwrite:
        raise ValueError("resume=True (--resume) and overwrite=True (--overwrite) contradict each other; "
                         "choose one")
    if path.is_dir():
        raise ValueError(f"--out {path}: is a folder; give a file name such as {path / 'bench.json'}")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {path}: cannot create its folder ({err.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: folder {folder} is not writable")
    if not path.exists():
        return None
    if resume:
        earlier = load_results(path)
        if settings is not None:
            now = asdict(settings)
            diff = [k for k in _RESUMABLE if earlier["settings"].get(k) != now.get(k)]
            if diff:
                raise ValueError(f"--out {path}: holds a run with other settings ({', '.join(diff)}); "
                                 "resume with the same settings or choose another file")
        return earlier
    if not overwrite:
        raise ValueError(f"--out {path}: exists; pass resume=True (--resume) to continue that run or "
                         "overwrite=True (--overwrite) to replace it")
    return None


def run(settings: BenchSettings, progress=print, out=None, resume: bool = False,
        overwrite: bool = False) -> dict:
    """Measure every (model, input size, batch size, mode); return the result (and write it to ``out``).

    Models are compared within a group (one input size, batch size and mode): the group's models are
    built, calibrated, timed in ``repeats`` interleaved rounds (each round times every model once, in an
    order rotated from round to round), then each model's extras (activation bytes, CUDA peak, profile)
    are measured, its row is written, and it is freed before the next group is built. Timing the group's
    models in the same rounds is what pairs their repetitions; only one model's step runs at a time, so
    a group needs the memory of one step plus every model's weights.

    A case that raises (out of memory or anything else) is recorded with its status and message, freed,
    and the others go on. ``settings.time_cap_s`` is shared out: each group gets an equal part of the
    time left when it starts and stops its rounds there (its rows say how many rounds they have, at least
    two); groups that cannot start before the cap are marked "skipped". ``progress``: a function taking one
    line (``print``), ``"tqdm"`` for a progress bar, or None.
    """
    settings.validate()
    if out is None:
        return _run(settings, progress, None, resume, overwrite)
    out = pathlib.Path(out)
    check_output(out, resume, overwrite, settings)     # a clear error, and the folder exists, before the lock
    # Two runs writing one file would each overwrite the other's rows: the second is refused (and checked
    # again under the lock: a run that finished meanwhile left a file that is not overwritten).
    with FolderLock(out.parent, name=f".{out.name}.lock", what="bench run", subject=out):
        return _run(settings, progress, out, resume, overwrite)


def _run(settings, progress, out, resume, overwrite) -> dict:
    earlier = check_output(out, resume, overwrite, settings) if out is not None else None
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.device == "cuda":
        torch.backends.cudnn.benchmark = True
    start = time.monotonic()
    deadline = start + settings.time_cap_s if settings.time_cap_s else math.inf
    result = {"schema": SCHEMA, "provenance": provenance(settings), "settings": asdict(settings),
              "results": []}
    done = {}
    if earlier is not None:
        result["resumed_from"] = earlier["provenance"]
        done = {_key(r): r for r in earlier["results"] if r.get("status", "ok") != "skipped"}
    say = progress if callable(progress) else (lambda line: None)
    bar = None
    if progress == "tqdm":
        from tqdm.auto import tqdm
        labels = [ModelSpec.parse(m).label for m in settings.models]
        pending = [g for g in _groups(settings) if not all((label, *g) in done for label in labels)]
        bar = tqdm(total=len(pending) * len(labels) * settings.repeats, unit="sample", desc="bench")

    unsaid = dict(done)     # earlier rows not yet re-emitted: every save keeps them, so a resume that fails
                            # (disk full, killed) never leaves fewer finished rows than it found

    def emit(row, save=True):
        key = _key(row)
        if row.get("status") == "skipped" and key in unsaid:
            row = unsaid[key]   # a finished row is never replaced by "skipped"
        unsaid.pop(key, None)
        result["results"].append(row)
        if out is not None and save:   # a row taken over unchanged adds nothing: the file stays as it was
            save_results({**result, "results": result["results"] + list(unsaid.values())}, out)

    groups = _groups(settings)
    for g, (size, batch, mode) in enumerate(groups):
        specs = [ModelSpec.parse(m) for m in settings.models]
        if all((s.label, size, batch, mode) in done for s in specs):
            for spec in specs:
                emit(done[(spec.label, size, batch, mode)], save=False)
            continue
        todo = specs     # a group cut short is measured again whole: its rows must share their rounds
        if time.monotonic() > deadline:
            for spec in todo:
                row = _base_row(spec, batch, size, mode)
                row.update(status="skipped", message=f"time cap of {settings.time_cap_s:g} s reached")
                emit(row)
            continue
        if bar is not None:
            bar.set_description(f"{mode} batch {batch} {size}px")
        now = time.monotonic()     # each group left gets an equal share of the time left
        _run_group(todo, batch, size, mode, settings, now + (deadline - now) / (len(groups) - g), emit, say, bar)
    if bar is not None:
        bar.close()
    result["provenance"]["elapsed_s"] = round(time.monotonic() - start, 1)
    result["results"] += list(unsaid.values())
    if out is not None:
        save_results(result, out)
    return result


def _run_group(specs, batch, size, mode, settings, deadline, emit, say, bar) -> None:
    failed, cases = [], []

    def fail(spec, err, case=None):
        failed.append(_failure_row(spec, batch, size, mode, err))
        if case is not None:            # drop its tensors now, not when the round's list goes away
            case.model = case.x = case.y = case.opt = None

    for spec in specs:
        case = None
        try:
            case = _Case(spec, batch, size, mode, settings)
            case.calibrate()
            cases.append(case)
        except Exception as err:        # out of memory, or anything else: this case only
            fail(spec, err, case)
            if bar is not None:
                bar.update(settings.repeats)
        case = None
        _free(settings.device)
    for rep in range(settings.repeats):
        if rep >= 2 and time.monotonic() > deadline:
            if bar is not None:
                bar.update(len(cases) * (settings.repeats - rep))
            break
        shift = rep % max(len(cases), 1)
        for case in cases[shift:] + cases[:shift]:
            try:
                case.times.append(case.sample())
            except Exception as err:
                cases.remove(case)
                fail(case.spec, err, case)
                _free(settings.device)
            if bar is not None:
                bar.update(1)
    for row in failed:
        emit(row)
        say(f"{row['model']:45s} {mode:9s} batch {batch:3d} {size}px: {row['status']}: {row['message']}")
    while cases:
        case = cases.pop(0)
        try:
            row = case.row()
        except Exception as err:
            row = _failure_row(case.spec, batch, size, mode, err)
        case = None
        _free(settings.device)
        emit(row)
        if row["status"] == "ok":
            say(f"{row['model']:45s} {mode:9s} batch {batch:3d} {size}px: {row['median_s'] * 1000:9.2f} ms "
                f"(IQR {row['iqr_s'] * 1000:.2f}, {row['rounds']} rounds)")


# --------------------------------------------------------------------------- cost of a run, before it runs

def estimate_seconds(settings: BenchSettings) -> float:
    """The expected wall time of :func:`run`, printed before a long run starts.

    Seconds per multiply-add are measured on the first model, one mode at a time (two warm-up calls, then
    one timed call at the first batch and input size); every case's step is then predicted from its
    multiply-adds, and its cost is its warm-up and calibration calls, its timed samples (at least
    ``min_run_time``) and its extras. Rough (fixed costs do not scale with multiply-adds), but it says
    whether a run takes one minute or one hour. Capped by ``time_cap_s`` plus the extras of a last group.
    """
    settings.validate()
    first = ModelSpec.parse(settings.models[0])
    batch, size = settings.batch_sizes[0], settings.input_sizes[0]
    per_mac = {}
    for mode in settings.modes:
        case = _Case(first, batch, size, mode, settings)
        for _ in range(2):
            case.fn()
        per_mac[mode] = _sample(case.fn, settings.device, 1) / costs.analyze(first.config(), size,
                                                                            batch=batch).macs
        del case
        _free(settings.device)
    extra_calls = settings.warmup + 1 + (settings.profile_steps + 1 if settings.profile else 0) + 1
    total = 0.0
    for size, batch, mode in _groups(settings):
        for text in settings.models:
            step = per_mac[mode] * costs.analyze(ModelSpec.parse(text).config(), size, batch=batch).macs
            total += 0.5 + step * extra_calls + max(settings.repeats * step, settings.min_run_time)
    if settings.time_cap_s:
        total = min(total, settings.time_cap_s * 1.2)
    return total


# --------------------------------------------------------------------------- settings of the committed runs

VARIANTS = [f"cspdensenet121:fusion={f},part_ratio={r}" for f in ("csp", "first", "last")
            for r in (0.25, 0.5, 0.75)]
DENSENET121_GROUP = ["densenet121", "densenet121:memory_efficient=True", *VARIANTS]
PRESETS = {
    # 60 rounds: enough to resolve a 5 % difference in the time ratio on a quiet 2-core machine; see
    # chapter 6 for the widths this machine actually gave.
    "cpu": dict(models=DENSENET121_GROUP, batch_sizes=[4], input_sizes=[128], modes=["inference", "train"],
                device="cpu", repeats=60, warmup=2, min_run_time=3.0, profile_steps=3),
    "gpu": dict(models=DENSENET121_GROUP, batch_sizes=[64], input_sizes=[224], modes=["inference", "train"],
                device="cuda", repeats=30, warmup=5, min_run_time=0.6, profile_steps=1),
    "gpu201": dict(models=["densenet201", "cspdensenet201:fusion=csp,part_ratio=0.5",
                           "cspdensenet201:fusion=last,part_ratio=0.5"],
                   batch_sizes=[64], input_sizes=[224], modes=["inference", "train"], device="cuda",
                   repeats=30, warmup=5, min_run_time=0.6, profile_steps=1),
    "smoke": dict(models=["densenet_cifar:growth_rate=4", "cspdensenet_cifar:growth_rate=4,fusion=last"],
                  batch_sizes=[2], input_sizes=[16], modes=["inference", "train"], device="cpu", repeats=2,
                  warmup=0, min_run_time=0.01, profile_steps=1, threads=1),
}


def fitting_batch(models, input_size: int, memory_bytes: int, candidates=(16, 32, 64, 128),
                  share: float = 0.5, bf16: bool = False) -> int:
    """The largest batch among ``candidates`` whose training step fits in ``share`` of ``memory_bytes``.

    A step needs the activations saved for backward (measured exactly at batch 1 on the CPU, times the
    batch; bf16 halves them), half as much again for the gradients in flight, and every model's weights,
    gradients and momentum (a group keeps all its models resident). A T4 (15 GiB) gets 32 for the
    DenseNet-121 group at 224 x 224; an H100 or H200 gets 128 (the largest candidate).
    """
    if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, int) or memory_bytes <= 0:
        raise ValueError(f"memory_bytes must be a positive integer, got {memory_bytes!r}")
    per_sample, weights = 0, 0
    for text in models:
        spec = ModelSpec.parse(text)
        model = spec.build().train()
        x = torch.zeros(1, model.config.in_channels, input_size, input_size)
        per_sample = max(per_sample, costs.saved_tensor_bytes(model, x))
        weights += 3 * _tensor_bytes(list(model.parameters()))
        del model
    per_sample = per_sample * (0.5 if bf16 else 1.0) * 1.5
    fits = [b for b in candidates if weights + b * per_sample <= share * memory_bytes]
    return max(fits) if fits else min(candidates)


def sized_preset(name: str, memory_bytes: int | None = None) -> dict:
    """A GPU preset with its batch size chosen by :func:`fitting_batch` for the device's memory (the
    current CUDA device's when ``memory_bytes`` is None). Other presets are returned as they are."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {name!r}")
    preset = dict(PRESETS[name])
    if preset["device"] != "cuda":
        return preset
    if memory_bytes is None:
        if not torch.cuda.is_available():
            return preset
        memory_bytes = torch.cuda.get_device_properties(0).total_memory
    batch = fitting_batch(preset["models"], preset["input_sizes"][0], memory_bytes,
                          bf16=preset.get("bf16", False))
    preset["batch_sizes"] = [batch]
    return preset


# --------------------------------------------------------------------------- result files

def save_results(result: dict, path) -> pathlib.Path:
    """Write atomically and durably (a temporary file, fsync, rename). Never a half-written file."""
    validate_results(result, "<in memory>")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(result, indent=1, allow_nan=False) + "\n")


_MAX_COUNT = 2**63   # an int64: no count, size or batch of a real run comes near it (10**400 would print "-100 %")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) < _MAX_COUNT


def _is_num(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


_POSITIVE_COUNTS = ("batch", "input_size", "params", "macs", "saved_activation_bytes", "cuda_peak_bytes",
                    "calls_per_sample", "rounds", "memory_requested_bytes")


def validate_results(result, source) -> dict:
    """Check a result's structure and values; ValueError naming the source, the row and the field."""
    def bad(problem):
        raise ValueError(f"{source}: {problem}")
    if not isinstance(result, dict):
        bad("not a JSON object")
    if result.get("schema") not in READABLE_SCHEMAS:
        bad(f"schema is {result.get('schema')!r}, expected {SCHEMA!r}")
    prov = result.get("provenance")
    if not isinstance(prov, dict) or not all(k in prov for k in ("device", "torch", "date", "command")):
        bad("provenance must give device, torch, date and command")
    rows = result.get("results")
    if not isinstance(rows, list) or not rows:
        bad("no results")
    for i, row in enumerate(rows):
        where = f"results[{i}]"
        if not isinstance(row, dict):
            bad(f"{where} is not an object")
        for key in ("model", "name", "mode"):
            if not isinstance(row.get(key), str):
                bad(f"{where}.{key} is missing or not a string (got {row.get(key)!r})")
        if row["mode"] not in MODES:
            bad(f"{where}.mode is {row['mode']!r}, expected one of {MODES}")
        status = row.get("status", "ok")
        if status not in STATUSES:
            bad(f"{where}.status is {status!r}, expected one of {STATUSES}")
        for key in _POSITIVE_COUNTS:
            if key in row or key in ("batch", "input_size", "params", "macs"):
                v = row.get(key)
                if not _is_int(v) or v <= 0:
                    bad(f"{where}.{key} must be a positive integer (got {v!r})")
        if status != "ok":
            if not isinstance(row.get("message"), str):
                bad(f"{where}.message must say why the case has status {status!r}")
            continue
        for key in ("median_s", "iqr_s", "throughput_per_s", "min_s"):
            if key in row or key in ("median_s", "iqr_s"):
                v = row.get(key)
                if not _is_num(v) or v < 0 or (key != "iqr_s" and v == 0):
                    bad(f"{where}.{key} must be a finite number of seconds"
                        f"{' >= 0' if key == 'iqr_s' else ' > 0'} (got {v!r})")
        reps = row.get("reps_s")
        if not isinstance(reps, list) or not reps or any(not _is_num(t) or t <= 0 for t in reps):
            bad(f"{where}.reps_s must be a non-empty list of positive finite times")
        if not (min(reps) <= row["median_s"] <= max(reps)):
            bad(f"{where}.median_s {row['median_s']} is not within its repetitions")
        prof = row.get("profile")
        if prof is not None:
            cats = prof.get("by_category_s") if isinstance(prof, dict) else None
            if not isinstance(cats, dict) or any(k not in CATEGORIES or not _is_num(v) or v < 0
                                                 for k, v in cats.items()):
                bad(f"{where}.profile.by_category_s must map {', '.join(CATEGORIES)} to finite seconds >= 0")
    return result


def load_results(path) -> dict:
    """Read and validate a result file. A truncated, hand-broken or impossible file is a ValueError naming it."""
    path = pathlib.Path(path)
    return validate_results(_read_json(path, "result file"), path)


# --------------------------------------------------------------------------- committed results

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results"


def committed_results(pattern: str = "*.json") -> list[pathlib.Path]:
    """The result files committed with the package (cspnet_lab/results/), so a chapter finds them wherever
    the package is installed: in the repository, in a virtual environment, in Colab."""
    return sorted(RESULTS.glob(pattern))


# --------------------------------------------------------------------------- analysis

def speedups(result: dict, baseline: str, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> list[dict]:
    """Every measured model against ``baseline`` in the same (mode, batch, input size), in run order.

    Each row: ``model, mode, batch, input_size, rounds, paired``;
    ``time_ratio`` (t / t_base, the median of the paired per-round ratios) with ``time_ratio_lo/_hi``
    (bootstrap interval at ``level``) and ``verdict`` ("faster", "slower", "not distinguishable": the
    interval contains 1); ``mac_ratio`` (m / m_base, exact) and ``macs_change_pct``;
    ``realised`` = (1 - time_ratio) / (1 - mac_ratio) with ``realised_lo/_hi`` (None where the multiply-adds
    do not change); ``speedup`` = 1 / time_ratio and ``time_change_pct``; and, where both rows have them,
    ``activation_ratio``/``activation_change_pct`` (exact) and ``peak_memory_ratio``/
    ``peak_memory_change_pct`` (CUDA). Rows that did not run (status not "ok") are listed with their
    status and message and no numbers.
    """
    rows = result["results"]
    base = {(r["mode"], r["batch"], r["input_size"]): r for r in rows
            if r["model"] == baseline and r.get("status", "ok") == "ok"}
    out = []
    for r in rows:
        b = base.get((r["mode"], r["batch"], r["input_size"]))
        if b is None or r["model"] == baseline:
            continue
        entry = dict(model=r["model"], mode=r["mode"], batch=r["batch"], input_size=r["input_size"],
                     status=r.get("status", "ok"), mac_ratio=r["macs"] / b["macs"],
                     macs_change_pct=100 * (r["macs"] / b["macs"] - 1))
        if entry["status"] != "ok":
            entry["message"] = r.get("message")
            out.append(entry)
            continue
        est, lo, hi = paired_bootstrap(r["reps_s"], b["reps_s"], n_boot, level, seed)
        rounds = min(len(r["reps_s"]), len(b["reps_s"]))
        entry.update(time_ratio=est, time_ratio_lo=lo, time_ratio_hi=hi, verdict=verdict(lo, hi, rounds),
                     rounds=rounds,
                     paired=len(r["reps_s"]) == len(b["reps_s"]), speedup=1 / est,
                     time_change_pct=100 * (est - 1))
        ends = [realised_fraction(t, entry["mac_ratio"]) for t in (est, lo, hi)]
        entry["realised"] = ends[0]
        entry["realised_lo"] = None if ends[0] is None else min(ends[1:])
        entry["realised_hi"] = None if ends[0] is None else max(ends[1:])
        for key, name in (("saved_activation_bytes", "activation"), ("cuda_peak_bytes", "peak_memory")):
            if key in r and key in b:
                entry[f"{name}_ratio"] = r[key] / b[key]
                entry[f"{name}_change_pct"] = 100 * (r[key] / b[key] - 1)
        out.append(entry)
    return out


def short_label(model: str) -> str:
    """``cspdensenet121:fusion=csp,part_ratio=0.5`` -> ``csp 0.5``; other labels unchanged."""
    if ":" not in model:
        return model
    name, rest = model.split(":", 1)
    if name.startswith("csp"):
        return rest.replace("fusion=", "").replace(",part_ratio=", " ")
    return f"{name} ({rest})"


# --------------------------------------------------------------------------- free (exact) cuts

FREE_CUTS_FILE = "free_cuts_cpu.json"   # written by benchmarks/free_cuts.py, committed in results/
# The fuse_for_inference options each cut of benchmarks/free_cuts.py switches on. Only pool_first
# changes the multiply-adds; the others change how the same arithmetic meets memory.
FREE_CUT_OPTIONS = {
    "pool_first": ("pool_first",), "fold_bn": ("fold_bn",), "concat_buffer": ("concat_buffer",),
    "channels_last": ("channels_last",), "all": ("pool_first", "fold_bn", "concat_buffer"),
    "pool_fold_cl": ("pool_first", "fold_bn", "channels_last")}
# Issue 24's goals against torchvision's DenseNet-121 with the same weights, per mode:
# (the time ratio at most, the upper end of its interval below).
FREE_CUT_GOALS = {"inference": (0.85, 0.90), "train": (0.95, 1.00)}
FREE_CUT_BASELINES = ("torchvision", "ours")


def _read_json(path: pathlib.Path, what: str):
    """The parsed JSON of ``path``; a missing, unreadable or malformed file is a ValueError naming it."""
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such {what}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file, so not a {what}") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (truncated or edited by hand?): {err}") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to be a {what}") from None


def validate_free_cuts(data, source) -> dict:
    """Check a free-cuts result (see :func:`load_free_cuts`); ValueError naming ``source`` and the field."""
    def bad(where, problem):
        raise ValueError(f"{source}: {where} {problem}")

    def get(d, key, where):
        if not isinstance(d, dict):
            bad(where or "the file", "must be a JSON object")
        if key not in d:
            bad(f"{where}.{key}" if where else key, "is missing")
        return d[key]

    def obj(v, where, nonempty=True):
        if not isinstance(v, dict) or (nonempty and not v):
            bad(where, "must be a non-empty object")
        return v

    def count(v, where):
        if not _is_int(v) or v < 1:
            bad(where, f"must be a positive integer (got {v!r})")
        return v

    def number(v, where, positive=True):
        if not _is_num(v) or v < 0 or (positive and v == 0):
            bad(where, f"must be a finite number {'> 0' if positive else '>= 0'} (got {v!r})")
        return float(v)

    def interval(v, where):
        if not isinstance(v, list) or len(v) != 3:
            bad(where, f"must be [ratio, low, high] (got {v!r})")
        est, lo, hi = (number(x, f"{where}[{i}]") for i, x in enumerate(v))
        if not lo <= est <= hi:
            bad(where, f"must hold its ratio: low <= ratio <= high (got {v!r})")
        return est, lo, hi

    obj(data, "the file")
    settings = obj(get(data, "settings", ""), "settings")
    for key in ("rounds", "processes", "batch", "size"):
        count(get(settings, key, "settings"), f"settings.{key}")
    if get(settings, "baseline", "settings") not in FREE_CUT_BASELINES:
        bad("settings.baseline", f"must be one of {FREE_CUT_BASELINES} (got {settings['baseline']!r})")
    prov = obj(get(data, "provenance", ""), "provenance")
    for key in ("device", "torch", "date", "command"):
        if not isinstance(get(prov, key, "provenance"), str):
            bad(f"provenance.{key}", f"must be a string (got {prov[key]!r})")
    max_load = number(get(data, "max_load", ""), "max_load")
    quiet = get(data, "quiet", "")
    if not isinstance(quiet, bool):
        bad("quiet", f"must be true or false (got {quiet!r})")
    runs = obj(get(data, "runs", ""), "runs")
    for arch, run in runs.items():
        where = f"runs.{arch}"
        procs = get(obj(run, where), "processes", where)
        if not isinstance(procs, list) or len(procs) != settings["processes"]:
            bad(f"{where}.processes", f"must be a list of settings.processes = "
                f"{settings['processes']} worker results")
        cuts = {}
        for i, proc in enumerate(procs):
            pw = f"{where}.processes[{i}]"
            obj(proc, pw)
            for mode in MODES:
                results = obj(get(proc, mode, pw), f"{pw}.{mode}")
                for cut, v in results.items():
                    interval(v, f"{pw}.{mode}.{cut}")
                names = cuts.setdefault(mode, sorted(results))
                if sorted(results) != names:
                    bad(f"{pw}.{mode}", f"times cuts {sorted(results)}, processes[0] {names}")
            load = get(proc, "load", pw)
            if not isinstance(load, list) or len(load) != 2:
                bad(f"{pw}.load", f"must be [before, after] (got {load!r})")
            before = [number(x, f"{pw}.load[{j}]", positive=False) for j, x in enumerate(load)][0]
            if quiet and before > max_load:
                bad("quiet", f"is true, but {pw} started at load {before} > max_load {max_load}")
        summary = obj(get(run, "summary", where), f"{where}.summary")
        keys = sorted(f"{mode}/{cut}" for mode in MODES for cut in cuts[mode])
        if sorted(summary) != keys:
            bad(f"{where}.summary", f"must have one entry per mode/cut: {keys}")
        for key, s in summary.items():
            sw = f"{where}.summary.{key}"
            mode, cut = key.split("/", 1)
            per = get(obj(s, sw), "per_process", sw)
            if per != [p[mode][cut] for p in procs]:
                bad(f"{sw}.per_process", "does not match the processes' intervals")
            spread = get(s, "between_process", sw)
            ests = [p[mode][cut][0] for p in procs]
            if spread != [min(ests), max(ests)]:
                bad(f"{sw}.between_process", f"must be [min, max] of the processes' ratios "
                    f"{[min(ests), max(ests)]} (got {spread!r})")
            verdicts = get(s, "verdicts", sw)
            if not isinstance(verdicts, list) or len(verdicts) != len(procs) \
                    or not all(isinstance(v, str) for v in verdicts):
                bad(f"{sw}.verdicts", "must be one verdict string per process")
    return data


def load_free_cuts(path=None) -> dict:
    """Read and validate a free-cuts result file; the committed ``results/free_cuts_cpu.json`` by default.

    ``benchmarks/free_cuts.py`` writes it: ``settings`` (``rounds``, ``processes``, ``batch``, ``size``,
    ``baseline``), ``provenance`` (``device``, ``torch``, ``date``, ``command``), ``max_load``, ``quiet``
    and ``runs``: per architecture, ``processes`` (one per worker process: ``inference`` and ``train``,
    each mapping a cut to its time ratio against the baseline ``[ratio, low, high]``, and ``load``, the
    1-minute load average ``[before, after]`` the worker) and ``summary`` (``"mode/cut"`` ->
    ``per_process``, ``between_process`` ``[min, max]`` of the ratios, ``verdicts``). A missing key, a
    non-finite or non-positive number, an interval that does not hold its ratio, a summary that does not
    match its processes, or ``quiet`` true with a worker above ``max_load``: ValueError naming the file
    and the field.
    """
    path = RESULTS / FREE_CUTS_FILE if path is None else pathlib.Path(path)
    return validate_free_cuts(_read_json(path, "free-cuts result file"), path)


def free_cut_verdicts(data: dict) -> list[dict]:
    """One row per (architecture, mode, cut) of a free-cuts result, the verdicts recomputed from its data.

    Each process's verdict is :func:`verdict` of its interval at the file's rounds. Across processes
    (whose spread one interval does not cover): "faster" or "slower" only if every process says so,
    "too few rounds ..." if any does, else "not distinguishable". Each row: ``arch``, ``baseline``
    ("torchvision" for DenseNet-121 against torchvision's, else "ours": the same network with no cut),
    ``mode``, ``cut``, ``per_process`` [(ratio, low, high)], ``between`` (min, max of the ratios),
    ``process_verdicts``, ``verdict``; ``mac_ratio`` (exact, from :func:`costs.analyze` at the file's
    input size: only pool-first changes it); ``realised``, the realised fraction at the two ends of
    ``between`` as (low, high), None where the multiply-adds do not change and for combinations that
    mix in cuts which change none (their ratio would exceed 1 and mean nothing); ``goal``
    (:data:`FREE_CUT_GOALS` for the mode against torchvision's DenseNet-121, else None) and
    ``meets_goal`` (every process's ratio at most ``goal[0]`` and upper end below ``goal[1]``; None
    without a goal).
    """
    settings, rows = data["settings"], []
    rounds, size = settings["rounds"], settings["size"]
    for arch, run in data["runs"].items():
        baseline = settings["baseline"] if arch == "densenet121" else "ours"
        unknown = [c for mode in MODES for c in run["processes"][0][mode] if c not in FREE_CUT_OPTIONS]
        if unknown:
            raise ValueError(f"free_cut_verdicts: unknown cut(s) {unknown} in runs.{arch}; known: "
                             f"{sorted(FREE_CUT_OPTIONS)}")
        macs = {pf: costs.analyze(arch, size, pool_first=pf).macs for pf in (False, True)}
        for mode in MODES:
            for cut in run["processes"][0][mode]:
                per = [tuple(p[mode][cut]) for p in run["processes"]]
                each = [verdict(lo, hi, rounds) for _, lo, hi in per]
                overall = next((v for v in each if v.startswith("too few")), None) or (
                    each[0] if each[0] in ("faster", "slower") and len(set(each)) == 1
                    else "not distinguishable")
                m = macs["pool_first" in FREE_CUT_OPTIONS[cut]] / macs[False]
                between = (min(e for e, _, _ in per), max(e for e, _, _ in per))
                # The realised fraction divides time saved by multiply-adds saved: it means something
                # only for a cut whose every part changes the multiply-adds (pool-first alone). A
                # combination with cuts that save time at no multiply-add change would exceed 1.
                alone = FREE_CUT_OPTIONS[cut] == ("pool_first",)
                ends = [realised_fraction(t, m) if alone else None for t in between]
                goal = FREE_CUT_GOALS[mode] if baseline == "torchvision" else None
                rows.append(dict(
                    arch=arch, baseline=baseline, mode=mode, cut=cut, per_process=per,
                    between=between, process_verdicts=each, verdict=overall, mac_ratio=m,
                    realised=None if ends[0] is None else (min(ends), max(ends)), goal=goal,
                    meets_goal=None if goal is None else all(
                        e <= goal[0] and hi < goal[1] for e, _, hi in per)))
    return rows
