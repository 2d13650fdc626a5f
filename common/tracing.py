"""`tf.function`s made anew for every run, without TensorFlow's false "retracing" warning.

TensorFlow warns "5 out of the last 5 calls to <function ...> triggered tf.function retracing" when
5 of the last 10 or so calls traced, and it counts calls per Python *code object*, over every
`tf.function` made from it. A loop that defines its step functions (or builds its readers and
writers) afresh for every run, as it must for a new model, traces each of them once; but a process
that trains several runs (`make results`, `make bench`, a notebook) makes many functions from one
`def`, and those calling a function only a few times per run (the train step, called once in
Python for its graph trace) add up to the warning, though nothing was ever traced twice.

`per_run_function` wraps the Python function in a `functools.partial`: TensorFlow's counter keys a
callable without code of its own by the callable itself, so each run's function is counted alone,
and a warning then means real retracing (new shapes, new Python values).
"""

import functools
from collections.abc import Callable

import tensorflow as tf


def per_run_function(
    python_function: Callable, **tf_function_options: object
) -> tf.types.experimental.PolymorphicFunction:
    """`tf.function(python_function, **tf_function_options)`, counted alone for retracing.

    Args:
        python_function: a function or a `functools.partial` (AutoGraph converts it as usual).
        **tf_function_options: passed to `tf.function` (`jit_compile`, `input_signature`, ...).

    Returns:
        The `tf.function`; its graphs are named after `python_function`, as `tf.function`'s are.
    """
    wrapper = functools.partial(python_function)  # No __code__, __func__ or __wrapped__: see above.
    named = getattr(python_function, "func", python_function)  # A partial's own function.
    wrapper.__name__ = getattr(named, "__name__", type(named).__name__)
    wrapper.__qualname__ = getattr(named, "__qualname__", wrapper.__name__)
    wrapper.__doc__ = getattr(named, "__doc__", None)
    return tf.function(wrapper, **tf_function_options)


class EagerThenTraced:
    """Calls a function eagerly for its first `eager_calls` calls, then as a `tf.function`.

    For the few small calls a loop makes at every boundary (reading the metrics, writing the
    scalars): in one `tf.function` call each costs 0.3 to 0.5 ms on 2 CPU cores against 0.6 to
    2.5 ms eagerly, but the function takes 15 to 35 ms to trace. A default run's 6 to 20
    boundaries never pay the trace back; a long run's hundreds would pay 5% of a tiny model's loop
    time eagerly. So: eager while it is cheaper, traced (once) after.
    """

    def __init__(self, python_function: Callable, eager_calls: int = 20) -> None:
        """Args:
        python_function: what to call; no Python control flow on tensors, as it is traced
            without AutoGraph, whose conversion is most of such a function's trace (60-70 ms with
            it, 15-35 without).
        eager_calls: how many first calls run eagerly.
        """
        self._python_function = python_function
        self._traced = per_run_function(python_function, autograph=False)
        self._eager_calls_left = eager_calls

    def __call__(self, *args: object) -> object:
        if self._eager_calls_left > 0:
            self._eager_calls_left -= 1
            return self._python_function(*args)
        return self._traced(*args)

    @property
    def tracing_count(self) -> int:
        """How often the `tf.function` was traced: 0 while eager, then 1 per input signature."""
        return self._traced.experimental_get_tracing_count()
