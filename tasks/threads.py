"""Imported by the benchmark entry points before torch loads: torch's OpenMP workers sleep when idle.

libgomp's default is to spin for a while after each parallel region. In a benchmark that computes
the features with torch and then runs OpenVINO or onnxruntime (each with its own thread pool), the
spinning workers take the cores the exported graph runs on: QuartzNet 15x5, batch 1 x 7 s, measured
here, the OpenVINO inference right after the filterbank took 3.6-4.6 ms longer than back to back
(73.5 vs 68.9 ms fp32, 41.3 vs 37.7 ms bf16), and the same with ``OMP_WAIT_POLICY=PASSIVE``. Torch
eager itself was not measurably slower with it (its convolutions are long parallel regions).
A value the user set is kept. It has no effect once torch is loaded (libgomp reads it at load time).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
