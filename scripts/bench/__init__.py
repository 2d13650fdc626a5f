"""`make bench`: how fast is this repo's GradientTape loop, against model.fit and the usual loops?

For each workload (an app's model, its loss, its batch size, synthetic data of its shape, fed by the
apps' own input pipeline), it measures, in one process, on the same model, data and batch size:

  eager                 a Python loop over an eager GradientTape step
  step_function         a Python loop calling a per-step tf.function
  step_function_record_if  the same with a scalar summary under record_if every 100 steps, inside
                        the step: the popular way to log from a custom loop
  repo_loop             this repo's loop, not a copy: the app's own TrainState and train step
                        (its create_state and train_step) run by common.loop.training_loop, the
                        app's
                        default steps_per_loop steps per tf.function call, and at each boundary
                        the NaN check, the train metrics read and reset and the train scalars
                        written, as training_loop.run does them
  repo_loop_no_summaries  the same with no summary written: the summaries' cost is the difference
  repo_loop_1000        steps_per_loop=1000: what a longer loop buys
  repo_loop_jit         repo_loop with the step XLA-compiled (`--jit_compile`)
  repo_loop_textbook_pipeline  repo_loop fed by `cache().shuffle().repeat().batch()` instead of
                        the apps' pipeline (common.loop.input_pipeline): what that pipeline buys
  fit                   model.fit, defaults (Keras 3 on TensorFlow resolves jit_compile to False)
  fit_spe32             model.fit with steps_per_execution=32, the baseline of the ratios
  fit_spe32_jit         model.fit with steps_per_execution=32 and jit_compile=True
  fit_spe32_textbook_pipeline  fit_spe32 fed by the textbook pipeline
  ceiling_one_batch     the bare step (model, loss, gradients, optimizer update; no metrics, step
                        counter or checks) on one batch held in memory, 1000 steps per
                        tf.function call: no input pipeline at all. What a loop of this model
                        can reach on this machine, so it bounds every ratio above
  ceiling_fed           the same bare step fed a fresh batch per step by the apps' pipeline, as
                        repo_loop is fed, 1000 steps per call: against the ceiling, what fresh
                        batches cost
  app_step_one_batch    the app's own train step (make_train_step: metrics, NaN check, global
                        step, strategy.run) on one batch in memory, 1000 steps per call: against
                        the ceiling, what the step's extras cost. With ceiling_fed, what bounds
                        repo_loop's share of the ceiling

`model.fit` gets the same model and loss the Keras way; for the VAE, whose loss needs the encoder's
mean and log-variance, the KL term is a layer's `add_loss`, the usual way to fit a VAE without a
custom train step.

Each measurement warms up first (tracing and the data cache are not timed), then times `--steps`
steps; methods are interleaved round-robin over `--repeats` rounds, and the median is reported, so
drift on a shared machine hits them all alike. The result is ratios within this run; the absolute
numbers are this machine's, named in the output. It also measures the one-time cost of the graph
trace (common.summaries.graphs.trace_step_graph) and a float32 matmul's throughput as the machine's
ceiling.

Then, end to end (`--end_to_end_pairs`, default 3; 0 skips it): each app's own command at its
defaults, as a user runs it (whole process: TensorFlow's import, the graph trace, evals,
histograms, checkpoints), against `scripts/fit_baseline.py` doing the same work with `model.fit`
(same model, data, steps, eval cadence, TensorBoard callback with histograms, BackupAndRestore),
alternated; and where the app's time goes, from the `time:` line each run prints
(common.loop.phase_times): start-up before the run's clock, then each phase, and the boundary work
(evals, eval summaries, boundaries, checkpoints, close) against the issue's targets.

Usage: python -m scripts.bench [--steps 2000] [--repeats 3] [--workloads mnist_mlp,vae_timeseries]
       [--output results/bench.json] [--end_to_end_pairs 3] [--end_to_end_steps N]
       [--end_to_end_apps mnist_mlp,regression_tape]

The package, one module per job: `workloads` (each app's problem; `fit_models`, the VAE the Keras
way, which `scripts/fit_baseline.py` also uses), `methods` (each loop timed), `loop_rows` (the
methods in rounds, per workload), `end_to_end` and `eval_summaries` (whole processes, through
`processes`), `tables` (what is printed), `cli` (the flags, the JSON); `__main__` imports
TensorFlow quietly first.
"""
