"""Copies an app to start a new one: `make new-app NAME=my_app FROM=regression_tape`.

Copies `apps/<FROM>/` to `apps/<NAME>/` and the app's tests (`tests/test_<FROM>.py`,
`tests/test_<FROM>_cli.py`) to `tests/test_<NAME>*.py`, replacing the app's name everywhere in
them: module paths (`apps.<FROM>`), the model's name (so TensorBoard tags read `keras/<NAME>`), the
default logdir (`logs/<NAME>`). The copy's README is written anew, not copied: how to run the new
app, how it fits the loop in `common/`, and the source README's "Make it yours" list of what is
particular to the source task; none of the source app's wording, logdirs, links or results. The
copy runs at once (`python -m apps.<NAME>`) and its tests are part of `make test`.

The copy describes itself as the new app: the module docstrings of its `__init__.py`, `main.py`
(which `--helpshort` prints first) and `config.py` are written for it, and those of `model.py`,
`data.py` and `train.py` open with a `TODO(you):` marker where the user describes their model,
data and task, followed by the source's description, quoted as what the copied code still does.
The copied tests that assert on the source's model, data or task (`TIED_TESTS`) are named, with
what each asserts on, in the script's output, in each copied test file's header and above each
such test: those are the ones to rewrite; the others hold for any model.

Nothing is written unless everything can be: the copy is assembled in a temporary folder and moved
into place last. A bad or taken NAME is refused with one line and exit code 2.
"""

import argparse
import ast
import keyword
import pathlib
import re
import shutil
import sys
import tempfile
import textwrap

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# Run as a script (`make new-app`), the repository is not on sys.path; the list of tied tests is
# beside this file.
sys.path.insert(0, str(REPO_ROOT))

from scripts.new_app_tied_tests import TIED_TESTS

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
RESERVED_NAMES = {"apps", "common", "tests", "scripts", "test", "main"}
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".json"}
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")
LINE_LENGTH = 100  # `make lint`'s (pyproject.toml): what the copy writes must pass it.


class NewAppError(Exception):
    """A reason not to create the app, in one line."""


def check_name(name: str, root: pathlib.Path) -> None:
    """Raises NewAppError unless `name` is a new, importable, lower_snake_case app name."""
    if not NAME_PATTERN.fullmatch(name):
        raise NewAppError(
            f"NAME={name!r} is not a valid app name: use lower_snake_case, starting with a "
            "letter, at most 40 characters (it becomes a Python module)"
        )
    if keyword.iskeyword(name) or name in RESERVED_NAMES:
        raise NewAppError(f"NAME={name!r} is reserved; choose another")
    if (root / "apps" / name).exists():
        raise NewAppError(f"NAME={name!r}: apps/{name} already exists")
    for test_file in (f"test_{name}.py", f"test_{name}_cli.py"):
        if (root / "tests" / test_file).exists():
            raise NewAppError(f"NAME={name!r}: tests/{test_file} already exists")


README_TEMPLATE = """\
# `{name}`

A new app, copied from one of this repository's with `make new-app`: it trains and logs as its
source did until you change it. What is particular to the source task is listed under "Make it
yours"; the outer loop (the graph trace, loops, summaries, eval, checkpoints, resume, signals, NaN
stops, tf.distribute) is `common.loop.training_loop` and needs no change.

## Run it

```sh
make run APP={name}                               # logs in logs/{name}; again: resumes
make run APP={name} ARGS="--num_steps=200"
.venv/bin/python -m apps.{name} --helpshort       # every flag, with its default
make tensorboard                                  # then http://localhost:6006
.venv/bin/python -m pytest tests/test_{name}.py tests/test_{name}_cli.py
```

## How it fits together

- `config.py`: the settings in one home, the defaults that differ from `common/settings.py` and
  the app's own fields; `main.py` makes a flag of each.
- `model.py`: the Keras model. `data.py`: `load_datasets`, unbatched train and eval examples.
- `train.py`: `create_state` (model, optimizer, metrics), `train_step` and `eval_step` (one
  replica's share of a batch), and `train_and_evaluate`, which hands them to the shared loop:

```python
strategy = training_loop.create_strategy(config)
with strategy.scope():
    state = create_state(config)  # Every variable mirrored on every replica.
return training_loop.run(config, logdir, state, train_step, eval_step, load_datasets)
```

`training_loop.run` traces step one into the Graphs tab, runs `--steps_per_loop` steps per
`tf.function` call, logs the train metrics under their keys in `create_state` at every loop
boundary and the eval metrics every `--eval_every_steps`, checkpoints, and resumes. Its docstring
lists what an app adds: actions (extra scalars, a switch at a given step), its own eval summaries.

## Make it yours

{make_it_yours}

## Expected results

Not measured yet. Once it learns, record here the config, the steps, the machine, the wall time
and the final metrics (the run's `final:` line), as the other apps' READMEs do.
"""


def make_it_yours(source_readme: str) -> str:
    """The body of the source README's "## Make it yours" section: what is particular to it."""
    match = re.search(r"^## Make it yours\n\n(.*?)(?=^## |\Z)", source_readme, re.M | re.S)
    if match is None:
        raise NewAppError("the source app's README has no '## Make it yours' section to copy")
    return match.group(1).strip()


def rename_in_text(text: str, source: str, name: str) -> str:
    """Replaces the source app's name, and its `make run-<x>` target, with the new app's."""
    text = re.sub(r"make run-[a-z]+", f"make run APP={name}", text)
    return re.sub(rf"\b{re.escape(source)}\b", name, text)


# Where the user must describe what is theirs: one marker, easy to find (`grep -rn "TODO(you)"`).
MARKER = "TODO(you)"
# The module docstrings the copy gets, by file: written for the new app, each line short enough
# for any NAME. `{source_doc}` is the source's docstring (renamed), quoted as what the copied code
# still does.
DOCSTRINGS = {
    "__init__.py": "The {name} app.\n\n{marker}: what this app trains, in a line or two.\n",
    "main.py": """Command line of the {name} app:
flags -> a frozen `Config` -> `train.train_and_evaluate`.

{marker}: what this app trains, in a sentence or two: `--helpshort` prints this text first.

python -m apps.{name} --num_steps=1000 --logdir=logs/{name}
python -m apps.{name} --helpshort    # every flag, with its default and help
""",
    "config.py": """The {name} app's settings:
one home, from which main.py makes its flags (no TensorFlow).
""",
    "model.py": """The model of {name}.

{marker}: describe your model: its inputs, its layers and its outputs.

Until you replace it, it is the model of the app this one was copied from, described there as:

{source_doc}
""",
    "data.py": """The data of {name}.

{marker}: describe your data: where it comes from, and what one example is.

Until you replace it, it is the data of the app this one was copied from, described there as:

{source_doc}
""",
    "train.py": """Trains {name}.

{marker}: describe the task: the loss, what the step measures, what lands in the logdir.

Until you change them, the loss, the steps and the summaries are those of the app this one was
copied from, described there as:

{source_doc}
""",
}


def rewrite_docstring(path: pathlib.Path, name: str) -> None:
    """Gives `path` (a copied app module, already renamed) the module docstring of `DOCSTRINGS`."""
    template = DOCSTRINGS.get(path.name)
    if template is None:
        return
    text = path.read_text()
    tree = ast.parse(text)
    source_doc = (ast.get_docstring(tree, clean=True) or "").strip()
    # Quoted as it is, lines unindented: they keep their length, which `make lint` checks.
    docstring = template.format(name=name, marker=MARKER, source_doc=source_doc)
    if '"""' in docstring or "\\" in docstring:
        raise NewAppError(f"apps/{name}/{path.name}: its docstring cannot be quoted in the copy's")
    lines = text.splitlines(keepends=True)
    first = tree.body[0] if tree.body else None
    has_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    rest = lines[first.end_lineno :] if has_docstring else lines
    prefix = lines[: first.lineno - 1] if has_docstring else []
    path.write_text("".join(prefix) + f'"""{docstring}"""\n' + "".join(rest))


def mark_tied_tests(path: pathlib.Path, tied: dict[str, str], name: str) -> list[str]:
    """Names the tests of `path` (a copied test file) that `tied` lists: in the file's header
    and above each one. Returns their names, in the file's order."""
    lines = path.read_text().splitlines(keepends=True)
    found = []
    for index in range(len(lines) - 1, -1, -1):
        match = re.match(r"def (test_\w+)\(", lines[index])
        if not match or match.group(1) not in tied:
            continue
        found.insert(0, match.group(1))
        start = index  # Above its decorators: up to the blank line before them.
        while start > 0 and lines[start - 1].strip():
            start -= 1
        comment = textwrap.fill(
            f"{MARKER}: tied to the copied app: asserts on {tied[match.group(1)]}; rewrite it "
            f"for {name}'s own.",
            width=LINE_LENGTH,
            initial_indent="# ",
            subsequent_indent="# ",
        )
        lines.insert(start, comment + "\n")
    if not found:
        return found
    tree = ast.parse("".join(lines))
    first = tree.body[0]
    header = "\n\n" + textwrap.fill(
        f"{MARKER}: of the tests below, these assert on the model, data or task this app was "
        "copied from, and fail once yours differ: rewrite them for yours (each is marked). The "
        "others hold for any model.",
        width=LINE_LENGTH,
    )
    for test in found:
        header += "\n" + textwrap.fill(
            f"{test}: {tied[test]}",
            width=LINE_LENGTH,
            initial_indent="    ",
            subsequent_indent="        ",
        )
    header += "\n"
    end_line = lines[first.end_lineno - 1]
    closing = end_line.rindex('"""')
    lines[first.end_lineno - 1] = end_line[:closing] + header + end_line[closing:]
    path.write_text("".join(lines))
    return found


def create_app(
    name: str, source: str, root: pathlib.Path
) -> tuple[list[pathlib.Path], dict[str, list[str]]]:
    """Creates apps/<name> and its tests from apps/<source>.

    Returns:
        The paths it created, and by copied test file (`tests/test_<name>.py`), the tests in it
        that assert on the source's model, data or task (see `TIED_TESTS`).
    """
    source_dir = root / "apps" / source
    if not NAME_PATTERN.fullmatch(source) or not (source_dir / "train.py").is_file():
        apps = sorted(p.name for p in (root / "apps").iterdir() if (p / "train.py").is_file())
        raise NewAppError(f"FROM={source!r} is not an app; choose one of {', '.join(apps)}")
    check_name(name, root)

    with tempfile.TemporaryDirectory(dir=root / "apps", prefix=".new_app_") as staging:
        staged_app = pathlib.Path(staging) / name
        shutil.copytree(source_dir, staged_app, ignore=IGNORED)
        staged_tests = []
        for suffix in ("", "_cli"):
            test_file = root / "tests" / f"test_{source}{suffix}.py"
            if test_file.is_file():
                staged = pathlib.Path(staging) / f"test_{name}{suffix}.py"
                shutil.copyfile(test_file, staged)
                staged_tests.append(staged)
        readme = staged_app / "README.md"
        readme.write_text(
            README_TEMPLATE.format(name=name, make_it_yours=make_it_yours(readme.read_text()))
        )
        for path in [*staged_app.rglob("*"), *staged_tests]:
            if path.is_file() and path.suffix in TEXT_SUFFIXES:
                path.write_text(rename_in_text(path.read_text(), source, name))
        for path in staged_app.glob("*.py"):
            rewrite_docstring(path, name)
        tied = {}
        for staged in staged_tests:
            found = mark_tied_tests(staged, TIED_TESTS.get(source, {}), name)
            if found:
                tied[f"tests/{staged.name}"] = found

        created = [root / "apps" / name]
        shutil.move(staged_app, created[0])
        for staged in staged_tests:
            created.append(root / "tests" / staged.name)
            shutil.move(staged, created[-1])
    return created, tied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the new app's name, lower_snake_case")
    parser.add_argument("--from", dest="source", default="mnist_mlp", help="the app to copy")
    parser.add_argument("--root", type=pathlib.Path, default=REPO_ROOT, help="repository root")
    args = parser.parse_args()
    try:
        created, tied = create_app(args.name, args.source, args.root)
    except NewAppError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    for path in created:
        print(f"created {path.relative_to(args.root)}")
    print(
        f"run it:  make run APP={args.name}   (or: .venv/bin/python -m apps.{args.name})\n"
        f"test it: .venv/bin/python -m pytest tests/test_{args.name}.py\n"
        f"then make it yours: apps/{args.name}/README.md lists what to replace; describe your "
        f"model, data and task where `grep -rn '{MARKER}' apps/{args.name}` points"
    )
    for test_file, tests in tied.items():
        print(
            f"{len(tests)} tests of {test_file} assert on {args.source}'s model, data or task "
            "and fail once yours differ; rewrite them (each is marked in the file):"
        )
        for test in tests:
            print(f"  {test}: {TIED_TESTS[args.source][test]}")


if __name__ == "__main__":
    main()
