"""Workloads for linmm: memory-access traces (real, recorded, or synthetic)."""

from .record import RecordError, record
from .synth import sequential, uniform, zipf
from .trace import (KIND_I, KIND_L, KIND_M, KIND_S, Trace, TraceError, load_trace,
                    read_lackey, read_npy, save_trace)

__all__ = [
    "Trace", "TraceError", "read_lackey", "read_npy", "load_trace", "save_trace",
    "sequential", "uniform", "zipf", "RecordError", "record",
    "KIND_I", "KIND_L", "KIND_S", "KIND_M",
]
