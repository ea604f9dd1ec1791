"""The MLflow Model Registry: register an evaluated model, alias it ``candidate``, promote ``champion``.

The model is the exported ONNX graph (``exports/<name>/model.onnx``) logged with the ONNX
flavour. Its signature is read from the graph and declares the batch axis and every dynamic
axis (time) as ``-1``: a signature inferred from a fixed-length example would freeze the time
axis (STACK.md). Promotion compares WER on the first split of ``splits`` present in
``reports/evaluate.json`` (``test_unseen_voice``, else ``test``): the new version becomes
``champion`` only when its WER is strictly lower than the current champion's.

A graph already registered (same ``onnx_md5`` tag: a flow re-run whose train and export
stages were skipped) is not registered again: the existing version gets the new evaluation's
WER tags and the ``candidate`` alias, and the champion rule is applied to it as to a new one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from tasks import tracking

CANDIDATE, CHAMPION = "candidate", "champion"
DEFAULT_SPLITS = ("test_unseen_voice", "test")


def pick_wer(evaluation: Mapping[str, Any], splits: Sequence[str] = DEFAULT_SPLITS,
             where: str = "reports/evaluate.json") -> tuple[str, float]:
    """(split, WER) of the first of ``splits`` that the evaluation report holds."""
    for split in splits:
        entry = evaluation.get(split)
        if isinstance(entry, Mapping) and isinstance(entry.get("wer"), (int, float)):
            return split, float(entry["wer"])
    raise ValueError(f"{where}: none of the splits {list(splits)} has a 'wer' (found {sorted(evaluation)})")


def _shape(value_info) -> list[int]:
    dims = value_info.type.tensor_type.shape.dim
    # dim_param (a named dynamic axis) or an unknown size -> -1; the batch axis is always -1.
    return [-1 if i == 0 or d.dim_param or not d.HasField("dim_value") else int(d.dim_value)
            for i, d in enumerate(dims)]


def onnx_signature(model, where: str):
    """A ModelSignature from the graph's inputs/outputs; refuses a graph whose time axis is fixed."""
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def specs(values) -> list:
        out = []
        for v in values:
            shape = _shape(v)
            if len(shape) >= 2 and -1 not in shape[1:]:
                raise ValueError(f"{where}: {v.name!r} has shape {shape}: only the batch axis is variable; "
                                 "export with a dynamic time axis")
            dtype = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)
            out.append(TensorSpec(dtype, tuple(shape), v.name))
        return out

    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    return ModelSignature(inputs=Schema(specs(inputs)), outputs=Schema(specs(model.graph.output)))


def current_champion(model_name: str) -> tuple[Any | None, float | None]:
    """(model version, its WER) holding the ``champion`` alias, or (None, None)."""
    from mlflow.exceptions import MlflowException

    c = tracking.client()
    try:
        version = c.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None, None
    wer = version.tags.get("wer")
    return version, (float(wer) if wer is not None else None)


def registered_version(model_name: str, onnx_md5: str) -> Any | None:
    """The newest version of ``model_name`` tagged with ``onnx_md5``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = tracking.client().search_model_versions(
            f"name = '{model_name}' and tags.onnx_md5 = '{onnx_md5}'")
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version), default=None)


def register(*, model_name: str, onnx_path: str | Path, evaluation_path: str | Path, run_id: str,
             tags: Mapping[str, Any] | None = None, splits: Sequence[str] = DEFAULT_SPLITS) -> dict[str, Any]:
    """Log ``onnx_path`` into ``run_id`` (ONNX flavour), register it, set aliases; returns a summary.

    The same graph (by MD5) registered before is reused rather than registered again."""
    import mlflow
    import onnx

    from asr_core.data.download.checksums import md5_file

    onnx_path, evaluation_path = Path(onnx_path), Path(evaluation_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"registry: {onnx_path} not found (run the export stage first)")
    if not evaluation_path.is_file():
        raise FileNotFoundError(f"registry: {evaluation_path} not found (run the evaluate stage first)")
    evaluation = json.loads(evaluation_path.read_text(encoding="utf-8"))
    split, wer = pick_wer(evaluation, splits, str(evaluation_path))
    tags = {**(tags or {}), "onnx_md5": md5_file(onnx_path)}
    existing = registered_version(model_name, tags["onnx_md5"])
    c = tracking.client()
    previous, previous_wer = current_champion(model_name)
    if existing is None:
        graph = onnx.load(str(onnx_path))
        signature = onnx_signature(graph, str(onnx_path))
        mlflow.set_tracking_uri(tracking.tracking_uri())
        with mlflow.start_run(run_id=run_id):
            info = mlflow.onnx.log_model(
                graph, name="model", signature=signature, registered_model_name=model_name,
                pip_requirements=[f"onnx=={onnx.__version__}", _pin("onnxruntime")],
                metadata={"wer_split": split, "source": str(onnx_path)})
        version = str(info.registered_model_version)
        for k, v in {**tags, "wer": wer, "wer_split": split}.items():
            c.set_model_version_tag(model_name, version, k, str(v))
    else:  # the same graph: refresh its evaluation, keep its version
        version = str(existing.version)
        for k, v in {"wer": wer, "wer_split": split, "reregistered_by_run": run_id}.items():
            c.set_model_version_tag(model_name, version, k, str(v))

    c.set_registered_model_alias(model_name, CANDIDATE, version)
    is_champion = previous is not None and str(previous.version) == version
    promoted = previous is None or previous_wer is None or wer < previous_wer or is_champion
    if promoted:
        c.set_registered_model_alias(model_name, CHAMPION, version)
    return {"model_name": model_name, "version": version, "wer": wer, "wer_split": split,
            "reused": existing is not None, "promoted": promoted,
            "previous_champion": str(previous.version) if previous else None,
            "previous_champion_wer": previous_wer, "model_uri": f"models:/{model_name}/{version}"}


def _pin(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{dist}=={version(dist)}"
    except PackageNotFoundError:
        return dist
