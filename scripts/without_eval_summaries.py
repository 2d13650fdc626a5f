"""Runs an app's command with its eval summaries dropped: `make bench`'s baseline for their cost.

    python scripts/without_eval_summaries.py apps.mnist_mlp --logdir=/tmp/run --dataset=synthetic

The same process as `python -m apps.mnist_mlp ...` in every other way: the same flags, model,
data, loops, evals, scalars and checkpoints. Only the jobs the loop hands to the eval summaries'
thread (weight and gradient histograms, the app's on_eval: curves, pictures, embeddings) are
dropped, so the difference between the two runs is what the summaries cost the run. An app's final
metrics drawn from its on_eval (conditional_dropout's `eval/min_loss`) are left out. Counts the
eval step takes for its summaries (PR curves', a confusion matrix's: `common.summaries.metrics`)
are still taken: they are part of the eval, measured with it, and only their drawing is dropped.
"""

import functools
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.loop import training_loop
from common.summaries import background


def main() -> None:
    background.BackgroundWork.submit = lambda self, function, *args: None
    run = training_loop.run

    @functools.wraps(run)
    def run_without_final_metrics_of_on_eval(*args, final_metrics=None, **kwargs):
        def final():
            try:
                return final_metrics() if final_metrics else {}
            except (ValueError, IndexError):  # min() or [0] of what on_eval never kept.
                return {}

        return run(*args, final_metrics=final, **kwargs)

    training_loop.run = run_without_final_metrics_of_on_eval
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
