"""Imported by the benchmark entry points before torch loads: torch's idle OpenMP workers spin briefly.

libgomp's default is to spin for ~300,000 iterations after each parallel region before sleeping. In
a benchmark that computes the features with torch and then runs OpenVINO or onnxruntime (each with
its own thread pool), the spinning workers take the cores the exported graph runs on. Measured here
(QuartzNet 15x5, batch 1 x 7 s, OpenVINO bf16): the inference right after the filterbank took 41.3 ms
against 37.7 ms back to back; with ``GOMP_SPINCOUNT=30000`` 40.1 vs 40.0. ``OMP_WAIT_POLICY=PASSIVE``
(no spinning at all) fixes that too but slowed torch eager itself (each of its ~400 ops then wakes
sleeping workers); the short spin did not. A value the user set (either variable) is kept. It has no
effect once torch is loaded (libgomp reads it at load time).
"""

import os

if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "30000")
