"""The root `dl` app: shared options (defined once, accepted before or after the command name),
command discovery, and the one place where errors become messages and exit codes.

Nothing here imports torch: `dl --help` and `dl <cmd> --help` stay fast. Command modules import
their task inside the command function.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import pkgutil
import sys
import typing
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, Optional

# Typer's Rich help formatter imports rich.markdown, pygments and markdown-it on every --help: it
# doubles start-up time. Plain click help keeps `dl --help` well under 0.3 s; results still use Rich.
os.environ.setdefault("TYPER_USE_RICH", "0")

import click  # noqa: E402
import typer  # noqa: E402
from typer.core import TyperCommand, TyperGroup  # noqa: E402

from dlcli import __version__  # noqa: E402
from dlcli.progress import Reporter  # noqa: E402
from dlcli.errors import EXIT_INTERRUPTED, DLError  # noqa: E402

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime

PANEL = "Common options"


@dataclass(frozen=True)
class Options:
    """The shared options, merged from `dl [OPTS] cmd [OPTS]` (the command's own win)."""

    device: str = "auto"
    precision: str = "auto"
    seed: Optional[int] = None
    json: bool = False
    quiet: bool = False
    offline: bool = False
    debug: bool = False
    deterministic: bool = False

    def runtime(self) -> Runtime:
        """The device manager for these options (imports torch)."""
        from dlcli.device import Runtime

        return Runtime.create(self.device, self.precision, self.seed, self.deterministic)

    def reporter(self) -> Reporter:
        from dlcli.render import RichReporter

        return RichReporter(quiet=self.quiet)

    def start(self) -> tuple[Runtime, Reporter]:
        """(runtime, reporter) for a command body, with the device manager's notices (e.g. an fp16
        fallback) already shown."""
        rt = self.runtime()
        reporter = self.reporter()
        for notice in rt.notices:
            reporter.message(notice)
        return rt, reporter


# One definition of each shared option; `command()` adds them to every command's signature.
_COMMON: list[tuple[str, Any, Any]] = [
    ("device", Optional[str], typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps (auto: cuda, then mps, then cpu).", rich_help_panel=PANEL)),
    ("precision", Optional[str], typer.Option(None, "--precision", help="auto | fp32 | fp16 | bf16 (fp16 on a CPU falls back to bf16).", rich_help_panel=PANEL)),
    ("seed", Optional[int], typer.Option(None, "--seed", help="Random seed (python, numpy, torch).", rich_help_panel=PANEL)),
    ("json", bool, typer.Option(False, "--json", help="Print the result as JSON on stdout.", rich_help_panel=PANEL)),
    ("quiet", bool, typer.Option(False, "--quiet", "-q", help="No progress bars or notices.", rich_help_panel=PANEL)),
    ("offline", bool, typer.Option(False, "--offline", help="Never touch the network (also DL_OFFLINE=1).", rich_help_panel=PANEL)),
    ("deterministic", bool, typer.Option(False, "--deterministic", help="Deterministic kernels (slower).", rich_help_panel=PANEL)),
    ("debug", bool, typer.Option(False, "--debug", help="Show the traceback of an error.", rich_help_panel=PANEL)),
]
_COMMON_NAMES = {name for name, _, _ in _COMMON}


def _merge(root: Optional[Options], given: dict[str, Any]) -> Options:
    from dlcli.offline import offline_mode

    base = root or Options()
    values: dict[str, Any] = {}
    for f in fields(Options):
        mine = given.get(f.name)
        theirs = getattr(base, f.name)
        if isinstance(theirs, bool):
            values[f.name] = bool(mine) or theirs  # a flag set anywhere counts
        else:
            values[f.name] = mine if mine is not None else theirs
    # One offline switch: DL_OFFLINE=1 is --offline everywhere (URL inputs included), not only
    # where the weights store happens to look at the environment.
    values["offline"] = offline_mode(values["offline"])
    return Options(**values)


# The seeds every generator accepts (torch.manual_seed's range; numpy gets seed mod 2**32).
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


def _checked(opts: Options) -> Options:
    """Shared options whose type alone does not bound them, checked once for every command."""
    from dlcli.errors import InputError

    if opts.seed is not None and not SEED_MIN <= opts.seed <= SEED_MAX:
        raise InputError(f"--seed must be between {SEED_MIN} and {SEED_MAX} (2^64 - 1), got {opts.seed}")
    return opts


def _root_options(ctx: typer.Context) -> Optional[Options]:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Options) else None


def report_error(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    # The message is plain text: 'pip install "dlcli[plots]"' must keep its brackets.
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]Error:[/] {escape(message)}", markup=True)


def raise_for_failures(failed: int, succeeded: int, verb: str) -> None:
    """End a batch command that skipped unreadable inputs: exit 2 when nothing was `verb`ed, else
    exit 7 (partial). The failures themselves were reported as they happened (one `Error:` line
    each), so the summary is a plain line, and a single bad input is not reported twice."""
    from dlcli.errors import InputError, PartialFailure

    if not failed:
        return
    total = failed + succeeded
    if not succeeded:
        raise InputError(f"none of the {total} inputs could be {verb}" if total > 1 else "", reported=True)
    raise PartialFailure(f"{failed} of {total} inputs failed and were skipped", reported=True)


# OS errors that come from the user's paths and machine (a read-only folder, a file where a folder
# is wanted, a full disk), not from a bug: exit 2 with the path, never "internal error".
_USER_OSERRORS = {"EACCES", "EPERM", "EROFS", "ENOTDIR", "EISDIR", "EEXIST", "ENOENT", "ENOSPC", "EDQUOT",
                  "ENAMETOOLONG", "ELOOP", "ETXTBSY", "EFBIG", "EMLINK", "EXDEV"}


def _user_oserror(exc: BaseException) -> Optional[str]:
    import errno

    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    if errno.errorcode.get(exc.errno) not in _USER_OSERRORS:
        return None
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc)
    return f"{where}: {what}" if where else what


def _out_of_memory(exc: BaseException) -> Optional[str]:
    text = str(exc)
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and (
            "can't allocate memory" in text or "out of memory" in text.lower())):
        return ("not enough memory for this input or option (it is larger than this machine can hold); "
                "use smaller images, --size or --batch-size")
    return None


def run_guarded(debug: bool, fn: Callable[[], Any]) -> Any:
    """Run a command body: typed errors -> `Error: …` + exit code; Ctrl-C -> 130; a bug -> a
    one-line message (the traceback with --debug)."""
    try:
        from dlcli import catalog

        catalog.load()  # every name a command may take (cheap: task modules import torch lazily)
        return fn()
    except (typer.Exit, typer.Abort, click.exceptions.ClickException):
        raise
    except DLError as exc:
        if debug:
            raise
        if exc.reported:  # each problem already had its own Error: line
            if exc.message:
                sys.stderr.write(exc.message + "\n")
        else:
            report_error(exc.message)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        report_error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # a bug: say so in one line
        if debug:
            raise
        user = _user_oserror(exc)
        if user is not None:
            report_error(user)
            raise typer.Exit(2) from None
        oom = _out_of_memory(exc)
        if oom is not None:
            report_error(oom)
            raise typer.Exit(4) from None
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else ""
        report_error(f"internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback, and report it)")
        raise typer.Exit(1) from None


class RenamingCommand(TyperCommand):
    """A command that still accepts the old spellings of renamed options (hidden from help): each
    is rewritten to its new name with a one-line deprecation notice on stderr."""

    renamed: dict[str, str] = {}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten, told = [], set()
        for i, arg in enumerate(args):
            if arg == "--":
                rewritten += args[i:]
                break
            flag, eq, value = arg.partition("=")
            new = self.renamed.get(flag)
            if new is not None:
                if flag not in told:
                    sys.stderr.write(f"note: {flag} is deprecated; use {new}\n")
                    told.add(flag)
                arg = new + eq + value
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


def command(group: typer.Typer, name: Optional[str] = None, *, config: Optional[type] = None,
            config_exclude: tuple[str, ...] = (), run_folder: Optional[str] = None,
            renamed: Optional[dict[str, str]] = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` as a command of `group` with the shared options appended to its signature.

    `fn` declares a parameter `opts: Options`; it receives the merged options there. With
    `config` (a trainer's config dataclass), every field not in `config_exclude` becomes an option
    too (dlcli/cli/config_options.py) and `fn` receives them as `train: TrainOptions`. With
    `run_folder` (the default folder), the run options --out/--resume/--force are added and `fn`
    receives them as `run: RunOptions`. A `video: VideoArgs` parameter gets the shared video options
    (--frames, --vid-stride, --max-frames, --start: dlcli/cli/commands/_video.py). `renamed` maps
    old option spellings to their new names (see RenamingCommand); a config field can also declare
    its old flags (`cli(renamed=...)`)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        from dlcli.cli import config_options
        from dlcli.cli.commands import _video

        hints = typing.get_type_hints(fn, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()
            if p.name not in ("opts", "train", "run", "video")
        ]
        wants_video = "video" in inspect.signature(fn).parameters
        if run_folder is not None:
            own += config_options.run_params(run_folder)
        if config is not None:
            generated = config_options.config_params(config, config_exclude)
            taken = {p.name for p in own}
            own += [p for p in generated if p.name[len(config_options.PREFIX):] not in taken]
        if wants_video:
            own += _video.params()
        clash = _COMMON_NAMES & {p.name for p in own}
        if clash:
            raise ValueError(f"{fn.__name__} redefines shared options {clash}")
        params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
        params += own
        params += [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann) for n, ann, opt in _COMMON
        ]

        @functools.wraps(fn)
        def wrapper(ctx: typer.Context, **values: Any) -> Any:
            common = {n: values.pop(n) for n in _COMMON_NAMES}
            opts = _merge(_root_options(ctx), common)
            if config is not None:
                values["train"] = config_options.collect(ctx, values)
            if run_folder is not None:
                values["run"] = config_options.collect_run(values, run_folder)
            if wants_video:
                values["video"] = _video.collect(values)
            return run_guarded(opts.debug, lambda: fn(opts=_checked(opts), **values))

        del wrapper.__wrapped__  # typer must read the new signature, not fn's
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        old_names = dict(renamed or {})
        if config is not None:
            old_names.update(config_options.renamed_flags(config))
        if old_names:
            kwargs["cls"] = type("Renaming", (RenamingCommand,), {"renamed": old_names})
        group.command(name, **kwargs)(wrapper)
        return fn

    return decorate


def _command_rows(group: click.Group, ctx: click.Context, names: list[str],
                  formatter: click.HelpFormatter) -> list[tuple[str, str]]:
    width = max((len(n) for n in names), default=0)
    limit = max(formatter.width - 6 - width, 20)
    return [(n, group.commands[n].get_short_help_str(limit)) for n in names if not group.commands[n].hidden]


class DefaultGroup(TyperGroup):
    """A group whose first argument may be an input instead of a subcommand:
    `dl classify cat.jpg` runs `dl classify run cat.jpg`; `dl classify train DIR` runs `train`.
    Its help is the default subcommand's (what `dl classify IMG` takes), with the others named below."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        default = self.commands.get(self.default_command)
        if default is None:
            return super().format_help(ctx, formatter)
        # The default's help under the group's own name: its usage reads `dl classify [OPTIONS] IMAGES...`.
        default.format_help(click.Context(default, info_name=ctx.info_name, parent=ctx.parent), formatter)
        others = [n for n in self.list_commands(ctx) if n != self.default_command]
        if others:
            with formatter.section(f"Other commands (dl {ctx.info_name} COMMAND --help)"):
                formatter.write_dl(_command_rows(self, ctx, others, formatter))
        return None


# `dl --help` lists the eight tasks in the order of the chapter, then the tools, alphabetically.
CHAPTER_ORDER: tuple[str, ...] = ("train-mnist", "classify", "detect", "segment", "caption", "stylize", "generate",
                                  "play-dqn")


_TASKS, _TOOLS = "Tasks (in the chapter's order)", "Tools"


class ChapterGroup(TyperGroup):
    """The root group: commands listed as the chapter's tasks, then the tools."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        tasks = [n for n in CHAPTER_ORDER if n in self.commands]
        return tasks + sorted(n for n in self.commands if n not in CHAPTER_ORDER)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Typer's Rich help (when TYPER_USE_RICH is on) groups commands by panel, in list order.
        for name, cmd in self.commands.items():
            cmd.rich_help_panel = _TASKS if name in CHAPTER_ORDER else _TOOLS  # type: ignore[attr-defined]
        return super().format_help(ctx, formatter)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        tasks = [n for n in names if n in CHAPTER_ORDER]
        tools = [n for n in names if n not in CHAPTER_ORDER]
        for title, group_names in ((_TASKS, tasks), (_TOOLS, tools)):
            if group_names:
                with formatter.section(title):
                    formatter.write_dl(_command_rows(self, ctx, group_names, formatter))


def group(name: str, help: str, default: str = "run") -> typer.Typer:
    """A command group with a default subcommand (see DefaultGroup)."""
    cls = type(f"{name.title()}Group", (DefaultGroup,), {"default_command": default})
    return typer.Typer(name=name, help=help, cls=cls, no_args_is_help=True, rich_markup_mode="rich")


app = typer.Typer(
    name="dl",
    help="dl: deep learning from the command line, chapter 8's tasks as commands.",
    cls=ChapterGroup,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dl {__version__}")
        raise typer.Exit()


def _root(ctx: typer.Context, version: bool = False, **common: Any) -> None:
    ctx.obj = _merge(None, common)


_root_params = [
    inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
    inspect.Parameter("version", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                      default=typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")),
] + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann) for n, ann, opt in _COMMON]
_root.__signature__ = inspect.Signature(_root_params)  # type: ignore[attr-defined]
_root.__annotations__ = {p.name: p.annotation for p in _root_params}
app.callback()(_root)


def _register_commands() -> None:
    """Every module in dlcli.cli.commands has `register(app)`; discovery keeps this file closed."""
    import dlcli.cli.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"dlcli.cli.commands.{info.name}").register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="dl")
    except KeyboardInterrupt:  # Ctrl-C outside a command body (e.g. during start-up)
        report_error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
