"""The Projector checks: embeddings read as the Projector plugin reads them.

`projector_config.pbtxt` in the run's folder, its tensor files (TSV, or float32 bytes when not
UTF-8) relative to that folder, and any checkpoint through TensorFlow, imported only when a config
is there (TensorBoard reads checkpoints only through it). Each embedding is listed with its points
x dimensions, metadata columns and rows, and sprite.
"""

import importlib.util
import os
import types

from google.protobuf import text_format
from tensorboard.plugins.projector import projector_config_pb2

from tools.inspect_logdir.findings import RunReport, names

# The file the Projector plugin looks for in a run's folder (its metadata.PROJECTOR_FILENAME).
PROJECTOR_CONFIG = "projector_config.pbtxt"
# One embedding the Projector lists: its tensor name, its [points, dimensions] and its config entry
# (None for a checkpoint tensor the config does not name).
_Listed = tuple[str, list[int], projector_config_pb2.EmbeddingInfo | None]


def report_projector(directory: str, report: RunReport) -> None:
    """The embeddings the Projector lists for the run in `directory`, read as its plugin does.

    The plugin lists every embedding the config names and, beside them, every other 2-D tensor of
    the config's checkpoint (optimizer slots aside), those with the metadata of a first embedding
    that names no tensor. With no model_checkpoint_path it looks for a checkpoint in the run's
    folder and its parent, and lists the run without one only when the config names a tensor
    file. Asset paths (tensor files included) are read relative to the config's folder and must
    stay below it; the checkpoint path is read as it is written.
    """
    config = _read_config(directory, report)
    if config is None:
        return
    listed: list[_Listed] = []
    for embedding in config.embeddings:
        if embedding.tensor_path:
            shape = _tensor_file_shape(directory, embedding, report)
            if shape is not None:
                name = embedding.tensor_name or os.path.basename(embedding.tensor_path)
                listed.append((name, shape, embedding))
    has_tensor_files = any(embedding.tensor_path for embedding in config.embeddings)
    tensorflow = _import_tensorflow()
    if tensorflow is None:
        # TensorBoard's stand-in for TensorFlow reads tensor files, but no checkpoint: the
        # plugin then neither looks for one nor opens the one the config names.
        if config.model_checkpoint_path or not has_tensor_files:
            report.lines.append(
                f"projector: {PROJECTOR_CONFIG} names a checkpoint or no tensor file, unread: "
                "TensorBoard reads checkpoints only through TensorFlow, which is not installed"
            )
    else:
        from_checkpoint = _from_checkpoint(tensorflow, config, directory, has_tensor_files, report)
        if from_checkpoint is None:
            return
        listed.extend(from_checkpoint)

    for name, shape, embedding in listed:
        parts = [f"{shape[0]} x {shape[1]} (points x dimensions)"]
        parts.append(_metadata_part(directory, name, shape[0], embedding, report))
        parts.append(_sprite_part(directory, name, embedding, report))
        report.lines.append(f"projector {name}: " + "; ".join(parts))


def _read_config(directory: str, report: RunReport) -> projector_config_pb2.ProjectorConfig | None:
    """The run's Projector config, or None when there is none or (flagged) it does not parse."""
    config_path = os.path.join(directory, PROJECTOR_CONFIG)
    if not os.path.isfile(config_path):
        return None
    config = projector_config_pb2.ProjectorConfig()
    try:
        with open(config_path) as config_file:
            text_format.Parse(config_file.read(), config)
    except (text_format.ParseError, UnicodeDecodeError) as error:
        report.flag("projector-missing-checkpoint", f"{PROJECTOR_CONFIG} does not parse: {error}")
        return None
    return config


def _from_checkpoint(
    tensorflow: types.ModuleType,
    config: projector_config_pb2.ProjectorConfig,
    directory: str,
    has_tensor_files: bool,
    report: RunReport,
) -> list[_Listed] | None:
    """The embeddings the plugin lists from the config's checkpoint (or the one it finds): none
    when there is no checkpoint beside tensor files, and None (flagged) when the Projector then
    shows nothing of the run at all."""
    checkpoint = config.model_checkpoint_path or _latest_checkpoint(tensorflow, directory)
    if not checkpoint:
        if not has_tensor_files:
            report.flag(
                "projector-missing-checkpoint",
                f"{PROJECTOR_CONFIG} names no tensor_path nor model_checkpoint_path, and no "
                "checkpoint is in the run's folder or its parent: the Projector shows nothing",
            )
            return None
        return []
    if not tensorflow.io.gfile.glob(checkpoint + "*"):
        # The plugin drops the whole config then, tensor files included.
        beside = os.path.join(directory, checkpoint)
        where = (
            " (it is there relative to the run's folder, but TensorBoard reads a relative "
            "path from its own working directory)"
            if not os.path.isabs(checkpoint) and tensorflow.io.gfile.glob(beside + "*")
            else ""
        )
        report.flag(
            "projector-missing-checkpoint",
            f"checkpoint {checkpoint} not found{where}: the Projector shows nothing of this run",
        )
        return None
    try:
        shapes = tensorflow.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    except (tensorflow.errors.OpError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        report.flag(
            "projector-missing-checkpoint",
            f"checkpoint {checkpoint} not read: {first_line}",
        )
        return None
    return _checkpoint_embeddings(config, checkpoint, shapes, report)


def _import_tensorflow() -> types.ModuleType | None:
    """TensorFlow, imported only now (a run with a Projector config needs it), or None."""
    if importlib.util.find_spec("tensorflow") is None:
        return None
    # Imported here, not above: only a run with a Projector config pays for TensorFlow's start.
    import tensorflow

    return tensorflow


def _latest_checkpoint(tensorflow: types.ModuleType, directory: str) -> str | None:
    """Where the plugin looks when the config names no checkpoint: the run's folder, then its
    parent."""
    for folder in (directory, os.path.join(directory, os.pardir)):
        try:
            found = tensorflow.train.latest_checkpoint(folder)
        except tensorflow.errors.NotFoundError:
            found = None
        if found:
            return found
    return None


def _checkpoint_embeddings(
    config: projector_config_pb2.ProjectorConfig,
    checkpoint: str,
    shapes: dict[str, list[int]],
    report: RunReport,
) -> list[_Listed]:
    """The embeddings the plugin takes from the checkpoint, each with its config entry (None for
    a tensor the config does not name, when no nameless entry lends it metadata)."""
    embeddings = [embedding for embedding in config.embeddings if not embedding.tensor_path]
    first = config.embeddings[0] if config.embeddings else None
    nameless = first if first and not (first.tensor_name or first.tensor_path) else None
    listed, named = [], set()
    for embedding in embeddings:
        if not embedding.tensor_name:
            continue
        # The plugin drops a trailing ":0" (a TF1 tensor's name) before looking it up.
        name = embedding.tensor_name.removesuffix(":0")
        named.add(name)
        if name not in shapes:
            two_dimensional = sorted(tensor for tensor, shape in shapes.items() if len(shape) == 2)
            report.flag(
                "projector-missing-checkpoint",
                f"tensor {name} is not in checkpoint {checkpoint} (its 2-D tensors: "
                f"{names(two_dimensional) or 'none'})",
            )
        elif len(shapes[name]) != 2:
            report.flag(
                "projector-missing-checkpoint",
                f"tensor {name} is {len(shapes[name])}-D ({shapes[name]}): the Projector needs "
                "points x dimensions",
            )
        else:
            listed.append((name, shapes[name], embedding))
    for name, shape in sorted(shapes.items()):
        if len(shape) == 2 and ".OPTIMIZER_SLOT" not in name and name not in named:
            # The plugin lends such a tensor the nameless entry's metadata, not its sprite.
            lent = (
                projector_config_pb2.EmbeddingInfo(
                    tensor_name=name, metadata_path=nameless.metadata_path
                )
                if nameless is not None
                else None
            )
            listed.append((name, shape, lent))
    return listed


def _asset_path(directory: str, path: str) -> str | None:
    """An asset path of the config as the plugin resolves it (relative to the config's folder),
    or None when it resolves outside that folder, where the plugin refuses to read."""
    folder = os.path.realpath(directory)
    candidate = os.path.realpath(os.path.join(folder, os.path.expanduser(path)))
    return candidate if os.path.commonpath([folder, candidate]) == folder else None


def _existing_asset(
    report: RunReport, kind: str, directory: str, relative: str, name: str, code: str = ""
) -> str | None:
    """The path of a Projector asset (`kind`: metadata, sprite, tensor file) named in the config,
    or None after flagging `code` (default `projector-missing-<kind>`) when it is not there or
    resolves outside the config's folder."""
    path = _asset_path(directory, relative)
    if path is None or not os.path.isfile(path):
        report.flag(
            code or f"projector-missing-{kind}",
            f"{kind} {relative} of {name} "
            + ("not found" if path else "resolves outside the run's folder"),
        )
        return None
    return path


def _tensor_file_shape(
    directory: str, embedding: projector_config_pb2.EmbeddingInfo, report: RunReport
) -> list[int] | None:
    """The [points, dimensions] of an embedding stored as a tensor file, read as the plugin reads
    it: TSV text, or, when the file is not UTF-8, float32 bytes of the config's tensor_shape. None
    (flagged) when the file is not there or does not read as that."""
    name = embedding.tensor_name or os.path.basename(embedding.tensor_path)
    where = f"tensor file {embedding.tensor_path} of {name}"
    path = _existing_asset(
        report,
        "tensor file",
        directory,
        embedding.tensor_path,
        name,
        "projector-missing-checkpoint",
    )
    if path is None:
        return None
    declared = list(embedding.tensor_shape)
    try:
        # Lines end at "\n" only, as TensorFlow's GFile splits them for the plugin.
        with open(path, encoding="utf-8", newline="\n") as tensor_file:
            rows = [line.rstrip("\n") for line in tensor_file if line.rstrip("\n")]
    except UnicodeDecodeError:
        size = os.path.getsize(path)
        if len(declared) != 2 or size != 4 * declared[0] * declared[1]:
            report.flag(
                "projector-missing-checkpoint",
                f"{where} is not UTF-8, so the plugin reads it as float32 bytes of its "
                f"tensor_shape ({declared or 'none'}): its {size} bytes do not fit",
            )
            return None
        return declared
    values = [row.split("\t") for row in rows]
    widths = sorted({len(row) for row in values})
    if len(widths) != 1:
        report.flag(
            "projector-missing-checkpoint",
            f"{where} is TSV of "
            + (f"rows of {', '.join(map(str, widths))} values" if rows else "no rows")
            + ": the plugin reads one row per point, all of one width",
        )
        return None
    try:
        for row in values:
            for value in row:
                float(value)  # As the plugin parses them.
    except ValueError as error:
        report.flag("projector-missing-checkpoint", f"{where} is TSV but not numbers: {error}")
        return None
    shape = [len(rows), widths[0]]
    if declared and declared != shape:
        # The frontend cuts the served tensor into rows of the declared shape.
        report.flag(
            "projector-missing-checkpoint",
            f"{where} is TSV of {shape[0]} rows x {shape[1]} values, but its tensor_shape is "
            f"{declared}",
        )
        return None
    return shape


def _metadata_part(
    directory: str,
    name: str,
    points: int,
    embedding: projector_config_pb2.EmbeddingInfo | None,
    report: RunReport,
) -> str:
    """The metadata of one embedding, for its line, with its mistakes flagged.

    Rows are counted as the Projector's frontend parses the TSV: blank lines skipped, and the first
    row a header of column names only when it holds a tab (so a single column has no header).
    """
    if embedding is None or not embedding.metadata_path:
        return "no metadata"
    path = _existing_asset(report, "metadata", directory, embedding.metadata_path, name)
    if path is None:
        return f"metadata {embedding.metadata_path} missing"
    with open(path, encoding="utf-8", errors="replace") as metadata_file:
        lines = [line.rstrip("\r\n") for line in metadata_file if line.strip()]
    header = bool(lines) and "\t" in lines[0]
    # A single column has no header: the Projector names it "label".
    columns = lines[0].split("\t") if header else ["label (one column, no header)"]
    rows = len(lines) - header
    if rows != points:
        if not header and rows == points + 1:
            why = " (a header row on a single column is read as a point)"
        elif header and rows == points - 1:
            why = " (with no header row, its first row is read as the column names)"
        else:
            why = ""
        report.flag(
            "projector-metadata-mismatch",
            f"metadata {embedding.metadata_path} has {rows} rows for the {points} points of "
            f"{name}{why}",
        )
    return f"metadata {', '.join(columns)}: {rows} rows"


def _sprite_part(
    directory: str,
    name: str,
    embedding: projector_config_pb2.EmbeddingInfo | None,
    report: RunReport,
) -> str:
    """The sprite of one embedding, for its line, flagged when the image is not there."""
    if embedding is None or not embedding.sprite.image_path:
        return "no sprite"
    image_path = embedding.sprite.image_path
    path = _existing_asset(report, "sprite", directory, image_path, name)
    if path is None:
        return f"sprite {image_path} missing"
    width, height = [*embedding.sprite.single_image_dim, 0, 0][:2]
    return f"sprite {image_path} ({width}x{height} thumbnails)"
