"""Settings have one home: each app's `config.py`, from which `main.py` defines its flags."""

import dataclasses
import re
import subprocess
import sys

import pytest

from common import settings
from tests.app_cli import REPO_ROOT, assert_one_line_error, run_app

APPS = ("mnist_mlp", "regression_tape", "conditional_dropout", "vae_timeseries")
SHARED_FLAGS = ("logdir", "num_steps", "batch_size", "learning_rate", "seed")

CHECK_DEFAULTS = """
import sys
from apps.{app} import config, main
from common import cli
main.FLAGS(["{app}"])
assert cli.config_from_flags(config.Config) == config.Config(), cli.config_from_flags(config.Config)
assert main.FLAGS.logdir == "logs/{app}", main.FLAGS.logdir
assert "tensorflow" not in sys.modules, "the flags must parse before TensorFlow is imported"
print("ok")
"""


@pytest.mark.parametrize("app", APPS)
def test_flag_defaults_are_the_config_defaults_and_parse_without_tensorflow(app):
    result = subprocess.run(
        [sys.executable, "-c", CHECK_DEFAULTS.format(app=app)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("app", APPS)
def test_helpshort_exits_0_and_lists_every_flag(app):
    result = run_app(app, "--helpshort")
    assert result.returncode == 0, result.stderr
    config = __import__(f"apps.{app}.config", fromlist=["Config"]).Config
    for name in (*SHARED_FLAGS, *(field.name for field in dataclasses.fields(config))):
        assert f"--{name}:" in result.stdout or f"--[no]{name}:" in result.stdout, name
    assert "--strategy:" in result.stdout and "--num_cpu_devices:" in result.stdout


def test_every_app_shares_the_loop_settings():
    for app in APPS:
        config = __import__(f"apps.{app}.config", fromlist=["Config"]).Config
        assert issubclass(config, settings.TrainingSettings), app
        # A field that only changes a default keeps the shared help text and bounds.
        assert settings.field_metadata(config, "num_steps")["lower_bound"] == 1


def test_a_field_without_help_text_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Broken(settings.TrainingSettings):
        undocumented: int = 3

    with pytest.raises(TypeError, match="undocumented has no help text"):
        settings.field_metadata(Broken, "undocumented")


@pytest.mark.parametrize("app", APPS)
def test_the_readme_flag_table_lists_every_flag_with_its_default(app):
    config = __import__(f"apps.{app}.config", fromlist=["Config"]).Config
    readme = (REPO_ROOT / "apps" / app / "README.md").read_text()
    rows = {
        name: cell.strip().strip("`")
        for name, cell in re.findall(r"^\| `--(\w+)` \| ([^|]*)", readme, re.M)
    }
    assert set(rows) == {"logdir", *(field.name for field in dataclasses.fields(config))}
    assert rows["logdir"] == f"logs/{app}"
    for field in dataclasses.fields(config):
        cell = rows[field.name]
        if field.default is None:  # Described in words: "(synthetic)", "tfds default".
            continue
        if isinstance(field.default, bool):
            assert cell == str(field.default).lower(), field.name
        elif isinstance(field.default, int | float):
            assert float(cell) == field.default, field.name
        else:
            assert cell == field.default, field.name


@pytest.mark.parametrize(
    ("app", "flag", "culprit"),
    [
        # An empty logdir would put train/ and eval/ at the filesystem's root.
        ("regression_tape", "--logdir=", "--logdir=: must be a non-empty UTF-8 path"),
        ("regression_tape", "--logdir=   ", "must be a non-empty UTF-8 path"),
        # Seeds go to numpy, which takes 32 bits; steps to an int64 counter.
        ("regression_tape", "--seed=4294967296", "--seed=4294967296"),
        ("mnist_mlp", "--num_steps=100000000000000000000", "--num_steps=100000000000000000000"),
        # Widths that would ask for terabytes are refused before TensorFlow allocates them.
        ("mnist_mlp", "--hidden_units=1000000000", "--hidden_units=1000000000"),
        ("vae_timeseries", "--latent_dim=100000000", "--latent_dim=100000000"),
        ("vae_timeseries", "--window_length=30", "must be a multiple of 4"),
        ("conditional_dropout", "--dropout_rate=1", "must be in [0, 1)"),
        ("conditional_dropout", "--jit_compile", "--strategy=default only"),
        # A policy name Keras has but the setting does not offer (float16 alone: no float32
        # variables, no loss scaling).
        ("vae_timeseries", "--mixed_precision=float16", "none|mixed_float16|mixed_bfloat16"),
    ],
)
def test_out_of_range_flags_fail_in_one_line_before_tensorflow_loads(app, flag, culprit, tmp_path):
    logdir = () if flag.startswith("--logdir") else (f"--logdir={tmp_path / 'never'}",)
    extra = ("--strategy=mirrored",) if flag == "--jit_compile" else ()
    result = run_app(app, flag, *extra, *logdir)
    assert_one_line_error(result, 2, culprit)
    assert result.stderr.count("\n") == 1  # The whole of stderr is that line.
    assert not (tmp_path / "never").exists()
