"""The onnxruntime session: CUDA when it is there and proves itself on a smoke run, else CPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import structlog

log = structlog.get_logger("classifiers.session")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# How long an idle intra-op thread spins for its next piece of work before it sleeps. Within one
# forward pass the next operator's work comes within microseconds, so a short spin saves the
# futex wake-up of every parallel operator (a 128-token row: 3.6 -> 2.6 ms with the fast profile,
# 7.7 -> 5.7 ms with the accurate one, and less CPU a run than sleeping at once). After the pass,
# the pool spins no longer than this and then sleeps, so Envoy and the event loop keep their
# cores; onnxruntime's default, longer spin took them (docs/BENCHMARKS.md, "Bounded spinning").
INTRA_OP_SPIN_US = 50
# The first onnxruntime whose pools read `session.intra_op.spin_duration_us`. An older one would
# ignore the bound and spin as long as its default, so it does not spin at all.
SPIN_BOUND_SINCE = (1, 27)


def available_cores() -> int:
    """The cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def spin_is_bounded(version: str = ort.__version__) -> bool:
    """Whether this onnxruntime bounds its pool's spinning by `spin_duration_us`."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= SPIN_BOUND_SINCE


def session_options(
    intra_op_threads: int | None = None,
    *,
    cpu_arena: bool = True,
    spin_us: int = INTRA_OP_SPIN_US,
) -> ort.SessionOptions:
    """Options for low-latency inference: all graph optimizations, one sequential op stream,
    intra-op threads that spin `spin_us` microseconds before sleeping (0: sleep at once)."""
    options = ort.SessionOptions()
    # onnxruntime's CPU arena keeps the largest buffers it ever needed (one long prompt's batch
    # left the router ~340 MB larger for good) unless `release_arena` shrinks it. Without the
    # arena, every large run allocates and faults its buffers in afresh: a 50 KB prompt took
    # 1.7-2.3 times as long (docs/BENCHMARKS.md, "Router memory after large prompts"), so it
    # stays on.
    options.enable_cpu_mem_arena = cpu_arena
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads or available_cores()
    # Idle pool threads must not spin for long: the router shares its cores with Envoy and the
    # gRPC event loop, and onnxruntime's default spin starved both (bench: 61 ms CPU per request
    # at c=1). A bounded spin keeps the pass's own operators fast and sleeps soon after.
    spin = spin_us > 0 and spin_is_bounded()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(spin_us))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only; provider fallbacks are logged here instead
    return options


def create_session(
    model: Path,
    *,
    force_cpu: bool = False,
    intra_op_threads: int | None = None,
    cpu_arena: bool = True,
) -> ort.InferenceSession:
    """An inference session on CUDA if it is available and a smoke run succeeds, else on CPU.

    The provider that runs, and why, is logged; read it back with `session.get_providers()[0]`.
    """
    if not model.is_file():
        raise FileNotFoundError(
            f"The classifier model {model} does not exist; train and export it "
            "(classifiers/training) or pass the directory that holds signals.int8.onnx."
        )
    options = session_options(intra_op_threads, cpu_arena=cpu_arena)
    if force_cpu:
        reason = "CPU forced by configuration"
    elif CUDA not in ort.get_available_providers():
        reason = "CUDA provider not available"
    elif not _nvidia_driver_present():
        reason = "no NVIDIA driver on this host (/proc/driver/nvidia is absent)"
    else:
        cuda, reason = _cuda_session(model, options)
        if cuda is not None:
            log.info("onnx session ready", provider=CUDA, model=str(model))
            return cuda
    session = ort.InferenceSession(str(model), options, providers=[CPU])
    log.info(
        "onnx session ready",
        provider=CPU,
        why=reason,
        threads=options.intra_op_num_threads,
        model=str(model),
    )
    return session


def _cuda_session(
    model: Path, options: ort.SessionOptions
) -> tuple[ort.InferenceSession | None, str]:
    """A CUDA session that has run once, or None and why not."""
    quiet = session_options(options.intra_op_num_threads, cpu_arena=options.enable_cpu_mem_arena)
    quiet.log_severity_level = 4  # onnxruntime logs CUDA load failures itself; we log the reason
    try:
        session = ort.InferenceSession(str(model), quiet, providers=[CUDA, CPU])
    except Exception as exc:  # any CUDA failure means CPU, never no classifier
        return None, f"CUDA session failed: {exc}"
    if session.get_providers()[0] != CUDA:
        return None, "CUDA provider failed to initialise (CUDA or cuDNN libraries, or no GPU)"
    try:
        smoke_run(session)
    except Exception as exc:
        return None, f"CUDA smoke run failed: {exc}"
    return session, "CUDA"


def smoke_run(session: ort.InferenceSession, run_options: ort.RunOptions | None = None) -> None:
    """Run a two-token batch through every output; raises whatever the provider raises."""
    ids = np.zeros((1, 2), dtype=np.int64)
    session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)}, run_options)


def release_arena(session: ort.InferenceSession) -> None:
    """Hand the unused chunks of the session's memory arenas back to the allocator.

    onnxruntime shrinks arenas only at the end of a run that asks for it, so this is a two-token
    run that asks. Chunks in use by a concurrent run are kept. Safe from any thread.
    """
    arenas = "cpu:0;gpu:0" if session.get_providers()[0] == CUDA else "cpu:0"
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", arenas)
    smoke_run(session, options)


def _nvidia_driver_present() -> bool:
    # Without a driver, onnxruntime-gpu would still try (and loudly fail) to load CUDA libraries.
    return Path("/proc/driver/nvidia").exists()
