"""README.md's "Bring your own loop" block, run as it is, and what TensorBoard shows of it.

The README's code is what users copy; this test extracts that exact block and runs it in a fresh
folder, then reads the event files back through TensorBoard's loader and `make inspect`.
"""

import pathlib
import re
import runpy

from tests import tensorboard_events as events
from tools import inspect_logdir

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def own_loop_block() -> str:
    """The first ```python block of the README's "## Bring your own loop" section."""
    section = README.read_text().split("\n## Bring your own loop\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return block


def test_the_readmes_own_loop_writes_every_graph_view_and_the_histograms(
    tmp_path, monkeypatch, caplog
):
    # A file of its own, as a user's script is: autograph reads a tf.function's source from it.
    script = tmp_path / "my_loop.py"
    script.write_text(own_loop_block())
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")

    assert not [record for record in caplog.records if record.levelname == "WARNING"]
    run = events.load_run(tmp_path / "logs/my_loop/train")
    plugins = events.tags_by_plugin(run)
    assert plugins[events.OP_GRAPH_PLUGIN] == ["graph/train_step"]
    assert events.function_graph_count(run, "graph/train_step") == 1
    assert {"MatMul", "ReluGrad", "BiasAddGrad", "AssignSubVariableOp", "Sqrt"} <= events.op_types(
        events.op_graph(run, "graph/train_step")
    )
    nodes = {node.name for node in events.conceptual_graph(run, "keras/my_model").node}
    assert {"my_model/features", "my_model/hidden", "my_model/logits"} <= nodes
    assert "hidden (Dense)" in events.text(run, "model_summary/my_model")
    losses = events.scalars(run, "loss")
    assert [step for step, _ in losses] == [50, 100] and losses[1][1] < losses[0][1]
    variables = [f"{layer}/{name}" for layer in ("hidden", "logits") for name in ("bias", "kernel")]
    assert sorted(plugins["histograms"]) == [
        f"{kind}/{variable}" for kind in ("gradients", "weights") for variable in variables
    ]
    assert [event.step for event in run.Tensors("weights/hidden/kernel")] == [50, 100]
    assert inspect_logdir.inspect_logdir(str(tmp_path / "logs/my_loop"))[1] == []
