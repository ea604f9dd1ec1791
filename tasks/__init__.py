"""The DVC stages\x27 entry points (``python -m tasks.<stage>``) and what they share."""
