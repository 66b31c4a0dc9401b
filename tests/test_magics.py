"""The IPython magics, through IPython's own test shell (``globalipapp``) with real worker processes.

Errors are asserted with the exact text users read. Cells that need workers
use two (this kind of machine has two cores).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Iterator

import pytest
from IPython.core.error import UsageError
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

import vastnb
from vastnb.magics import VastMagics
from vastnb.magics._export import history_cells

LINE_MAGICS = ["vast_deployment", "vast_status", "vast_logs", "vast_down", "vast_benchmark", "vast_gpus", "vast_export"]
CELL_MAGICS = ["vast_context", "vast_remote", "vast_run"]

COUNTER = '''\
class Counter:
    def __init__(self, label="a"):
        self.label = label

    async def __aenter__(self):
        ns = vastnb.worker_namespace()
        ns["entries"] = ns.get("entries", 0) + 1
        return self

    async def __aexit__(self, *exc):
        pass
'''


MODEL_WITH_ARGUMENTS = textwrap.dedent("""\
    class Model:
        def __init__(self, path, dtype="fp32"):
            self.path, self.dtype = path, dtype

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            pass
    """)


# ====================================================================== fixtures
@pytest.fixture
def ip() -> Iterator[Any]:
    """IPython's test shell with the extension loaded; deployments and names made by the test are removed after it."""
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "vastnb")
    magics = _magics(shell)
    magics._app, magics._var, magics._known = None, "app", {}  # whatever another module's test left selected
    before = set(shell.user_ns)
    shell.user_ns["vastnb"] = vastnb
    yield shell
    apps = {id(a): a for a in list(magics._known.values()) + magics._deployments_in_namespace()}
    for app in apps.values():
        pids = [w.pid for w in app.snapshot().workers if w.pid]
        app.shutdown()
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    for key in set(shell.user_ns) - before:
        del shell.user_ns[key]
    magics._app, magics._var, magics._known = None, "app", {}


def _magics(shell: Any) -> VastMagics:
    return shell.magics_manager.registry["VastMagics"]


@pytest.fixture
def running(ip: Any) -> Any:
    """A deployment with two ready workers, a counting context and a remote function."""
    ip.run_line_magic("vast_deployment", "demo")
    ip.user_ns["app"].configure_autoscaling(cold_workers=2, max_workers=2)
    ip.run_cell_magic("vast_context", "", COUNTER)
    ip.run_cell_magic("vast_remote", "", textwrap.dedent('''\
        import os

        async def whoami():
            ns = vastnb.worker_namespace()
            return os.environ["VASTNB_WORKER_ID"], ns["entries"], app.get_context(Counter).label
        '''))
    _ready(ip.user_ns["app"], 2)
    return ip


def _ready(app: vastnb.Deployment, n: int, timeout: float = 60.0) -> None:
    app.ensure_ready(progress=False)
    deadline = time.monotonic() + timeout
    while sum(w.state.serving for w in app.snapshot().workers) < n:
        assert time.monotonic() < deadline, app.snapshot()
        time.sleep(0.02)


def _usage_error(ip: Any, kind: str, name: str, line: str, cell: str | None = None) -> str:
    with pytest.raises(UsageError) as e:
        if kind == "line":
            ip.run_line_magic(name, line)
        else:
            ip.run_cell_magic(name, line, cell or "pass\n")
    return str(e.value)


def _on_every_worker(fn: Any, n: int) -> set:
    """Call ``fn`` until each of ``n`` workers answered once; the distinct answers."""
    answers = set(fn.map([()] * (4 * n)))
    assert len({a[0] for a in answers}) == n, answers
    return answers


# ====================================================================== loading, help, usage
def test_load_ext_registers_every_magic_and_imports_nothing_heavy() -> None:
    code = textwrap.dedent("""
        import sys
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "vastnb")
        magics = shell.magics_manager.magics
        print(sorted(n for n in magics["line"] if n.startswith("vast_")))
        print(sorted(n for n in magics["cell"] if n.startswith("vast_")))
        print(sorted(m for m in ("ipywidgets", "torch", "vastnb.widgets", "vastnb.export") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.splitlines() == [str(sorted(LINE_MAGICS)), str(sorted(CELL_MAGICS)), "[]"]


def test_unload_removes_the_magics(ip: Any) -> None:
    ip.run_line_magic("unload_ext", "vastnb")
    try:
        assert not [n for n in ip.magics_manager.magics["line"] if n.startswith("vast_")]
        assert not [n for n in ip.magics_manager.magics["cell"] if n.startswith("vast_")]
    finally:
        ip.run_line_magic("load_ext", "vastnb")
    assert "vast_run" in ip.magics_manager.magics["cell"]


@pytest.mark.parametrize("name", LINE_MAGICS + CELL_MAGICS)
def test_every_magic_has_help(ip: Any, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    kind = "line" if name in LINE_MAGICS else "cell"
    result = ip.run_line_magic(name, "--help") if kind == "line" else ip.run_cell_magic(name, "--help", "1/0\n")
    assert result is None
    out = capsys.readouterr().out
    prog = "%" + name if kind == "line" else "%%" + name
    assert out.startswith(f"usage: {prog} [-h]")
    assert "-h, --help  " in out and "show this help and do nothing else" in out
    description = getattr(VastMagics, name).parser.description.strip().splitlines()[0]
    assert f"\n\n{description}\n" in out  # the docstring describes the magic
    assert "::" not in out


def test_code_bodied_magics_do_not_expand_variables(ip: Any) -> None:
    from IPython.core.magic import MAGIC_NO_VAR_EXPAND_ATTR

    assert [getattr(getattr(VastMagics, n), MAGIC_NO_VAR_EXPAND_ATTR, False) for n in CELL_MAGICS] == [True] * 3
    ip.user_ns["HOME_DIR"] = "/should/not/appear"
    ip.run_line_magic("vast_deployment", "demo")
    ip.run_cell("%%vast_remote --benchmark-dataset '[{\"s\": \"$HOME_DIR {HOME_DIR}\"}]'\nasync def f(s):\n    return s\n")
    assert ip.user_ns["f"].options.benchmark_dataset == [{"s": "$HOME_DIR {HOME_DIR}"}]


def test_help_is_in_the_docstring_for_question_mark(ip: Any) -> None:
    doc = VastMagics.vast_run.__doc__
    assert "%vast_run [-h] [--all] [--worker ID] [--push NAMES] [--pull NAMES]" in doc
    assert "--pull NAMES" in doc


@pytest.mark.parametrize(("kind", "name", "line", "expected"), [
    ("cell", "vast_run", "--bogus",
     "%%vast_run: unrecognized arguments: --bogus\n"
     "usage: %%vast_run [-h] [--all] [--worker ID] [--push NAMES] [--pull NAMES]"),
    ("line", "vast_deployment", "demo --backend gcp",
     "%vast_deployment: argument --backend: invalid choice: 'gcp' (choose from 'local', 'vast')\n"
     "usage: %vast_deployment [-h] [--backend {local,vast}] [--tag TAG] [--var NAME]\n"
     "                        [name]"),
    ("cell", "vast_remote", "--retries many",
     "%%vast_remote: argument --retries: invalid int value: 'many'\n"
     "usage: %%vast_remote [-h] [--benchmark-dataset EXPR]\n"
     "                     [--benchmark-generator NAME] [--benchmark-runs N]\n"
     "                     [--workload-calculator NAME] [--allow-parallel-requests]\n"
     "                     [--max-queue-time S] [--retries N] [--timeout S]"),
    ("line", "vast_logs", "w1 w2",
     "%vast_logs: unrecognized arguments: w2\nusage: %vast_logs [-h] [-n N] [worker]"),
    ("line", "vast_status", "--verbose", "%vast_status: unrecognized arguments: --verbose\nusage: %vast_status [-h]"),
    ("cell", "vast_run", "--push 'a",
     "%%vast_run: cannot read the arguments \"--push 'a\" (No closing quotation).\n"
     "usage: %%vast_run [-h] [--all] [--worker ID] [--push NAMES] [--pull NAMES]"),
])
def test_bad_option_shows_the_usage(ip: Any, kind: str, name: str, line: str, expected: str) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    assert _usage_error(ip, kind, name, line) == expected


@pytest.mark.parametrize(("kind", "name"), [
    ("line", "vast_status"), ("line", "vast_logs"), ("line", "vast_down"), ("line", "vast_benchmark"),
    ("line", "vast_gpus"), ("cell", "vast_context"), ("cell", "vast_remote"), ("cell", "vast_run"),
])
def test_magic_before_any_deployment_says_how_to_create_one(ip: Any, kind: str, name: str) -> None:
    prog = ("%" if kind == "line" else "%%") + name
    assert _usage_error(ip, kind, name, "") == (
        f"{prog}: no deployment yet. Create one first with `%vast_deployment NAME` (for example `%vast_deployment demo`)."
    )


def test_usage_errors_display_as_one_short_message(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = ip.run_cell("%vast_status")
    assert isinstance(result.error_in_exec, UsageError)
    err = capsys.readouterr().err
    assert err == (
        "UsageError: %vast_status: no deployment yet. Create one first with `%vast_deployment NAME` "
        "(for example `%vast_deployment demo`).\n"
    )


# ====================================================================== %vast_deployment
def test_vast_deployment_creates_binds_and_reselects(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    app = ip.user_ns["app"]
    assert isinstance(app, vastnb.Deployment) and (app.name, app.backend, app.tag) == ("demo", "local", "default")
    ip.run_line_magic("vast_deployment", "demo")
    assert ip.user_ns["app"] is app
    ip.run_line_magic("vast_deployment", "other --tag blue --var other")
    assert ip.user_ns["other"].tag == "blue" and ip.user_ns["app"] is app
    assert ip.run_line_magic("vast_deployment", "") is ip.user_ns["other"]  # the current one
    assert capsys.readouterr().out.splitlines() == [
        "vastnb: created deployment 'demo' (local backend) as `app`",
        "vastnb: selected deployment 'demo' (local, declared) as `app`",
        "vastnb: created deployment 'other' (local backend) as `other`",
    ]


def test_a_trailing_comment_on_a_magic_line_is_a_comment(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """IPython hands a magic the whole line; a ``#`` that starts a word outside quotes ends it, as in a shell."""
    ip.run_line_magic("vast_deployment", "demo                  # creates `app`")
    assert ip.user_ns["app"].name == "demo"
    ip.run_line_magic("vast_deployment", "other --tag blue#1 --var o #  a comment")
    assert (ip.user_ns["o"].name, ip.user_ns["o"].tag) == ("other", "blue#1")  # inside a word: kept
    ip.run_line_magic("vast_deployment", "demo")
    ip.user_ns["DTYPE"] = "bf16"
    ip.run_cell_magic("vast_context", '"weights.pt", dtype=DTYPE  # the weights (x)', MODEL_WITH_ARGUMENTS)
    assert ip.user_ns["app"]._contexts["Model"][1:] == (("weights.pt",), {"dtype": "bf16"})
    ip.run_cell_magic("vast_remote", "--benchmark-dataset '[{\"x\": \"#2\"}]' --retries 0  # --retries 5",
                      "async def f(x):\n    return x\n")
    assert (ip.user_ns["f"].options.benchmark_dataset, ip.user_ns["f"].options.retries) == ([{"x": "#2"}], 0)
    capsys.readouterr()
    assert ip.run_line_magic("vast_down", "--help   # what does it do?") is None
    assert capsys.readouterr().out.startswith("usage: %vast_down")
    assert ip.user_ns["app"].state != "shut down"
    with pytest.raises(UsageError, match="unrecognized arguments: --nope"):
        ip.run_line_magic("vast_down", "--nope # a comment does not hide a mistake before it")


def test_vast_down_keep_endpoint_is_refused_on_the_local_backend(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    assert _usage_error(ip, "line", "vast_down", "--keep-endpoint") == (
        "%vast_down --keep-endpoint: deployment 'demo' runs on the local backend, whose workers cannot outlive this "
        "kernel. Run %vast_down without --keep-endpoint."
    )
    assert ip.user_ns["app"].state != "shut down"  # refused before anything stopped


def test_vast_deployment_refuses_to_change_an_existing_backend(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    assert _usage_error(ip, "line", "vast_deployment", "demo --backend vast") == (
        "%vast_deployment: deployment 'demo' already exists with --backend local; stop it with %vast_down first "
        "to recreate it with --backend vast."
    )


def test_vast_deployment_after_down_creates_a_new_one(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    old = ip.user_ns["app"]
    ip.run_line_magic("vast_down", "")
    ip.run_line_magic("vast_deployment", "demo")
    assert ip.user_ns["app"] is not old and ip.user_ns["app"].state == "declared"
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "vastnb: created deployment 'demo' (local backend) as `app`",
        "vastnb: the previous one was shut down, so run its %%vast_context and %%vast_remote cells again",
    ]


def test_a_deployment_made_in_python_is_found_without_the_magic(ip: Any) -> None:
    ip.run_cell("import vastnb\nmine = vastnb.Deployment('plain')")
    ip.run_cell_magic("vast_remote", "", "async def f():\n    return 1\n")
    assert list(ip.user_ns["mine"].functions) == ["f"]
    ip.run_cell("yours = vastnb.Deployment('second')")
    _magics(ip)._app = None
    assert _usage_error(ip, "cell", "vast_remote", "", "async def g():\n    pass\n") == (
        "%%vast_remote: the notebook has 2 deployments ('plain', 'second'); select one with %vast_deployment NAME."
    )


# ====================================================================== %%vast_remote
def test_vast_remote_binds_each_async_def_and_keeps_helpers_local(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    ip.user_ns["n"] = 7
    ip.run_cell_magic("vast_remote", "--benchmark-dataset '[{\"x\": n}]' --benchmark-runs 3 --retries 0 --timeout 5", textwrap.dedent("""\
        def helper(x):
            return x + 1

        async def first(x):
            return helper(x)

        async def second(y=1):
            return y
        """))
    app = ip.user_ns["app"]
    first, second = ip.user_ns["first"], ip.user_ns["second"]
    assert isinstance(first, vastnb.RemoteFunction) and isinstance(second, vastnb.RemoteFunction)
    assert not isinstance(ip.user_ns["helper"], vastnb.RemoteFunction)
    assert sorted(app.functions) == ["first", "second"]
    assert (first.options.benchmark_dataset, first.options.benchmark_runs) == ([{"x": 7}], 3)  # `{…}` not expanded
    assert (second.options.benchmark_dataset, second.options.benchmark_runs) == (None, 10)  # benchmark: first only
    assert (first.options.retries, second.options.retries, first.options.timeout, second.options.timeout) == (0, 0, 5.0, 5.0)
    assert first.__module__ == "__main__"  # notebook code, pickled by value


def test_vast_remote_generator_and_calculator_may_come_from_the_cell(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    ip.run_cell_magic("vast_remote", "--benchmark-generator gen --workload-calculator cost --allow-parallel-requests", textwrap.dedent("""\
        def gen():
            return {"x": 3}

        def cost(x):
            return x * 10

        async def f(x):
            return x
        """))
    o = ip.user_ns["f"].options
    assert (o.benchmark_generator, o.workload_calculator, o.allow_parallel_requests) == (ip.user_ns["gen"], ip.user_ns["cost"], True)


def test_vast_remote_without_async_def(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    assert _usage_error(ip, "cell", "vast_remote", "", "x = 1\n") == (
        "%%vast_remote: the cell defines no `async def`. Each top-level `async def` in a %%vast_remote cell "
        "becomes a remote function, for example:\n"
        "    async def square(x):\n"
        "        return x * x"
    )
    assert "x" not in ip.user_ns  # nothing ran


def test_vast_remote_with_a_plain_def_says_make_it_async(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    assert _usage_error(ip, "cell", "vast_remote", "", "def square(x):\n    return x * x\n") == (
        "%%vast_remote: `square` is a plain `def`, but remote functions are coroutines. Make it `async def square(...)`."
    )


def test_vast_remote_syntax_error_has_the_cells_line_numbers(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    n = ip.execution_count
    message = _usage_error(ip, "cell", "vast_remote", "--retries 1", "async def f(x):\n    return x +\n")
    assert message == (
        "%%vast_remote: the cell has a syntax error:\n"
        f"  Cell In[{n}], line 3\n"
        "    return x +\n"
        "              ^\n"
        "SyntaxError: invalid syntax"
    )


def test_vast_remote_bad_declaration_restores_the_old_binding(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    ip.run_cell_magic("vast_remote", "", "async def f(x):\n    return 1\n")
    old = ip.user_ns["f"]
    assert _usage_error(ip, "cell", "vast_remote", "--benchmark-dataset '[{\"y\": 1}]'", "async def f(x):\n    return 2\n") == (
        "%%vast_remote: `benchmark_dataset[0]` of `f` does not match its parameters (x): unknown key(s) 'y'; "
        "missing key(s) 'x'. Use the parameter names as keys."
    )
    assert ip.user_ns["f"] is old


@pytest.mark.parametrize(("line", "expected"), [
    ("--benchmark-dataset 'data'", "%%vast_remote --benchmark-dataset: name 'data' is not defined; define it in this cell or an earlier one."),
    ("--benchmark-dataset '[1/0]'", "%%vast_remote --benchmark-dataset: cannot evaluate '[1/0]': ZeroDivisionError: division by zero"),
    ("--benchmark-generator nothing", "%%vast_remote --benchmark-generator: name 'nothing' is not defined; define it in this cell or an earlier one."),
])
def test_vast_remote_option_expressions_are_checked(ip: Any, line: str, expected: str) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    assert _usage_error(ip, "cell", "vast_remote", line, "async def f(x):\n    return x\n") == expected
    assert "f" not in ip.user_ns


def test_vast_remote_error_in_the_cell_keeps_its_type_and_shows_the_cell(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    n = ip.execution_count
    with pytest.raises(NameError) as e:
        ip.run_cell_magic("vast_remote", "", "async def f(x):\n    return x\n\nundefined_name\n")
    rendered = "\n".join(getattr(e.value, "_render_traceback_")())  # what IPython shows
    assert f"Cell In[{n}], line 5" in rendered and "undefined_name" in rendered
    assert "vastnb" not in rendered and "interactiveshell" not in rendered
    assert ip.user_ns["app"].functions == {}


def test_remote_error_points_at_the_cell_and_line(running: Any) -> None:
    ip = running
    result = ip.run_cell("%%vast_remote\nasync def fail(x):\n    y = x + 1\n    raise ValueError(f'bad {y}')\n", store_history=True)
    assert result.success
    n = result.execution_count
    with pytest.raises(ValueError, match="bad 2") as e:
        ip.user_ns["fail"].call(1)
    remote = str(e.value.__cause__)
    assert f"  Cell In[{n}], line 4, in fail\n    raise ValueError(f'bad {{y}}')" in remote


# ====================================================================== hot reload and contexts
def test_redefining_a_remote_cell_swaps_code_on_every_warm_worker(running: Any) -> None:
    ip = running
    app = ip.user_ns["app"]
    pids = sorted(w.pid for w in app.snapshot().workers)
    for version in (1, 2, 3):
        ip.run_cell_magic("vast_remote", "", textwrap.dedent(f"""\
            import os

            async def whoami():
                ns = vastnb.worker_namespace()
                return os.environ["VASTNB_WORKER_ID"], ns["entries"], {version}
            """))
        # in effect on every worker as soon as the cell returns
        assert {(e, v) for _w, e, v in _on_every_worker(ip.user_ns["whoami"], 2)} == {(1, version)}
    assert sorted(w.pid for w in app.snapshot().workers) == pids  # no restart


def test_editing_a_context_cell_reenters_only_that_context(running: Any) -> None:
    ip = running
    ip.run_cell_magic("vast_context", "", textwrap.dedent("""\
        class Other:
            async def __aenter__(self):
                ns = vastnb.worker_namespace()
                ns["other"] = ns.get("other", 0) + 1
                return self

            async def __aexit__(self, *exc):
                pass
        """))
    ip.run_cell_magic("vast_remote", "", textwrap.dedent("""\
        import os

        async def counts():
            ns = vastnb.worker_namespace()
            return os.environ["VASTNB_WORKER_ID"], ns["entries"], ns["other"], app.get_context(Counter).label
        """))
    assert {a[1:] for a in _on_every_worker(ip.user_ns["counts"], 2)} == {(1, 1, "a")}
    ip.run_cell_magic("vast_context", '"b"', COUNTER)  # edited: a constructor argument
    assert {a[1:] for a in _on_every_worker(ip.user_ns["counts"], 2)} == {(2, 1, "b")}


def test_vast_context_arguments_are_evaluated_in_the_notebook(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    ip.user_ns["DTYPE"] = "bf16"
    ip.run_cell_magic("vast_context", '"weights.pt", dtype=DTYPE', MODEL_WITH_ARGUMENTS)
    app = ip.user_ns["app"]
    assert app.contexts == {"Model": ip.user_ns["Model"]}
    assert app.context_arguments("Model") == (("weights.pt",), {"dtype": "bf16"})


@pytest.mark.parametrize(("body", "expected"), [
    ("x = 1\n",
     "%%vast_context: the cell defines no class. A context cell defines exactly one async context manager class, "
     "for example:\n"
     "    class Model:\n"
     "        async def __aenter__(self): ...; return self\n"
     "        async def __aexit__(self, *exc): ..."),
    ("class A:\n    pass\n\nclass B:\n    pass\n",
     "%%vast_context: the cell defines 2 classes (A, B); a context cell defines exactly one. Move the others to a "
     "plain cell (or a %%vast_context cell of their own)."),
    ("class A:\n    pass\n",
     "%%vast_context: context class `A` lacks __aenter__ and __aexit__: a context is an async context manager. "
     "Define `async def __aenter__(self): ...; return self` and `async def __aexit__(self, *exc): ...`."),
])
def test_vast_context_cell_shape_errors(ip: Any, body: str, expected: str) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    assert _usage_error(ip, "cell", "vast_context", "", body) == expected
    assert "A" not in ip.user_ns


@pytest.mark.parametrize(("line", "expected"), [
    ('"w.pt", dtype=', "%%vast_context: cannot read the arguments `\"w.pt\", dtype=` (invalid syntax). "
                       'Write them as @app.context(...) takes them, e.g. %%vast_context "weights.pt", dtype="bf16".'),
    ("missing_name", "%%vast_context: evaluating the arguments `missing_name` failed: NameError: name 'missing_name' is not defined"),
    ("1, 2", "%%vast_context: @app.context(...) arguments do not fit `M`'s constructor: too many positional arguments."),
])
def test_vast_context_argument_errors(ip: Any, line: str, expected: str) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    body = "class M:\n    def __init__(self, a=0):\n        pass\n    async def __aenter__(self):\n        return self\n    async def __aexit__(self, *e):\n        pass\n"
    assert _usage_error(ip, "cell", "vast_context", line, body) == expected
    assert "M" not in ip.user_ns


# ====================================================================== %%vast_run
def test_vast_run_namespace_persists_and_last_value_comes_back(running: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip = running
    value = ip.run_cell_magic("vast_run", "--worker w1", "import asyncio\nawait asyncio.sleep(0)\ntotal = 40\nprint('set')\ntotal + 2\n")
    assert repr(value) == "42"
    assert repr(ip.run_cell_magic("vast_run", "--worker w1", "total")) == "40"
    assert ip.run_cell_magic("vast_run", "--worker w1", "x = 1\n") is None
    assert capsys.readouterr().out == "set\n"


def test_vast_run_all_labels_output_in_worker_order(running: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip = running
    body = textwrap.dedent("""\
        import asyncio, os, sys
        me = os.environ["VASTNB_WORKER_ID"]
        for i in range(3):
            print(me, i)
            await asyncio.sleep(0.05 if me == "w1" else 0.01)
        print("warn", me, file=sys.stderr, end="")
        me
        """)
    values = ip.run_cell_magic("vast_run", "--all", body)
    captured = capsys.readouterr()
    assert captured.out == "".join(f"[{w}] {w} {i}\n" for w in ("w1", "w2") for i in range(3))
    assert captured.err == "[w1] warn w1\n[w2] warn w2\n"
    assert dict(values) == {"w1": "'w1'", "w2": "'w2'"} and repr(values) == "[w1] 'w1'\n[w2] 'w2'"


def test_vast_run_push_and_pull(running: Any) -> None:
    ip = running
    ip.run_cell("class Box:\n    def __init__(self, v):\n        self.v = v\nbox = Box(5)\nscale = 3")
    ip.run_cell_magic("vast_run", "--all --push box,scale,Box", "import os\nresult = Box(box.v * scale)\nwho = os.environ['VASTNB_WORKER_ID']\n")
    ip.run_cell_magic("vast_run", "--worker w2 --pull result --pull who", "pass\n")
    assert ip.user_ns["result"].v == 15 and type(ip.user_ns["result"]) is ip.user_ns["Box"]
    assert ip.user_ns["who"] == "w2"
    ip.run_cell_magic("vast_run", "--all --pull who", "pass\n")
    assert ip.user_ns["who"] == {"w1": "w1", "w2": "w2"}


def test_remote_functions_see_the_vast_run_namespace(running: Any) -> None:
    ip = running
    ip.run_cell_magic("vast_run", "--all", "import os\ngreeting = 'hi from ' + os.environ['VASTNB_WORKER_ID']\n")
    ip.run_cell_magic("vast_remote", "", "async def greet():\n    return vastnb.worker_namespace()['greeting']\n")
    assert set(ip.user_ns["greet"].map([()] * 8)) == {"hi from w1", "hi from w2"}


def test_vast_run_push_of_an_undefined_name(running: Any) -> None:
    assert _usage_error(running, "cell", "vast_run", "--push nothing_here,other", "1\n") == (
        "%%vast_run --push: `nothing_here`, `other` are not defined in the notebook."
    )
    assert _usage_error(running, "cell", "vast_run", "--push nothing_here", "1\n") == (
        "%%vast_run --push: `nothing_here` is not defined in the notebook."
    )


def test_vast_run_push_of_something_that_cannot_travel(running: Any) -> None:
    running.user_ns["lock"] = threading.Lock()
    message = _usage_error(running, "cell", "vast_run", "--push lock", "1\n")
    assert message.startswith("%%vast_run --push: ") and "`lock`" in message


def test_vast_run_pull_of_a_name_the_worker_lacks(running: Any) -> None:
    assert _usage_error(running, "cell", "vast_run", "--worker w1 --pull nope", "x = 1\n") == (
        "%%vast_run --pull: 'nope' not defined on worker w1; assign it in a %%vast_run cell first."
    )
    assert "nope" not in running.user_ns


@pytest.mark.parametrize(("line", "expected"), [
    ("--worker w9", "%%vast_run --worker: worker 'w9' is not ready; ready workers: w1, w2."),
    ("--all --worker w1", "%%vast_run: give either --all or --worker ID, not both."),
    ("--pull a-b", "%%vast_run --pull: 'a-b' is not a Python variable name."),
])
def test_vast_run_target_errors(running: Any, line: str, expected: str) -> None:
    assert _usage_error(running, "cell", "vast_run", line, "1\n") == expected


def test_vast_run_syntax_error_has_the_cells_line_numbers(running: Any) -> None:
    n = running.execution_count
    assert _usage_error(running, "cell", "vast_run", "--all", "x = 1\nif x\n    pass\n") == (
        "%%vast_run: the cell has a syntax error:\n"
        f"  Cell In[{n}], line 3\n"
        "    if x\n"
        "        ^\n"
        "SyntaxError: expected ':'"
    )


def test_vast_run_remote_exception_keeps_type_and_shows_cell_line(running: Any) -> None:
    ip = running
    result = ip.run_cell("%%vast_run --all\nimport os\nvalue = 1\nif os.environ['VASTNB_WORKER_ID'] == 'w2':\n    1 / 0\nvalue\n",
                         store_history=True)
    n = result.execution_count
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert getattr(result.error_in_exec, "_render_traceback_")() == [
        "Traceback on worker w2 (most recent call last):\n"
        f"  Cell In[{n}], line 5, in <module>\n"
        "    1 / 0\n"
        "ZeroDivisionError: division by zero"
    ]


def test_vast_run_runs_on_a_deployment_that_was_not_started(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    ip.user_ns["app"].configure_autoscaling(cold_workers=1, max_workers=1)
    assert repr(ip.run_cell_magic("vast_run", "", "6 * 7\n")) == "42"


def test_interrupting_vast_run_cancels_the_cell_on_the_worker(running: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ip = running
    main = threading.get_ident()

    class CtrlCOnceStarted(io.StringIO):
        """The cell's stdout: presses Ctrl-C as soon as the cell says it runs on the worker (no timing guess)."""

        def write(self, text: str) -> int:
            if "cell started" in text:
                threading.Thread(target=signal.pthread_kill, args=(main, signal.SIGINT)).start()
            return super().write(text)

    monkeypatch.setattr(sys, "stdout", CtrlCOnceStarted())
    cell = ("import asyncio\nprint('cell started', flush=True)\ntry:\n    await asyncio.sleep(60)\n    finished = True\n"
            "except asyncio.CancelledError:\n    cancelled_on_worker = True\n    raise\n")
    with pytest.raises(KeyboardInterrupt):
        ip.run_cell_magic("vast_run", "--worker w1", cell)
    monkeypatch.undo()
    probe = "'cancelled_on_worker' in globals(), 'finished' in globals()"
    for _ in range(100):  # the cancellation reaches the worker
        if repr(ip.run_cell_magic("vast_run", "--worker w1", probe)) == "(True, False)":
            break
        time.sleep(0.05)
    assert repr(ip.run_cell_magic("vast_run", "--worker w1", probe)) == "(True, False)"


# ====================================================================== views and lifecycle
def test_vast_status_shows_the_text_and_html_summary(running: Any) -> None:
    with capture_output() as cap:
        assert running.run_line_magic("vast_status", "") is None
    (bundle,) = [o.data for o in cap.outputs]
    assert bundle["text/plain"].startswith("demo (local) · ")
    assert "w1" in bundle["text/plain"] and "w2" in bundle["text/plain"]
    assert "<" in bundle["text/html"] and "w1" in bundle["text/html"]


def test_vast_logs(running: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip = running
    ip.run_line_magic("vast_logs", "w2")
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("[w2] ") for line in lines)
    assert any("serving on 127.0.0.1:" in line for line in lines)
    ip.run_line_magic("vast_logs", "-n 1")
    assert [line[:5] for line in capsys.readouterr().out.splitlines()] == ["[w1] ", "[w2] "]
    assert _usage_error(ip, "line", "vast_logs", "w7") == "%vast_logs: no worker 'w7'; workers: w1, w2."


def test_vast_logs_before_start(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    capsys.readouterr()
    ip.run_line_magic("vast_logs", "")
    assert capsys.readouterr().out == (
        "vastnb: deployment 'demo' has no workers yet; they start with the first call or app.ensure_ready().\n"
    )


def test_vast_benchmark_reruns_and_shows_scores(running: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip = running
    assert _usage_error(ip, "line", "vast_benchmark", "") == (
        "%vast_benchmark: no remote function of deployment 'demo' has a benchmark; give one with "
        "%%vast_remote --benchmark-dataset EXPR (or benchmark_dataset=... in @app.remote)."
    )
    ip.run_cell_magic("vast_remote", "--benchmark-dataset '[{\"x\": 3}]' --benchmark-runs 2", "async def cube(x):\n    return x ** 3\n")
    ip.run_line_magic("vast_benchmark", "")
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["benchmark of cube: 2 runs of 1 request on 2 workers", "  worker  perf score (workload units/s)"]
    assert [line.split()[0] for line in lines[2:]] == ["w1", "w2"]
    assert all(float(line.split()[1].replace(",", "")) > 0 for line in lines[2:])
    assert _usage_error(ip, "line", "vast_benchmark", "whoami") == (
        "%vast_benchmark: `whoami` has no benchmark; give it one with %%vast_remote --benchmark-dataset EXPR "
        "(or benchmark_dataset=... in @app.remote)."
    )
    assert _usage_error(ip, "line", "vast_benchmark", "nope") == (
        "%vast_benchmark: 'nope' is not a remote function of deployment 'demo' (remote functions: cube, whoami)."
    )


def test_vast_gpus_needs_an_image(ip: Any) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    assert _usage_error(ip, "line", "vast_gpus", "") == (
        "%vast_gpus: deployment 'demo' has no image yet; declare it first, e.g. "
        'image = app.image("vastai/pytorch:@vastai-automatic-tag")'
    )


def test_vast_gpus_shows_the_picker_for_the_image(ip: Any) -> None:
    from vastnb.widgets import GpuPicker

    ip.run_line_magic("vast_deployment", "demo")
    image = ip.user_ns["app"].image("vastai/pytorch:@vastai-automatic-tag", storage=16)
    picker = ip.run_line_magic("vast_gpus", "")
    assert isinstance(picker, GpuPicker) and picker.image is image


def test_vast_down_stops_every_worker(running: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from .conftest import pid_alive

    app = running.user_ns["app"]
    pids = [w.pid for w in app.snapshot().workers]
    capsys.readouterr()
    running.run_line_magic("vast_down", "")
    assert capsys.readouterr().out == "vastnb: deployment 'demo' is shut down (2 workers stopped).\n"
    assert app.state == "shut down"
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in pids)
    assert _usage_error(running, "cell", "vast_run", "", "1\n") == (
        "%%vast_run: deployment 'demo' is shut down; create it again with `%vast_deployment demo`."
    )


# ====================================================================== %vast_export's cells
def test_history_cells_keep_the_last_definition(ip: Any) -> None:
    class History:
        input_hist_raw = [
            "",
            "%load_ext vastnb",
            "%vast_deployment demo",
            "%%vast_remote\nasync def square(x):\n    return x\n",
            "await square(2)",
            "x = 1",
            "%%vast_remote\nasync def square(x):\n    return x * x\n",
            "x = 1",
            "",
            "%vast_export deploy.py",
        ]

    class Shell:
        history_manager = History()
        user_ns: dict = {}

    assert history_cells(Shell()) == ([
        "%load_ext vastnb",
        "%vast_deployment demo",
        "await square(2)",
        "%%vast_remote\nasync def square(x):\n    return x * x\n",
        "x = 1",
    ], [])
    cells, raised = history_cells(Shell(), failed={(4, "await square(2)"), (8, ""), (5, "y = 2")})
    assert raised == [4] and "await square(2)" not in cells and len(cells) == 4  # In[5] is another cell now


def test_vast_export_writes_the_last_definitions_of_this_session(ip: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("vast_deployment", "demo")
    monkeypatch.setattr(ip.history_manager, "input_hist_raw", [
        "",
        "%load_ext vastnb",
        "%vast_deployment demo",
        "%%vast_remote --benchmark-dataset '[{\"x\": 2}]'\nasync def square(x):\n    return x\n",
        "await square(3)",
        "%%vast_remote --benchmark-dataset '[{\"x\": 2}]'\nasync def square(x):\n    return x * x\n",
        "%vast_export deploy.py",
    ])
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    ip.run_line_magic("vast_export", "--check")
    assert capsys.readouterr().out.splitlines()[0] == 'deployment "demo": functions square [benchmark]; contexts none'
    assert not (tmp_path / "deploy.py").exists()
    ip.run_line_magic("vast_export", "deploy.py --client client.py")
    assert "wrote deploy.py, client.py" in capsys.readouterr().out.splitlines()
    module = (tmp_path / "deploy.py").read_text()
    assert 'app = Deployment(name="demo")' in module
    assert "    return x * x\n" in module and "    return x\n" not in module
    assert (tmp_path / "client.py").exists()


def test_vast_export_leaves_out_the_cells_that_raised(ip: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Cells run for real in the shell: the extension's post_run_cell hook notes which raised."""
    first = ip.execution_count  # this session's earlier cells are blanked; their numbers stay taken
    monkeypatch.setattr(ip.history_manager, "input_hist_raw", [""] * first)
    monkeypatch.setattr(ip.history_manager, "input_hist_parsed", [""] * first)
    monkeypatch.chdir(tmp_path)
    cells = [
        "%vast_deployment demo",
        "%%vast_remote --benchmark-dataset '[{\"x\": 2}]'\nasync def square(x):\n    return x *\n",  # a typo
        "%%vast_remote --benchmark-dataset '[{\"x\": 2}]'\nasync def square(x):\n    return x * x\n",
        "OFFSET = undefined_name + 1",  # raises NameError
        "OFFSET = 1",
        "%vast_export deploy.py",
    ]
    results = [ip.run_cell(cell, store_history=True) for cell in cells]
    assert [r.success for r in results] == [True, False, True, False, True, True]
    out = capsys.readouterr().out
    assert f"vastnb: left out the cell(s) that raised: In[{first + 1}], In[{first + 3}].\n" in out
    module = (tmp_path / "deploy.py").read_text()
    assert module.count("async def square(x):") == 1 and "    return x * x\n" in module
    assert "undefined_name" not in module


def test_vast_export_prefers_the_notebook_file(ip: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext vastnb\n%vast_deployment from-file"),
                nbformat.v4.new_code_cell("%%vast_remote --benchmark-dataset '[{\"x\": 2}]'\n"
                                                "async def cube(x):\n    return x ** 3")]
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setitem(ip.user_ns, "__session__", str(path))
    ip.run_line_magic("vast_deployment", "demo")
    capsys.readouterr()
    ip.run_line_magic("vast_export", "--check")
    assert capsys.readouterr().out.splitlines()[0] == 'deployment "from-file": functions cube [benchmark]; contexts none'
