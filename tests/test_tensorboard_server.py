"""What the dashboards will show, asked of a real `tensorboard` server over its HTTP API.

Every app runs a tiny config into one parent logdir; a TensorBoard server (the one users start with
`make tensorboard`) serves it on a free loopback port. The assertions are on the same JSON and graph
endpoints the Graphs, Scalars, Text, Images, HParams, Profile and Debugger V2 dashboards fetch.
"""

import gzip
import json
import pathlib
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from apps.conditional_dropout import train as dropout_train
from apps.mnist_mlp import train as mnist_train
from apps.regression_tape import train as regression_train
from apps.vae_timeseries import train as vae_train
from common import errors
from scripts import screenshots
from tests import tensorboard_events as events


class Server:
    """GET and POST against a TensorBoard server's HTTP API."""

    def __init__(self, base: str, logdir: pathlib.Path) -> None:
        self.base = base
        self.logdir = logdir  # What it serves, to compare with what the apps wrote.

    def get(self, path: str, **params: str):
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}" if params else self.base + path
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
        if response.headers.get("Content-Encoding") == "gzip":  # The profile plugin's replies.
            body = gzip.decompress(body)
        body = body.decode()
        return (
            json.loads(body) if response.headers.get_content_type() == "application/json" else body
        )

    def get_bytes(self, path: str, **params: str) -> bytes:
        with urllib.request.urlopen(f"{self.base}{path}?{urllib.parse.urlencode(params)}") as body:
            return body.read()

    def post(self, path: str, payload: dict):
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read().decode())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Tiny runs of every app, and a TensorBoard server over them (scripts/screenshots.py's,
    which waits a bounded time for it and always stops it)."""
    logs = tmp_path_factory.mktemp("logs")
    mnist = mnist_train.Config(num_steps=4, batch_size=8, steps_per_loop=2, dataset="synthetic")
    # mnist_a is profiled too: its second loop (steps 3 and 4) is the Profile tab's run.
    mnist_train.train_and_evaluate(
        mnist_train.Config(**{**mnist.__dict__, "profile": True}), str(logs / "mnist_a")
    )
    mnist_train.train_and_evaluate(
        mnist_train.Config(**{**mnist.__dict__, "learning_rate": 0.01}), str(logs / "mnist_b")
    )
    regression_train.train_and_evaluate(
        regression_train.Config(num_steps=4, batch_size=8, steps_per_loop=2),
        str(logs / "regression"),
    )
    dropout_train.train_and_evaluate(
        dropout_train.Config(num_steps=4, batch_size=8, steps_per_loop=2), str(logs / "dropout")
    )
    vae_train.train_and_evaluate(
        vae_train.Config(
            num_steps=4, batch_size=8, steps_per_loop=2, window_length=16, num_channels=4
        ),
        str(logs / "vae"),
    )
    with screenshots.tensorboard_server(str(logs), graph_runs=5) as url:
        yield Server(url, logs)


def test_graphs_dashboard_lists_op_and_conceptual_graphs(server):
    info = server.get("/data/plugin/graphs/info")
    assert set(info) == {
        "mnist_a/train",
        "mnist_b/train",
        "regression/train",
        "dropout/train",
        "vae/train",
    }
    tags = info["dropout/train"]["tags"]
    assert tags["graph/train_step"]["op_graph"] and tags["graph/inference_step"]["op_graph"]
    assert tags["keras/conditional_dropout"]["conceptual_graph"]
    vae_tags = info["vae/train"]["tags"]
    assert (
        vae_tags["keras/encoder"]["conceptual_graph"]
        and vae_tags["keras/decoder"]["conceptual_graph"]
    )


@pytest.mark.parametrize(
    ("run", "tag", "expected"),
    [
        ("mnist_a/train", "graph/train_step", ['op: "MatMul"', 'op: "ReluGrad"']),
        ("regression/train", "graph/train_step", ['op: "MatMul"', 'op: "BiasAddGrad"']),
        ("dropout/train", "graph/inference_step", ['op: "MatMul"']),
        ("vae/train", "graph/train_step", ['op: "Conv2D"', 'op: "Conv2DBackpropFilter"']),
    ],
)
def test_op_graphs_are_served_with_their_ops(server, run, tag, expected):
    graph = server.get("/data/plugin/graphs/graph", run=run, tag=tag)
    for op in expected:
        assert op in graph
    if tag == "graph/inference_step":
        assert "Random" not in graph


def test_conceptual_graph_is_served(server):
    graph = server.get(
        "/data/plugin/graphs/graph", run="mnist_a/train", tag="keras/mnist_mlp", conceptual="true"
    )
    assert 'name: "mnist_mlp/hidden"' in graph and 'name: "mnist_mlp/logits"' in graph


def test_scalars_for_train_and_eval(server):
    tags = server.get("/data/plugin/scalars/tags")
    assert {"loss", "accuracy", "learning_rate", "steps_per_second"} <= set(tags["mnist_a/train"])
    assert {"loss", "accuracy"} <= set(tags["mnist_a/eval"])
    assert {"reconstruction_loss", "kl", "elbo", "beta"} <= set(tags["vae/train"])
    points = server.get("/data/plugin/scalars/scalars", run="mnist_a/eval", tag="loss")
    assert [step for _, step, _ in points] == [4]


def test_text_and_images(server):
    text_tags = server.get("/data/plugin/text/tags")
    assert {"model_summary/mnist_mlp", "config", "dataset"} <= set(text_tags["mnist_a/train"])
    image_tags = server.get("/data/plugin/images/tags")
    assert "reconstructions" in image_tags["vae/eval"]
    assert {"misclassified", "confusion_matrix"} <= set(image_tags["mnist_a/eval"])


def test_hparams_dashboard_compares_the_runs(server):
    experiment = server.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {info["name"] for info in experiment["hparamInfos"]}
    assert {"learning_rate", "num_steps", "batch_size"} <= hparams
    metrics = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert {("eval", "loss"), ("train", "loss")} <= metrics
    groups = server.post(
        "/data/plugin/hparams/session_groups",
        {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN"],
            "startIndex": 0,
            "sliceSize": 100,
        },
    )
    learning_rates = {group["hparams"].get("learning_rate") for group in groups["sessionGroups"]}
    assert {0.001, 0.01} <= learning_rates


def test_profile_tab_serves_the_profiled_loop_with_a_step_marker_per_step(server):
    assert server.get("/data/plugins_listing")["profile"]["enabled"]
    [run] = server.get("/data/plugin/profile/runs")  # mnist_a/train/<time of the capture>
    assert run.startswith("mnist_a/train/")
    tools = server.get("/data/plugin/profile/run_tools", run=run)
    assert {"overview_page", "trace_viewer@", "op_profile", "input_pipeline_analyzer"} <= set(tools)
    [host] = server.get("/data/plugin/profile/hosts", run=run, tag="overview_page")
    overview = server.get(
        "/data/plugin/profile/data", run=run, tag="overview_page", host=host["hostname"]
    )
    step_time_columns = [{column["id"] for column in table.get("cols", [])} for table in overview]
    assert any({"stepnum", "stepTimeMs"} <= columns for columns in step_time_columns)
    # On a CPU-only host xprof builds no step-time rows from the markers (openxla/xprof#282), but
    # it ranks the host's ops, and the trace holds the markers.
    op_stats = server.get(
        "/data/plugin/profile/data", run=run, tag="framework_op_stats", host=host["hostname"]
    )
    assert "MatMul" in json.dumps(op_stats)
    trace = server.get(
        "/data/plugin/profile/data", run=run, tag="trace_viewer", host=host["hostname"]
    )
    events = json.loads(trace) if isinstance(trace, str) else trace
    markers = [
        event["args"]["step_num"] for event in events["traceEvents"] if event.get("name") == "train"
    ]
    assert markers == ["3", "4"]  # One per step of the second loop, numbered by global step.


def test_debugger_v2_alerts_name_the_op_that_first_overflowed(tmp_path):
    diverging = regression_train.Config(
        num_steps=4, batch_size=8, steps_per_loop=2, learning_rate=1e10, debugger=True
    )
    with pytest.raises(errors.NonFiniteLossError):
        regression_train.train_and_evaluate(diverging, str(tmp_path))
    [dump] = (tmp_path / "debugger").iterdir()
    with screenshots.tensorboard_server(str(dump), graph_runs=0) as url:
        debugger = Server(url, dump)
        run = "__default_debugger_run__"  # Debugger V2 reads one dump: the one it is pointed at.
        alerts = {}
        for _ in range(60):  # The plugin reads the dump in the background, once asked.
            if debugger.get("/data/plugin/debugger-v2/runs"):
                alerts = debugger.get(
                    "/data/plugin/debugger-v2/alerts", run=run, begin="0", end="-1"
                )
                if alerts["num_alerts"]:
                    break
            time.sleep(0.5)
        first = alerts["alerts"][0]  # In execution order: the first non-finite tensor.
        index = first["graph_execution_trace_index"]
        [trace] = debugger.get(
            "/data/plugin/debugger-v2/graph_execution/data",
            run=run,
            begin=str(index),
            end=str(index + 1),
        )["graph_executions"]
    assert first["alert_type"] == "InfNanAlert" and first["num_pos_inf"] > 0
    assert (trace["op_type"], trace["op_name"]) == ("Square", "Square")  # The squared error.


def test_custom_scalars_layouts_are_merged_and_their_charts_served(server):
    layout = server.get("/data/plugin/custom_scalars/layout")
    titles = {category["title"] for category in layout["category"]}
    assert {"mnist_mlp", "regression_tape", "conditional_dropout", "vae_timeseries"} <= titles
    chart = server.get("/data/plugin/custom_scalars/scalars", run="vae/eval", tag="^elbo$")
    assert chart["regex_valid"] and [step for _, step, _ in chart["tag_to_events"]["elbo"]] == [4]


def test_gradient_histograms_and_norm_are_served(server):
    assert "gradients/hidden/kernel" in server.get("/data/plugin/histograms/tags")["mnist_a/train"]
    points = server.get(
        "/data/plugin/scalars/scalars", run="vae/train", tag="gradients/global_norm"
    )
    assert [step for _, step, _ in points] == [4]


def test_pr_curves_are_served(server):
    tags = server.get("/data/plugin/pr_curves/tags")
    assert "pr_curve" in tags["dropout/eval"] and "pr_curve/7" in tags["mnist_a/eval"]
    curves = server.get("/data/plugin/pr_curves/pr_curves", run="dropout/eval", tag="pr_curve")
    (entry,) = curves["dropout/eval"]
    assert entry["step"] == 4 and len(entry["precision"]) == len(entry["recall"]) > 1
    assert entry["recall"][0] == 1.0  # Threshold 0: every example predicted positive.


def test_projector_serves_embeddings_labels_and_sprite(server):
    assert {"mnist_a/eval", "vae/eval"} <= set(server.get("/data/plugin/projector/runs"))
    (embedding,) = server.get("/data/plugin/projector/info", run="mnist_a/eval")["embeddings"]
    points, dimensions = embedding["tensorShape"]
    query = {"run": "mnist_a/eval", "name": embedding["tensorName"]}
    tensor = server.get_bytes("/data/plugin/projector/tensor", **query)
    assert len(tensor) == points * dimensions * 4  # float32
    # Read from the tensor file the config names relative to the run, with no checkpoint: the
    # very floats the app wrote.
    _, written, _ = events.projector_embedding(server.logdir / "mnist_a" / "eval")
    assert written.shape == (points, dimensions) and np.isfinite(written).all()
    assert tensor == written.astype(np.float32).tobytes()
    assert not list((server.logdir / "mnist_a" / "eval" / "projector").glob("*.index"))
    assert len(server.get("/data/plugin/projector/metadata", **query).splitlines()) == points
    assert server.get_bytes("/data/plugin/projector/sprite_image", **query)[:4] == b"\x89PNG"
    (vae_embedding,) = server.get("/data/plugin/projector/info", run="vae/eval")["embeddings"]
    assert vae_embedding["tensorShape"][1] == vae_train.Config().latent_dim
