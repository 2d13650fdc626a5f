"""Copies an app to start a new one: `make new-app NAME=my_app FROM=regression_tape`.

Copies `apps/<FROM>/` to `apps/<NAME>/` and the app's tests (`tests/test_<FROM>.py`,
`tests/test_<FROM>_cli.py`) to `tests/test_<NAME>*.py`, replacing the app's name everywhere in
them: module paths (`apps.<FROM>`), the model's name (so TensorBoard tags read `keras/<NAME>`), the
default logdir (`logs/<NAME>`), the README title. `make run-...` in the README becomes
`make run APP=<NAME>`. The copy runs at once (`python -m apps.<NAME>`) and its tests are part of
`make test`.

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


def rename_in_text(text: str, source: str, name: str) -> str:
    """Replaces the source app's name, and its `make run-<x>` target, with the new app's, and
    drops the README's links to the source app's screenshots (the copy has none yet)."""
    text = re.sub(r"^Screenshots from `make screenshots`:.*\n\n?", "", text, flags=re.MULTILINE)
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
        f"test it: .venv/bin/python -m pytest tests/test_{args.name}.py"
    )


if __name__ == "__main__":
    main()
