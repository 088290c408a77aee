"""Train options from one source: a trainer's config dataclass. Each field becomes an option
(`batch_size` -> `--batch-size`), its docstring the help, its default the default; a field's
`metadata["cli"]` adds short flags, bounds, a different flag name, or hides it. The command gets a
`TrainOptions` holding the values and which of them the user actually gave (a resumed run keeps
its own settings for the rest).

Nothing here imports torch: config modules are plain dataclasses, so `dl <cmd> train --help`
stays fast.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

_TYPES: dict[str, Any] = {
    "int": int, "float": float, "str": str, "bool": bool,
    "int | None": Optional[int], "float | None": Optional[float], "str | None": Optional[str],
    "Optional[int]": Optional[int], "Optional[float]": Optional[float], "Optional[str]": Optional[str],
}
PREFIX = "cfg__"  # keeps generated parameter names apart from a command's own


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """{field: the string literal written under it} (attribute docstrings, PEP 257 style)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant) \
                and isinstance(nxt.value.value, str):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@dataclass(frozen=True)
class TrainOptions:
    """What the user gave for a config's fields: every value, and the names given explicitly."""

    values: dict[str, Any]
    given: frozenset[str]

    def build(self, cls: type, **overrides: Any) -> Any:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in {**self.values, **overrides}.items() if k in known})

    def for_run(self, cls: type, run: "RunOptions", seed: Optional[int], *, default_seed: int = 0,
                **overrides: Any) -> Any:
        """The config of this run: a new run's from the options (the global --seed, else
        `default_seed`); a resumed run's own (`resumed`), with only what was given changed."""
        if seed is not None:
            overrides["seed"] = seed
        if run.resuming:
            return self.resumed(cls, run.folder, **overrides)
        overrides.setdefault("seed", default_seed)
        return self.build(cls, **overrides)

    def resumed(self, cls: type, folder: Path, **overrides: Any) -> Any:
        """The config of the run in `folder` (its config.json; an ensemble's first member's),
        with only the options the user gave on this command line changed."""
        import json

        saved: dict[str, Any] = {}
        for candidate in (Path(folder) / "config.json", Path(folder) / "member-1" / "config.json"):
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                saved = data
                break
        known = {f.name for f in dataclasses.fields(cls)}
        values = {**self.values, **{k: v for k, v in saved.items() if k in known}}
        values.update({k: self.values[k] for k in self.given})
        values.update(overrides)
        return cls(**{k: v for k, v in values.items() if k in known})


def config_params(cls: type, exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """Keyword-only typer parameters, one per field of `cls` not in `exclude`."""
    docs = field_docs(cls)
    params = []
    for f in dataclasses.fields(cls):
        cli = dict(f.metadata.get("cli", {}))
        if f.name in exclude or cli.get("skip"):
            continue
        annotation = _TYPES.get(str(f.type).replace("typing.", ""))
        if annotation is None:
            continue  # lists, dicts: set by the trainer, not a flag
        default = f.default if f.default is not dataclasses.MISSING else None
        flag = cli.get("flag", "--" + f.name.replace("_", "-"))
        decls = [flag if annotation is not bool else cli.get("bool_flags", f"{flag}/--no-{flag[2:]}"),
                 *cli.get("aliases", ())]
        extra = {k: cli[k] for k in ("min", "max") if k in cli}
        help_text = cli.get("help") or docs.get(f.name, "")
        if default is not None and annotation is not bool and "default" not in help_text.lower():
            help_text = f"{help_text} [default: {default}]".strip()
        option = typer.Option(default, *decls, help=help_text, show_default=False, hidden=cli.get("hidden", False),
                              **extra)
        params.append(inspect.Parameter(PREFIX + f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=annotation))
    return params


def collect(ctx: typer.Context, values: dict[str, Any]) -> TrainOptions:
    """Pop the generated parameters out of a command's keyword arguments."""
    from click.core import ParameterSource

    mine = {k[len(PREFIX):]: values.pop(k) for k in list(values) if k.startswith(PREFIX)}
    given = frozenset(name for name in mine
                      if ctx.get_parameter_source(PREFIX + name) not in (ParameterSource.DEFAULT, None))
    return TrainOptions(mine, given)


def renamed_flags(cls: type) -> dict[str, str]:
    """{old flag: new flag} declared by a config's fields (`cli(renamed=("--old",))`)."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        cli = f.metadata.get("cli", {})
        for old in cli.get("renamed", ()):
            out[old] = cli.get("flag", "--" + f.name.replace("_", "-"))
    return out


RUN_PREFIX = "run__"


@dataclass(frozen=True)
class RunOptions:
    """Where a training run lives: `--out DIR` for a new run, `--resume DIR` to continue one,
    `--force` to start over in a folder that holds a run. The same three options on every trainer."""

    out: Optional[Path]
    resume: Optional[Path]
    force: bool
    default: Path

    @property
    def folder(self) -> Path:
        return self.resume if self.resume is not None else (self.out or self.default)

    @property
    def resuming(self) -> bool:
        return self.resume is not None

    def check(self) -> None:
        from dlcli.errors import InputError

        if self.resume is not None and self.out is not None and Path(self.out) != Path(self.resume):
            raise InputError("--resume DIR continues the run in DIR; leave out --out")
        from dlcli.training.run import check_run_folder

        # Refusing a new run into a used folder is the trainer's (an ensemble looks into member-N).
        check_run_folder(self.folder, resume=self.resuming, force=self.force, refuse=False, members=True)


def run_params(default_out: str) -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter(RUN_PREFIX + "out", kw, annotation=Optional[Path], default=typer.Option(
            None, "--out", "-o", help=f"Run folder for a new run: config.json, metrics.jsonl, checkpoint.pt, "
                                      f"best/last.safetensors (default {default_out}).")),
        inspect.Parameter(RUN_PREFIX + "resume", kw, annotation=Optional[Path], default=typer.Option(
            None, "--resume", metavar="DIR", help="Continue the run in DIR from its checkpoint (its own settings; "
                                                  "--epochs or --steps may grow).")),
        inspect.Parameter(RUN_PREFIX + "force", kw, annotation=bool, default=typer.Option(
            False, "--force", help="Start over in an --out folder that already holds a run.")),
    ]


def collect_run(values: dict[str, Any], default_out: str) -> RunOptions:
    mine = {k[len(RUN_PREFIX):]: values.pop(k) for k in list(values) if k.startswith(RUN_PREFIX)}
    run = RunOptions(mine["out"], mine["resume"], bool(mine["force"]), Path(default_out))
    return run
