"""The pieces of ``bench/gpu_check.py``: every CUDA path of the project in one run, two reports.

``project`` holds every import from ``asr_core``; ``harness`` the sizes, rows, caps and reports;
``training`` steps 1, 2, 5, 6 (the engine on a synthetic recipe); ``inference`` steps 3 and 4.
"""
