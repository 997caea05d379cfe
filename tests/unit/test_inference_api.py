"""Each page request of the inference worker asks the same task with the same inputs as its waiting twin.

A ``*_request`` function (followed by a page) and the function that waits for the answer are written
side by side in ``transfer_core/inference/api.py``; when a task gains a parameter, both must pass it,
or the worker fails every request of that page (a merge once left ``settings`` out of one).
"""

from __future__ import annotations

import ast
import inspect

from transfer_core.inference import api, tasks

_SENDERS = {"call", "ask", "request", "peek", "_ask"}


def _task_calls(function) -> list[tuple[str, list[str]]]:
    """``(task name, [argument source, ...])`` of every call that sends a task, in ``function``."""
    tree = ast.parse(inspect.getsource(function).strip())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SENDERS:
            args = node.args[1:] if node.func.id == "_ask" else node.args  # _ask(submit, settings, task, ...)
            name = next(i for i, arg in enumerate(args) if isinstance(arg, ast.Constant) and isinstance(arg.value, str))
            found.append((args[name].value, [ast.unparse(arg) for arg in args[name + 1:]]))
    return found


def _pairs():
    functions = dict(inspect.getmembers(api, inspect.isfunction))
    return [(name, functions[name], functions[f"{name}_request"]) for name in functions
            if f"{name}_request" in functions]


def test_every_request_sends_its_twins_task_and_inputs():
    pairs = _pairs()
    assert len(pairs) >= 8
    for name, waiting, following in pairs:
        (task, waited_args), = _task_calls(waiting)
        for followed_task, followed_args in _task_calls(following):
            assert followed_task == task, name
            assert followed_args == waited_args, f"{name}: {followed_args} != {waited_args}"


def test_every_task_a_page_asks_accepts_what_it_is_sent():
    for name, waiting, _ in _pairs():
        (task, args), = _task_calls(waiting)
        worker_side = inspect.signature(getattr(tasks, task))
        parameters = [p for p in worker_side.parameters.values() if p.name != "progress"]
        required = [p for p in parameters if p.default is inspect.Parameter.empty]
        assert len(required) <= len(args) <= len(parameters), f"{name}: sends {args}, {task}{worker_side}"
