"""Process-wide runtime settings: device target, thread counts, oneDNN and log levels, set once.

MindSpore and faiss each keep global state that must be configured before their first heavy call:

- On CPUs with AVX-512, MindSpore's bundled oneDNN runs k>1 convolutions on its reference kernel
  (about 100x slower) unless ``ONEDNN_MAX_CPU_ISA=AVX2`` is in the environment before the first
  convolution. We set it on CPU unless the user already chose a value.
- MindSpore's CPU thread pool defaults to far more threads than cores; faiss falls back to one
  OpenMP thread once MindSpore is imported. Both are set to the cores this process may use.
- ``GLOG_v=3`` silences MindSpore's C++ log lines; it must be set before ``import mindspore``.
"""

from __future__ import annotations

import logging
import os

from src.errors import ConfigError

logger = logging.getLogger(__name__)

DEVICE_TARGETS = ("CPU", "GPU", "Ascend")
EXECUTION_MODES = ("graph", "pynative")

_configured: tuple | None = None


def quiet_mindspore_logs() -> None:
    """Silence MindSpore's C++ logging unless the user set ``GLOG_v`` themselves.

    Call before the first ``import mindspore`` (the entry scripts and ``src.models`` do).
    """
    os.environ.setdefault("GLOG_v", "3")


def available_cores() -> int:
    """Number of CPU cores this process may run on (respects affinity masks and cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def normalise_device_target(device_target: str) -> str:
    """Return the canonical spelling of a device target, accepting any letter case.

    Raises:
        ConfigError: if the name is not one of CPU, GPU, Ascend.
    """
    by_lower = {name.lower(): name for name in DEVICE_TARGETS}
    canonical = by_lower.get(str(device_target).lower())
    if canonical is None:
        raise ConfigError(
            f"runtime.device_target must be one of {', '.join(DEVICE_TARGETS)}; got "
            f"{device_target!r}. Set it in the config file or with runtime.device_target=CPU."
        )
    return canonical


def configure(
    device_target: str = "CPU",
    device_id: int = 0,
    mode: str = "graph",
    num_threads: int | None = None,
) -> None:
    """Configure MindSpore and faiss for this process. Later calls with other values are refused.

    Args:
        device_target: "CPU", "GPU" or "Ascend" (any case).
        device_id: accelerator index on GPU / Ascend; ignored on CPU.
        mode: "graph" (compiled, faster here) or "pynative" (eager, easier to debug).
        num_threads: CPU threads for MindSpore and faiss; None uses every available core.

    Raises:
        ConfigError: on an unknown device target or mode, a bad thread count, or a second call
            with different settings (MindSpore cannot switch device inside one process).
    """
    global _configured
    target = normalise_device_target(device_target)
    if mode not in EXECUTION_MODES:
        raise ConfigError(
            f"runtime.mode must be one of {', '.join(EXECUTION_MODES)}; got {mode!r}."
        )
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ConfigError(
            f"runtime.num_threads must be a positive integer or null (all cores); got "
            f"{num_threads!r}."
        )
    threads = num_threads or available_cores()
    wanted = (target, int(device_id), mode, threads)
    if _configured is not None:
        if _configured != wanted:
            raise ConfigError(
                f"the runtime is already configured as {_configured}; cannot switch to {wanted} "
                "inside one process. Run a separate process for another device."
            )
        return

    quiet_mindspore_logs()
    if target == "CPU" and "ONEDNN_MAX_CPU_ISA" not in os.environ:
        # Must precede the first convolution; see the module docstring.
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"

    import mindspore as ms

    if target == "CPU":
        ms.set_device("CPU")
    else:
        ms.set_device(target, int(device_id))
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    ms.device_context.cpu.op_tuning.threads_num(threads)

    import faiss

    faiss.omp_set_num_threads(threads)
    _configured = wanted
    logger.info(
        "runtime: %s (device %d), %s mode, %d threads, ONEDNN_MAX_CPU_ISA=%s",
        target,
        device_id,
        mode,
        threads,
        os.environ.get("ONEDNN_MAX_CPU_ISA", "unset"),
    )
