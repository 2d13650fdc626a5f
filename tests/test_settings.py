"""Settings have one home: each app's `config.py`, from which `main.py` defines its flags."""

import dataclasses
import subprocess
import sys

import pytest

from common import settings
from tests.app_cli import REPO_ROOT, run_app

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
