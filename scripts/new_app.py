"""Copies an app to start a new one: `make new-app NAME=my_app FROM=regression_tape`.

Copies `apps/<FROM>/` to `apps/<NAME>/` and the app's tests (`tests/test_<FROM>.py`,
`tests/test_<FROM>_cli.py`) to `tests/test_<NAME>*.py`, replacing the app's name everywhere in
them: module paths (`apps.<FROM>`), the model's name (so TensorBoard tags read `keras/<NAME>`), the
default logdir (`logs/<NAME>`). The copy's README is written anew, not copied: how to run the new
app, how it fits the loop in `common/`, and the source README's "Make it yours" list of what is
particular to the source task; none of the source app's wording, logdirs, links or results. The
copy runs at once (`python -m apps.<NAME>`) and its tests are part of `make test`.

Nothing is written unless everything can be: the copy is assembled in a temporary folder and moved
into place last. A bad or taken NAME is refused with one line and exit code 2.
"""

import argparse
import keyword
import pathlib
import re
import shutil
import sys
import tempfile

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
RESERVED_NAMES = {"apps", "common", "tests", "scripts", "test", "main"}
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".json"}
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


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
stops, tf.distribute) is `common.training_loop` and needs no change.

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
lists the hooks for more: extra scalars, eval summaries, a switch at a given step.

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


def create_app(name: str, source: str, root: pathlib.Path) -> list[pathlib.Path]:
    """Creates apps/<name> and its tests from apps/<source>; returns the paths it created."""
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

        created = [root / "apps" / name]
        shutil.move(staged_app, created[0])
        for staged in staged_tests:
            created.append(root / "tests" / staged.name)
            shutil.move(staged, created[-1])
    return created


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the new app's name, lower_snake_case")
    parser.add_argument("--from", dest="source", default="mnist_mlp", help="the app to copy")
    parser.add_argument("--root", type=pathlib.Path, default=REPO_ROOT, help="repository root")
    args = parser.parse_args()
    try:
        created = create_app(args.name, args.source, args.root)
    except NewAppError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    for path in created:
        print(f"created {path.relative_to(args.root)}")
    print(
        f"run it:  make run APP={args.name}   (or: .venv/bin/python -m apps.{args.name})\n"
        f"test it: .venv/bin/python -m pytest tests/test_{args.name}.py\n"
        f"then make it yours: apps/{args.name}/README.md lists what to replace"
    )


if __name__ == "__main__":
    main()
