"""Inference and training benchmarks, their reports, and regression detection (no MLflow here).

- ``grid``: batch x clip-length x runner cells with data / network / end-to-end latency percentiles
- ``measure``: percentiles, peak memory, machine facts
- ``report``: CSV, PNG plots, Markdown
- ``regression``: comparison of a run's metrics with earlier runs' (``tasks/bench_history.py`` reads MLflow)
- ``train_throughput``: sequences and audio seconds per second of training steps
"""
