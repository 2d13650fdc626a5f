"""The hparams check: the settings a run logged and the experiment's hparams and metrics."""

from tensorboard.plugins.hparams import metadata as hparams_metadata

from tools.inspect_logdir.findings import RunReport, names


def report_hparams(accumulator, hparams_tags: list[str], report: RunReport) -> None:
    """Lists the hparams of a run (`hparams.hp.hparams`) and of an experiment's definition."""
    for tag in hparams_tags:
        content = accumulator.SummaryMetadata(tag).plugin_data.content
        if tag == hparams_metadata.SESSION_START_INFO_TAG:
            start = hparams_metadata.parse_session_start_info_plugin_data(content)
            hparam_names = sorted(start.hparams)
            report.lines.append(f"hparams ({len(hparam_names)}): {names(hparam_names)}")
        elif tag == hparams_metadata.EXPERIMENT_TAG:
            experiment = hparams_metadata.parse_experiment_plugin_data(content)
            report.lines.append(
                f"hparams experiment: {len(experiment.hparam_infos)} hparams, "
                f"{len(experiment.metric_infos)} metrics"
            )
