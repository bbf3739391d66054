"""The one command-line entry of every job: user errors in one line, exit codes, signals.

    if __name__ == "__main__":                      # an absl / ml_collections job
        cli.define_flags()                          # --debug, --dry_run
        cli.main(job, parse=cli.absl_parser())      # job(argv) reads FLAGS
    if __name__ == "__main__":                      # an argparse job (cli.ArgumentParser)
        cli.main(job, sys.argv[1:])                 # job(argv) parses its arguments itself

Exit codes:
  0    done (with --dry_run: every input and the output folder checked and usable)
  1    a bug: the traceback is printed, please report it
  2    a user error: an input that cannot be used (`star_jax.errors.InputError`), an unknown flag,
       a bad flag value, an unknown `--config.<field>`, a config file that cannot be loaded;
       stderr gets one line `error: <message>`, the traceback only with --debug or STAR_JAX_DEBUG=1
  130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: the run's temporary files and folders are
       removed on the way out (signals become an exception in the main thread, so every clean-up
       runs); a signal after the job has finished exits at once, without a traceback
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import signal
import sys
import traceback
from typing import Any, Callable, NoReturn, Sequence

from star_jax.errors import InputError

EXIT_OK, EXIT_BUG, EXIT_USER = 0, 1, 2
DEBUG_ENV = "STAR_JAX_DEBUG"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UsageError(InputError):
    """A command line that cannot be used: an unknown flag or config field, a bad flag value, a
    config file that cannot be loaded."""


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM during a job, raised in the main thread so every clean-up runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def debug_requested(argv: Sequence[str]) -> bool:
    """True for `--debug` (absl or argparse spelling) on the command line or STAR_JAX_DEBUG=1."""
    if os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on"):
        return True
    return any(a in ("--debug", "--debug=true", "--debug=True", "--debug=1") for a in argv)


def define_flags() -> None:
    """The absl flags every job has: --debug and --dry_run (and absl's --help)."""
    from absl import app, flags

    app.define_help_flags()
    flags.DEFINE_bool("debug", False, f"print the traceback of user errors too (or set {DEBUG_ENV}=1)")
    flags.DEFINE_bool("dry_run", False, "check every input and the output folder, write nothing, exit 0 if usable")


def main(job: Callable[[Any], Any], argv: Sequence[str] | None = None,
         parse: Callable[[list[str]], Any] | None = None) -> NoReturn:
    """Runs a job as a process and exits with its code (see the module docstring)."""
    sys.exit(execute(job, argv, parse, exiting=True))


def execute(job: Callable[[Any], Any], argv: Sequence[str] | None = None,
            parse: Callable[[list[str]], Any] | None = None, exiting: bool = False) -> int:
    """Runs `job(parse(argv))` (or `job(argv)`) and returns the exit code; user errors and
    interrupts are reported on stderr in one line, bugs propagate with their traceback.

    During the job SIGINT and SIGTERM raise `Interrupted`. After it, the previous handlers come
    back, or with `exiting` (a process about to end) a signal makes the process exit at once with
    128 + signal, without a traceback."""
    argv = list(sys.argv if argv is None else argv)
    debug = debug_requested(argv)
    previous = _set_handlers(_raise_interrupted)
    code = EXIT_BUG
    try:
        args = parse(argv) if parse is not None else argv
        job(args)
        code = EXIT_OK
    except InputError as e:
        code = _report(e, debug, EXIT_USER)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        code = _report(f"interrupted by {signal.Signals(signum).name}; no partial output was left (an output "
                       f"folder only ever holds a complete run)", debug, 128 + signum, e)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        if exiting:
            _set_handlers(_exit_after_job(code))
        else:
            _set_handlers(previous)
    return code


def _report(error, debug: bool, code: int, exc: BaseException | None = None) -> int:
    exc = error if exc is None else exc
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    sys.stdout.flush()
    print(f"error: {one_line(str(error))}", file=sys.stderr, flush=True)
    return code


def one_line(message: str) -> str:
    """Joins a message's non-empty lines with '; ' (errors are one line on stderr)."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def _exit_after_job(code: int):
    def handler(signum, _frame):
        state = "finished" if code == EXIT_OK else f"ended with exit code {code}"
        os.write(2, f"error: interrupted by {signal.Signals(signum).name} after the job {state}\n".encode())
        os._exit(128 + signum)

    return handler


def _set_handlers(handler) -> dict:
    """Sets `handler` (or a dict signal -> handler) for SIGINT and SIGTERM in the main thread;
    returns the previous ones (nothing happens outside the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for s in _SIGNALS:
        h = handler.get(s) if isinstance(handler, dict) else handler
        if h is not None:
            previous[s] = signal.signal(s, h)
    return previous


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (a missing or unknown argument, a bad choice) raise UsageError, so
    they read like every other user error (one line, exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (--help lists the arguments)")


# ---------------------------------------------------------------------------------------------
# absl + ml_collections command lines


def absl_parser(config_flags: Sequence[str] = ("config",)) -> Callable[[list[str]], list[str]]:
    """A `parse` for `main` that parses absl FLAGS and loads the ml_collections config flags,
    turning every failure into a UsageError: an unknown flag, a bad value, an unknown
    `--config.<field>` (named, with the config's closest fields), a config file that cannot be
    loaded or whose `get_config` argument string is wrong."""

    def parse(argv: list[str]) -> list[str]:
        from absl import flags

        try:
            rest = flags.FLAGS(argv)
        except flags.Error as e:
            raise UsageError(_flag_error(str(e))) from e
        except (AttributeError, KeyError, TypeError) as e:  # ml_collections: an override of a missing field
            raise UsageError(_unknown_field(argv, config_flags, e)) from e
        for name in config_flags:
            try:
                flags.FLAGS[name].value.keys()  # a file that failed to load raises on first use
            except (OSError, ImportError, SyntaxError, AttributeError) as e:
                raise UsageError(f"--{name}: cannot load the config file: {_last_line(str(e))}") from e
        if len(rest) > 1:
            raise UsageError(f"unexpected arguments {rest[1:]} (flags are written --name=value)")
        return rest

    return parse


def _last_line(message: str) -> str:
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    return lines[-1] if lines else message


def _flag_error(message: str) -> str:
    """absl's message, with an embedded config-file traceback cut down to its last line."""
    if "Traceback (most recent call last)" in message:
        head = message.split("\n", 1)[0].rstrip(": ")
        return f"{head}: {_last_line(message)}"
    return one_line(message)


def _config_spec(argv: Sequence[str], name: str) -> str | None:
    from absl import flags

    spec = None
    for i, a in enumerate(argv):  # the last one wins, as in absl
        if a.startswith(f"--{name}="):
            spec = a.split("=", 1)[1]
        elif a == f"--{name}" and i + 1 < len(argv):
            spec = argv[i + 1]
    default = flags.FLAGS[name].default
    return spec if spec is not None else default if isinstance(default, str) else None


def _load_config(spec: str):
    import importlib.util

    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_star_jax_cli_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def _field_paths(node, prefix: str = "") -> list[str]:
    out = []
    for k in node.keys():
        out.append(prefix + k)
        child = node[k]
        if hasattr(child, "keys") and callable(child.keys):
            out.extend(_field_paths(child, f"{prefix}{k}."))
    return out


def _unknown_field(argv: Sequence[str], config_flags: Sequence[str], error: BaseException) -> str:
    """'--config.x.y: experiments/e.py has no field x.y; did you mean x.z?' for the first unknown override."""
    fallback = f"unknown config field: {one_line(str(error)).strip(chr(34) + chr(39))}"
    for name in config_flags:
        overrides = [m.group(1) for a in argv if (m := re.match(rf"--{re.escape(name)}\.([\w.]+)", a))]
        spec = _config_spec(argv, name)
        if not overrides or spec is None:
            continue
        try:
            paths = _field_paths(_load_config(spec))
        except Exception:  # noqa: BLE001 - the message then is ml_collections' own
            return fallback
        known = set(paths)
        for field in overrides:
            if field not in known:
                close = difflib.get_close_matches(field, paths, n=3, cutoff=0.6)
                hint = (f"did you mean {', '.join(close)}?" if close
                        else f"its fields: {', '.join(p for p in paths if '.' not in p)}")
                return f"--{name}.{field}: the config {spec} has no field {field!r}; {hint}"
    return fallback
