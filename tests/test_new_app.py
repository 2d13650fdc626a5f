"""`make new-app`: a copied app runs at once and its tests pass, in a throwaway copy of the repo."""

import ast
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from scripts import new_app as new_app_script
from tests import tensorboard_events as events
from tests.app_cli import REPO_ROOT, files_and_contents, run_app

SCRIPT = REPO_ROOT / "scripts" / "new_app.py"
PYTEST_IN_ONE_PROCESS = (sys.executable, "-m", "pytest", "-n", "0")


@pytest.fixture
def repo_copy(tmp_path) -> pathlib.Path:
    """The parts of the repository an app needs, copied, so the test never touches the real one."""
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "assets")  # (The MNIST sample is not needed.)
    for folder in ("apps", "common", "tests", "scripts"):
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=ignore)
    shutil.copy(REPO_ROOT / "pyproject.toml", root)
    return root


def new_app(root: pathlib.Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("source", ["mnist_mlp", "conditional_dropout", "vae_timeseries"])
def test_every_app_can_be_copied_with_a_readme_of_its_own(repo_copy, source):
    result = new_app(repo_copy, "my_app", "--from", source)
    assert result.returncode == 0, result.stderr
    readme = (repo_copy / "apps" / "my_app" / "README.md").read_text()
    assert source not in readme and "## Make it yours" in readme
    assert set(re.findall(r"logs/\w+", readme)) == {"logs/my_app"}
    # It describes itself as my_app, and says where the user describes the rest.
    app = repo_copy / "apps" / "my_app"
    for module in ("__init__.py", "main.py", "config.py", "model.py", "data.py", "train.py"):
        docstring = ast.get_docstring(ast.parse((app / module).read_text()))
        assert "my_app" in docstring.splitlines()[0], (module, docstring)
    for module in ("__init__.py", "main.py", "model.py", "data.py", "train.py"):
        assert "TODO(you): " in ast.get_docstring(ast.parse((app / module).read_text())), module
    source_summary = ast.get_docstring(
        ast.parse((REPO_ROOT / "apps" / source / "main.py").read_text())
    )
    help_text = subprocess.run(
        [sys.executable, "-m", "apps.my_app", "--helpshort"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert help_text.startswith("Command line of the my_app app:\n"), help_text[:300]
    assert "TODO(you): what this app trains" in help_text
    assert source_summary.splitlines()[0] not in help_text  # "Command line of the MNIST app".
    # The copied tests that assert on the source's model or data, named in the output.
    tied = new_app_script.TIED_TESTS[source]
    for test in tied:
        assert f"  {test}: {tied[test]}" in result.stdout, test


def test_copy_runs_at_once_and_passes_its_tests(repo_copy):
    result = new_app(repo_copy, "my_app", "--from", "regression_tape")
    assert result.returncode == 0, result.stderr
    app = repo_copy / "apps" / "my_app"
    assert sorted(p.name for p in app.iterdir() if p.is_file()) == [
        "README.md",
        "__init__.py",
        "__main__.py",
        "config.py",
        "data.py",
        "main.py",
        "model.py",
        "train.py",
    ]
    copied = [*app.rglob("*.py"), app / "README.md", *(repo_copy / "tests").glob("test_my_app*.py")]
    assert len(copied) == 10
    for path in copied:
        assert "regression_tape" not in path.read_text(), path
    readme = (app / "README.md").read_text()
    assert readme.startswith("# `my_app`") and "make run APP=my_app" in readme
    # Correct as it stands: no logdir but its own, no link, no results of the source app, and
    # the source task's parts to replace, listed.
    assert set(re.findall(r"logs/\w+", readme)) == {"logs/my_app"}
    assert "](" not in readme and "Not measured yet" in readme
    assert "## Make it yours" in readme and "`per_example_loss` (squared error)" in readme
    assert "noise_std" in readme and "trivial_rmse" in readme
    assert "training_loop.run(config, logdir, state, train_step, eval_step" in readme

    logdir = repo_copy / "logs" / "run"
    run = run_app(
        "my_app", "--num_steps=4", "--steps_per_loop=2", f"--logdir={logdir}", cwd=repo_copy
    )
    assert run.returncode == 0, run.stderr
    train_run = events.load_run(logdir / "train")
    assert "keras/my_app" in events.tags_by_plugin(train_run)[events.KERAS_GRAPH_PLUGIN]
    assert "logs/my_app" in (app / "main.py").read_text()  # Its own default logdir.

    # One file: in one process (-n 0), not in two workers of the copy's pyproject's addopts, each
    # importing TensorFlow beside this suite's own two.
    tests = subprocess.run(
        [*PYTEST_IN_ONE_PROCESS, "-q", "-p", "no:cacheprovider", "tests/test_my_app.py"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout.splitlines()[-1]


def functions_named_test(path: pathlib.Path) -> set[str]:
    return {
        node.name
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def comment_above(text: str, test: str) -> str:
    """The first line of the block of lines (comments, decorators) that ends at `def <test>(`."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"def {test}("))
    while start > 0 and lines[start - 1].strip():
        start -= 1
    return lines[start]


def test_every_app_names_its_tied_tests_and_each_exists():
    apps = sorted(path.parent.name for path in (REPO_ROOT / "apps").glob("*/train.py"))
    assert sorted(new_app_script.TIED_TESTS) == apps
    for app, tied in new_app_script.TIED_TESTS.items():
        tests = functions_named_test(REPO_ROOT / "tests" / f"test_{app}.py")
        tests |= functions_named_test(REPO_ROOT / "tests" / f"test_{app}_cli.py")
        assert set(tied) <= tests, (app, set(tied) - tests)  # A renamed test is renamed here too.


def test_a_copy_with_another_model_fails_only_the_tests_it_names(repo_copy):
    result = new_app(repo_copy, "my_app", "--from", "regression_tape")
    assert result.returncode == 0, result.stderr
    tied = new_app_script.TIED_TESTS["regression_tape"]
    copied_tests = [
        repo_copy / "tests" / "test_my_app.py",
        repo_copy / "tests" / "test_my_app_cli.py",
    ]
    for path in copied_tests:  # Named in the header, and marked above the test itself.
        text = path.read_text()
        header = ast.get_docstring(ast.parse(text))
        for test in functions_named_test(path) & set(tied):
            assert f"\n    {test}: " in header, test
            assert comment_above(text, test).startswith("# TODO(you): tied to the copied app:")
    # A user's model: other layers, other sizes, another activation.
    (repo_copy / "apps" / "my_app" / "model.py").write_text(
        "import keras\n\n"
        "from .data import NUM_FEATURES\n\n\n"
        "def create_model() -> keras.Model:\n"
        "    features = keras.Input(shape=(NUM_FEATURES,), name='features')\n"
        "    hidden = keras.layers.Dense(8, activation='tanh', name='encoder')(features)\n"
        "    prediction = keras.layers.Dense(1, name='output')(hidden)\n"
        "    return keras.Model(inputs=features, outputs=prediction, name='my_app')\n"
    )
    # Every test the copy does not name must hold for it; one it names shows the model is new.
    untied = [
        f"{path.relative_to(repo_copy)}::{test}"
        for path in copied_tests
        for test in sorted(functions_named_test(path) - set(tied))
    ]
    assert untied  # test_rerunning_a_finished_run_says_so_and_touches_nothing, in the CLI file.
    named = "tests/test_my_app.py::test_conceptual_graph_and_model_summary"
    tests = subprocess.run(
        [*PYTEST_IN_ONE_PROCESS, "-q", "-rfE", "-p", "no:cacheprovider", named, *untied],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        timeout=600,
    )
    failed = re.findall(
        r"^(?:FAILED|ERROR) (tests/test_my_app\w*\.py::test_\w+)", tests.stdout, re.M
    )
    assert failed == [named], tests.stdout[-3000:]


@pytest.mark.parametrize(
    ("name", "source", "complaint"),
    [
        ("My-App", "regression_tape", "not a valid app name"),
        ("1st_app", "regression_tape", "not a valid app name"),
        ("class", "regression_tape", "reserved"),
        ("common", "regression_tape", "reserved"),
        ("mnist_mlp", "regression_tape", "apps/mnist_mlp already exists"),
        ("my_app", "no_such_app", "is not an app"),
        ("my_app", "../common", "is not an app"),
    ],
)
def test_bad_or_taken_names_are_refused_and_nothing_is_written(repo_copy, name, source, complaint):
    before = files_and_contents(repo_copy)
    result = new_app(repo_copy, name, "--from", source)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert complaint in result.stderr
    assert files_and_contents(repo_copy) == before
