"""Inspecting a logdir: every run read and checked, in the order its report lists them.

Per run (every folder holding event files): op graphs with their node counts, conceptual (Keras)
graphs, scalar tags with their step ranges and point counts, histograms, images, text, hparams, run
metadata, profile data, any other plugin's tags, then the Projector's embeddings; then the checks
over every stepped tag.
"""

import os

from tensorboard.backend.event_processing import event_accumulator

from tools.inspect_logdir import events
from tools.inspect_logdir.findings import Finding, RunReport, names
from tools.inspect_logdir.graphs import report_conceptual_graphs, report_op_graphs
from tools.inspect_logdir.hparams import report_hparams
from tools.inspect_logdir.layout import find_debugger_dumps, find_runs, run_name
from tools.inspect_logdir.projector import report_projector
from tools.inspect_logdir.steps import (
    check_steps,
    check_train_and_eval_mixed,
    report_scalars,
    stepped_lines,
)


def inspect_logdir(logdir: str) -> tuple[list[RunReport], list[Finding]]:
    """Reads every run under `logdir` and checks it.

    Args:
        logdir: an existing folder, laid out as TensorBoard's `--logdir` expects.

    Returns:
        One report per run, and every finding (those of the runs, and `no-event-files`).
    """
    reports = [
        inspect_run(directory, run_name(logdir, directory)) for directory in find_runs(logdir)
    ]
    findings = [finding for report in reports for finding in report.findings]
    if not reports and not find_debugger_dumps(logdir):
        findings.append(Finding("no-event-files", ".", f"no event files under {logdir}"))
    return reports, findings


def inspect_run(directory: str, name: str) -> RunReport:
    """What TensorBoard will show for the run in `directory`, and the mistakes found in it."""
    report = RunReport(name)
    odd = events.odd_event_files(directory)
    if odd:  # Read without opening: the loader would hang on a FIFO, or fail on the others.
        for entry, reason in odd.items():
            report.flag("not-an-event-file", f"{entry} {reason}; the run was not read")
        return report
    accumulator = events.load_run(directory)
    tags = accumulator.Tags()
    by_plugin = events.tags_by_plugin(accumulator)

    report_op_graphs(accumulator, tags, by_plugin[events.OP_GRAPH_PLUGIN], report)
    report_conceptual_graphs(accumulator, by_plugin[events.KERAS_GRAPH_PLUGIN], report)
    scalar_points = events.scalar_points(accumulator, by_plugin[events.SCALARS_PLUGIN])
    report_scalars(scalar_points, report)
    stepped = {tag: [step for step, _ in points] for tag, points in scalar_points.items()}
    stepped.update(_report_histograms_and_images(accumulator, tags, by_plugin, report))
    _report_other_plugins(directory, accumulator, tags, by_plugin, report)
    report_projector(directory, report)

    check_steps(stepped, report)
    check_train_and_eval_mixed(list(scalar_points), report)
    return report


def _report_histograms_and_images(
    accumulator: event_accumulator.EventAccumulator,
    tags: dict,
    by_plugin: dict[str, list[str]],
    report: RunReport,
) -> dict[str, list[int]]:
    """Lists the histograms and images, TF2's and TF1's, and returns their steps for the step
    checks, each tag named after its plugin (`histograms <tag>`), apart from the scalars'."""
    stepped = {}
    for plugin, legacy_kind in (
        (events.HISTOGRAMS_PLUGIN, "histograms"),
        (events.IMAGES_PLUGIN, "images"),
    ):
        plugin_tags = {tag: events.tensor_steps(accumulator, tag) for tag in by_plugin[plugin]}
        legacy_tags = {
            tag: events.legacy_steps(accumulator, legacy_kind, tag) for tag in tags[legacy_kind]
        }
        plugin_steps = {**plugin_tags, **legacy_tags}
        report.lines.extend(stepped_lines(plugin, plugin_steps))
        stepped.update({f"{plugin} {tag}": steps for tag, steps in plugin_steps.items()})
    return stepped


def _report_other_plugins(
    directory: str,
    accumulator: event_accumulator.EventAccumulator,
    tags: dict,
    by_plugin: dict[str, list[str]],
    report: RunReport,
) -> None:
    """Lists the text, the hparams, the run metadata, the profile sessions and the tags of every
    plugin the doctor does not read."""
    text_tags = by_plugin[events.TEXT_PLUGIN]
    if text_tags:
        report.lines.append(f"text ({len(text_tags)}): {names(sorted(text_tags))}")
    report_hparams(accumulator, by_plugin[events.HPARAMS_PLUGIN], report)
    if by_plugin[events.RUN_METADATA_PLUGIN] or tags["run_metadata"]:
        run_metadata_tags = by_plugin[events.RUN_METADATA_PLUGIN] + tags["run_metadata"]
        report.lines.append(f"run metadata (compute time, memory): {names(run_metadata_tags)}")
    profile = os.path.join(directory, "plugins", "profile")
    if os.path.isdir(profile):
        sessions = [entry for entry in os.listdir(profile) if os.path.isdir(f"{profile}/{entry}")]
        report.lines.append(f"profile: {len(sessions)} session(s) in plugins/profile")
    for plugin in sorted(set(by_plugin) - events.KNOWN_PLUGINS):
        plugin_tags = sorted(by_plugin[plugin])
        report.lines.append(f"{plugin or 'no plugin'} ({len(plugin_tags)}): {names(plugin_tags)}")
