"""`dl weights …`: list, inspect, fetch, verify, import, locate and remove named weights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command
from dlcli.results import Line, Record, VerifyReport, WeightsList

weights_app = typer.Typer(name="weights", help="Named weights: list, info, fetch, verify, import, path, rm.",
                          no_args_is_help=True, rich_markup_mode="rich")


def _labels(value: Optional[str]) -> Optional[list[str]]:
    """--labels: a text file (one label a line), `imagenet`, or the name of an entry to copy from."""
    if value is None:
        return None
    from dlcli.weights import loader

    return loader.read_labels(value)


def _states(specs: list) -> dict[str, str]:
    from dlcli.weights import store

    return {s.name: (s.source.kind if s.source.kind in ("bundled", "imported", "package") else "cached")
            if store.is_present(s) else "not downloaded" for s in specs}


def register(app: typer.Typer) -> None:
    @command(weights_app, "list")
    def list_(task: Optional[str] = typer.Option(None, "--task", help="Only this task (classify, detect, …)."),
              *, opts: Options) -> None:
        """List the registered weights and whether each is on this machine."""
        from dlcli import render
        from dlcli.weights import registry

        specs = registry.entries(task)
        states = _states(specs)
        defaults = {registry._defaults[t] for t in registry._defaults}
        render.show(WeightsList([{**s.summary(), "state": states[s.name], "default": s.name in defaults}
                                 for s in specs]), opts.json)

    @command(weights_app, "info")
    def info(name: str = typer.Argument(..., help="Weights name, e.g. resnet50.imagenet."), *, opts: Options) -> None:
        """Everything known about one entry: source, preprocessing, licence, metrics, recipe."""
        from dlcli import render
        from dlcli.weights import registry, store

        spec = registry.get(name)
        data = spec.summary()
        data["state"] = _states([spec])[spec.name]
        data["path"] = str(store.local_path(spec))
        data["url"] = store.source_url(spec)
        data["sha256"] = store.expected_sha256(spec)
        render.show(Record(spec.name, data), opts.json)

    @command(weights_app, "fetch")
    def fetch(name: str = typer.Argument(..., help="Weights name."), *, opts: Options) -> None:
        """Download (with progress) and verify an entry's file; print its path."""
        from dlcli import render
        from dlcli.weights import registry, store

        spec = registry.get(name)
        path = store.fetch(spec, offline=opts.offline, reporter=opts.reporter())
        render.show(Line(str(path), {"name": name, "path": str(path), "sha256": store.expected_sha256(spec)}), opts.json)

    @command(weights_app, "verify")
    def verify(name: Optional[str] = typer.Argument(None, help="One entry (default: every file on this machine)."),
               *, opts: Options) -> None:
        """Re-hash files on this machine against their SHA-256; a bad download is removed."""
        from dlcli import render
        from dlcli.errors import DLError, WeightsError
        from dlcli.weights import registry, store

        specs = [registry.get(name)] if name else [s for s in registry.entries() if store.is_present(s)]
        rows = []
        for spec in specs:
            path = store.local_path(spec)
            if not path.is_file():
                rows.append({"name": spec.name, "ok": False, "detail": f"not on this machine ({path})"})
                continue
            try:
                rows.append({"name": spec.name, "ok": True, "detail": store.verify_file(spec, path)})
            except DLError as exc:
                rows.append({"name": spec.name, "ok": False, "detail": exc.message})
        report = VerifyReport(rows)
        render.show(report, opts.json)
        if report.failed:
            raise WeightsError(f"{report.failed} of {len(rows)} weights files failed verification")

    @command(weights_app, "import")
    def import_(
        name: str = typer.Argument(..., help="New name ARCH.TAG, e.g. squeezenet1_0.caffe."),
        file: Path = typer.Argument(..., help="A .safetensors or .pth state dict (or a format the arch knows)."),
        preprocess: Optional[str] = typer.Option(None, "--preprocess", help="Preprocessing preset (e.g. imagenet, caffe)."),
        labels: Optional[str] = typer.Option(None, "--labels", help="Text file with one label a line, 'imagenet', or an entry to copy labels from."),
        license: str = typer.Option("", "--license", help="Licence of these weights, for the record."),
        force: bool = typer.Option(False, "--force", help="Replace an earlier import of the same name."),
        *,
        opts: Options,
    ) -> None:
        """Check that a local file's tensors fit the architecture, store it with its hash."""
        from dlcli import render
        from dlcli.weights.presets import preset_names
        from dlcli.errors import InputError
        from dlcli.weights import loader, store

        if preprocess is not None and preprocess not in preset_names():
            raise InputError(f"unknown --preprocess {preprocess!r}; use one of {', '.join(preset_names())}")
        spec = loader.import_weights(name, file, preprocess=preprocess, labels=_labels(labels),
                                     license=license, force=force)
        data = {"name": spec.name, "arch": spec.arch, "task": spec.task, "path": str(store.local_path(spec)),
                "sha256": store.expected_sha256(spec), "preprocess": spec.preprocess,
                "labels": len(spec.labels) if spec.labels else None}
        render.show(Record(f"imported {spec.name}", data), opts.json)

    @command(weights_app, "path")
    def path(name: str = typer.Argument(..., help="Weights name."), *, opts: Options) -> None:
        """Print where an entry's file is (or will be once fetched)."""
        from dlcli import render
        from dlcli.weights import registry, store

        spec = registry.get(name)
        p = store.local_path(spec)
        render.show(Line(str(p), {"name": name, "path": str(p), "present": p.is_file()}), opts.json)

    @command(weights_app, "rm")
    def rm(name: str = typer.Argument(..., help="Weights name."), *, opts: Options) -> None:
        """Remove a downloaded or imported entry's file from the cache (bundled files stay)."""
        from dlcli import render
        from dlcli.weights import loader

        removed, notes = loader.remove_weights(name)
        for note in notes:
            opts.reporter().message(note)
        said = (f"removed {', '.join(map(str, removed))}" if removed
                else f"{name}: nothing cached" if not notes else f"{name}: removed from the index")
        render.show(Line(said, {"name": name, "removed": [str(p) for p in removed]}, remark=True), opts.json,
                    quiet=opts.quiet)

    app.add_typer(weights_app)
