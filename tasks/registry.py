"""The MLflow Model Registry: register an evaluated model, alias it ``candidate``, promote ``champion``.

A CTC model is the exported ONNX graph (``exports/<name>/model.onnx``) logged with the ONNX
flavour. Its signature is read from the graph and declares the batch axis and every dynamic
axis (time) as ``-1``: a signature inferred from a fixed-length example would freeze the time
axis (STACK.md). A transducer (no ``model.onnx``, but ``encoder.onnx``, ``predictor.onnx``,
``joint.onnx`` with their state inputs/outputs) is registered as its whole export folder: the
three graphs, ``rnnt_export.json`` (the shapes the streaming runtime needs), ``export.json`` and
the OpenVINO IR are the version's artifacts (``models:/<name>/<version>`` downloads the folder
that ``asr_core.export.rnnt_runtime.load_backend`` reads). Promotion compares WER on the first
split of ``splits`` present in ``reports/evaluate.json`` (``test_unseen_voice``, else ``test``):
the new version becomes ``champion`` only when its WER is strictly lower than the current
champion's (for a transducer, its greedy WER, the evaluate stage's ``wer``).

Identity (the ``onnx_md5`` tag): the MD5 of ``model.onnx``; for a transducer the MD5 of the
md5sum listing of its three graphs in the fixed order encoder, predictor, joint
(``cd exports/<name> && md5sum encoder.onnx predictor.onnx joint.onnx | md5sum``). A model
already registered (same identity: a flow re-run whose train and export stages were skipped)
is not registered again: the existing version gets the new evaluation's WER tags and the
``candidate`` alias, and the champion rule is applied to it as to a new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks import tracking

CANDIDATE, CHAMPION = "candidate", "champion"
DEFAULT_SPLITS = ("test_unseen_voice", "test")
CTC_GRAPH = "model.onnx"
TRANSDUCER_GRAPHS = ("encoder.onnx", "predictor.onnx", "joint.onnx")  # the identity's fixed order


def export_graphs(export_dir: str | Path) -> list[Path]:
    """The graphs a version is made of: ``[model.onnx]`` (CTC) or the transducer's three, in the
    identity's order; ``[]`` when the folder holds neither (no export stage output)."""
    d = Path(export_dir)
    if (d / CTC_GRAPH).is_file():
        return [d / CTC_GRAPH]
    graphs = [d / g for g in TRANSDUCER_GRAPHS]
    return graphs if all(p.is_file() for p in graphs) else []


def graphs_md5(graphs: Sequence[str | Path]) -> str:
    """One graph: its MD5. Several: the MD5 of their md5sum listing (``<md5>  <file name>`` lines, in order)."""
    import hashlib

    from asr_core.data.download.checksums import md5_file

    if len(graphs) == 1:
        return md5_file(graphs[0])
    listing = "".join(f"{md5_file(p)}  {Path(p).name}\n" for p in graphs)
    return hashlib.md5(listing.encode(), usedforsecurity=False).hexdigest()


def pick_wer(
    evaluation: Mapping[str, Any], splits: Sequence[str] = DEFAULT_SPLITS, where: str = "reports/evaluate.json"
) -> tuple[str, float]:
    """(split, WER) of the first of ``splits`` that the evaluation report holds."""
    for split in splits:
        entry = evaluation.get(split)
        if isinstance(entry, Mapping) and isinstance(entry.get("wer"), (int, float)):
            return split, float(entry["wer"])
    raise ValueError(f"{where}: none of the splits {list(splits)} has a 'wer' (found {sorted(evaluation)})")


def _shape(value_info) -> list[int]:
    dims = value_info.type.tensor_type.shape.dim
    # dim_param (a named dynamic axis) or an unknown size -> -1; the batch axis is always -1.
    return [
        -1 if i == 0 or d.dim_param or not d.HasField("dim_value") else int(d.dim_value) for i, d in enumerate(dims)
    ]


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
                raise ValueError(
                    f"{where}: {v.name!r} has shape {shape}: only the batch axis is variable; "
                    "export with a dynamic time axis"
                )
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
        found = tracking.client().search_model_versions(f"name = '{model_name}' and tags.onnx_md5 = '{onnx_md5}'")
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version), default=None)


def register(
    *,
    model_name: str,
    evaluation_path: str | Path,
    run_id: str,
    onnx_path: str | Path | None = None,
    export_dir: str | Path | None = None,
    tags: Mapping[str, Any] | None = None,
    splits: Sequence[str] = DEFAULT_SPLITS,
) -> dict[str, Any]:
    """Log the model into ``run_id``, register it, set aliases; returns a summary.

    The model: ``onnx_path`` (a single graph), or ``export_dir`` (its ``model.onnx``, else a
    transducer's three graphs and the whole folder). The same model (by identity, see the module
    doc) registered before is reused rather than registered again."""
    if (onnx_path is None) == (export_dir is None):
        raise ValueError("registry: give exactly one of onnx_path, export_dir")
    evaluation_path = Path(evaluation_path)
    graphs = [Path(onnx_path)] if onnx_path is not None else export_graphs(export_dir)
    if not graphs or not all(p.is_file() for p in graphs):
        raise FileNotFoundError(
            f"registry: no exported model at {onnx_path or export_dir} (model.onnx, or "
            f"{', '.join(TRANSDUCER_GRAPHS)}): run the export stage first"
        )
    if not evaluation_path.is_file():
        raise FileNotFoundError(f"registry: {evaluation_path} not found (run the evaluate stage first)")
    evaluation = json.loads(evaluation_path.read_text(encoding="utf-8"))
    split, wer = pick_wer(evaluation, splits, str(evaluation_path))
    tags = {**(tags or {}), "onnx_md5": graphs_md5(graphs)}
    if len(graphs) > 1:
        tags["graphs"] = ",".join(p.name for p in graphs)
    existing = registered_version(model_name, tags["onnx_md5"])
    c = tracking.client()
    previous, previous_wer = current_champion(model_name)
    if existing is None:
        log = _log_onnx if len(graphs) == 1 else _log_export_folder
        version = log(graphs, model_name=model_name, run_id=run_id, split=split)
        for k, v in {**tags, "wer": wer, "wer_split": split}.items():
            c.set_model_version_tag(model_name, version, k, str(v))
    else:  # the same graph(s): refresh its evaluation, keep its version
        version = str(existing.version)
        for k, v in {"wer": wer, "wer_split": split, "reregistered_by_run": run_id}.items():
            c.set_model_version_tag(model_name, version, k, str(v))

    c.set_registered_model_alias(model_name, CANDIDATE, version)
    is_champion = previous is not None and str(previous.version) == version
    promoted = previous is None or previous_wer is None or wer < previous_wer or is_champion
    if promoted:
        c.set_registered_model_alias(model_name, CHAMPION, version)
    return {
        "model_name": model_name,
        "version": version,
        "wer": wer,
        "wer_split": split,
        "reused": existing is not None,
        "promoted": promoted,
        "previous_champion": str(previous.version) if previous else None,
        "previous_champion_wer": previous_wer,
        "model_uri": f"models:/{model_name}/{version}",
    }


def _log_onnx(graphs: list[Path], *, model_name: str, run_id: str, split: str) -> str:
    """One graph, ONNX flavour with its signature, registered; returns the new version."""
    import mlflow
    import onnx

    onnx_path = graphs[0]
    graph = onnx.load(str(onnx_path))
    signature = onnx_signature(graph, str(onnx_path))
    mlflow.set_tracking_uri(tracking.tracking_uri())
    with mlflow.start_run(run_id=run_id):
        info = mlflow.onnx.log_model(
            graph,
            name="model",
            signature=signature,
            registered_model_name=model_name,
            pip_requirements=[f"onnx=={onnx.__version__}", _pin("onnxruntime")],
            metadata={"wer_split": split, "source": str(onnx_path)},
        )
    return str(info.registered_model_version)


def _log_export_folder(graphs: list[Path], *, model_name: str, run_id: str, split: str) -> str:
    """A transducer: its export folder as the run's ``model`` artifacts, registered from there
    (no single-graph MLflow flavour fits three graphs with state); returns the new version."""
    from mlflow.exceptions import MlflowException

    c = tracking.client()
    folder = graphs[0].parent
    c.log_artifacts(run_id, str(folder), artifact_path="model")
    model_file = _exported_from(folder)
    if model_file is not None:  # its features and vocabulary: a downloaded version serves on its own
        c.log_artifact(run_id, str(model_file), artifact_path="model")
    try:
        c.get_registered_model(model_name)
    except MlflowException:
        c.create_registered_model(model_name)
    mv = c.create_model_version(
        model_name,
        source=f"runs:/{run_id}/model",
        run_id=run_id,
        description=f"RNN-T export folder {folder} (wer_split {split}): "
        f"{', '.join(p.name for p in graphs)}, rnnt_export.json, openvino/",
    )
    return str(mv.version)


def _exported_from(folder: Path) -> Path | None:
    """The ``model.pt`` that ``<folder>/export.json`` names (from the working directory), if present."""
    meta_path = folder / "export.json"
    if not meta_path.is_file():
        return None
    model = Path(json.loads(meta_path.read_text(encoding="utf-8")).get("model") or "")
    return model if model.name and model.is_file() else None


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` -> (name, alias, version)."""
    rest = uri[len("models:/") :] if uri.startswith("models:/") else ""
    name, at, alias = rest.partition("@")
    version = None
    if not at:
        name, slash, version = rest.partition("/")
        if not slash or not version.isdigit():
            version = None
    if not name or "/" in name or (at and not alias) or (not at and version is None):
        raise ValueError(f"{uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
    return name, alias or None, version


def download_version(uri: str, cache_dir: str | Path) -> Path:
    """The registered transducer version ``uri`` as a local export folder under ``cache_dir``.

    A version is downloaded once to ``<cache_dir>/<name>/<version>/`` (to a temporary folder, then
    renamed) and read from there afterwards; an alias is resolved at every call, so a new champion
    is picked up. Raises ValueError naming the URI when the name, alias or version is unknown, or
    when the version is not a servable export folder (a CTC version is its ONNX graph alone).
    """
    import shutil
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_uri(uri)
    c = tracking.client()
    try:
        mv = c.get_model_version_by_alias(name, alias) if alias else c.get_model_version(name, version)
    except MlflowException as e:
        raise ValueError(f"{uri}: not in the registry at {tracking.tracking_uri()} ({e.message})") from None
    dst = Path(cache_dir) / name / str(mv.version)
    if not (dst / "export.json").is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{mv.version}-", dir=dst.parent))
        try:
            mlflow.set_tracking_uri(tracking.tracking_uri())
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(tmp)))
            if not (got / "export.json").is_file():
                raise ValueError(
                    f"{uri} (version {mv.version}, {mv.source}): no export.json in it, so no features or "
                    f"vocabulary to serve with (a CTC version is its ONNX graph alone): serve exports/<name>"
                )
            if dst.exists():
                shutil.rmtree(dst)
            got.rename(dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _pin(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{dist}=={version(dist)}"
    except PackageNotFoundError:
        return dist
