"""asr_core: the plain library behind the toolkit.

Models, features, data, decoding and training live here with no Prefect, DVC or
MLflow imports; ``tasks/`` adapts these functions into pipeline stages.
"""

__version__ = "0.1.0"
