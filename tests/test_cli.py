"""The CLI shell: every command's --help, shared options in both places, errors and exit codes."""

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from dlcli.cli.app import app

runner = CliRunner()


def _command_paths():
    root = typer.main.get_command(app)
    paths = []

    def walk(cmd, prefix):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in sorted(subs.items()):
                walk(sub, prefix + [name])
        paths.append(prefix)

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "dl")
def test_every_help_works(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


HELP_CHECK = """
import sys
from dlcli.cli.app import main
sys.argv = ['dl', *{args!r}, '--help']
try:
    main()
except SystemExit:
    pass
heavy = [m for m in ('torch', 'torchvision', 'numpy', 'matplotlib', 'tensorboard') if m in sys.modules]
sys.stderr.write('HEAVY=' + ','.join(heavy))
"""


@pytest.mark.parametrize("args", [[], *[[p[0]] for p in _command_paths() if len(p) == 1]], ids=lambda a: " ".join(a) or "dl")
def test_help_never_imports_torch(args):
    proc = subprocess.run([sys.executable, "-c", HELP_CHECK.format(args=args)], capture_output=True, text=True, timeout=60)
    assert "HEAVY=" in proc.stderr, proc.stderr
    assert proc.stderr.rsplit("HEAVY=", 1)[1].strip() == "", proc.stderr


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("dl ")


def test_shared_options_before_or_after_the_command(tiny):
    after = runner.invoke(app, ["weights", "list", "--json", "--task", "classify"])
    before = runner.invoke(app, ["--json", "weights", "list", "--task", "classify"])
    assert after.exit_code == 0 and before.exit_code == 0, after.output + before.output
    a, b = json.loads(after.stdout), json.loads(before.stdout)
    assert a == b
    assert any(e["name"] == "tinynet.test" and e["state"] == "not downloaded" for e in a)


def test_unknown_weights_one_line_error_and_exit_code(tiny):
    result = runner.invoke(app, ["weights", "info", "tinynet.tst"])
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: unknown weights 'tinynet.tst'; did you mean 'tinynet.test'")
    assert "Traceback" not in result.output + result.stderr
    assert result.stdout == ""


def test_errors_become_one_line_and_exit_codes(monkeypatch, capsys):
    import torch

    from dlcli.cli.app import Options, run_guarded

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(typer.Exit) as exit_:
        run_guarded(False, lambda: Options(device="cuda:7").runtime())
    assert exit_.value.exit_code == 4
    err = capsys.readouterr().err
    assert err.startswith("Error: device 'cuda:7' is not available") and err.count("\n") == 1

    with pytest.raises(typer.Exit) as exit_:
        run_guarded(False, lambda: 1 / 0)
    assert exit_.value.exit_code == 1
    assert "internal error: ZeroDivisionError" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):
        run_guarded(True, lambda: 1 / 0)  # --debug shows the real traceback

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as exit_:
        run_guarded(False, interrupted)
    assert exit_.value.exit_code == 130


def test_weights_fetch_verify_path_rm(tiny):
    spec, src = tiny
    fetched = runner.invoke(app, ["weights", "fetch", "tinynet.test", "--quiet"])
    assert fetched.exit_code == 0, fetched.output
    path = fetched.stdout.strip()
    assert runner.invoke(app, ["weights", "path", "tinynet.test"]).stdout.strip() == path
    verify = runner.invoke(app, ["weights", "verify", "--json"])
    assert verify.exit_code == 0 and json.loads(verify.stdout)[0]["ok"] is True
    with open(path, "r+b") as f:
        f.seek(10)
        f.write(b"\xff\xff")
    bad = runner.invoke(app, ["weights", "verify", "tinynet.test"])
    assert bad.exit_code == 3 and "failed verification" in bad.stderr
    offline = runner.invoke(app, ["weights", "fetch", "tinynet.test", "--offline"])
    assert offline.exit_code == 3 and "offline mode is on" in offline.stderr and src.as_uri() in offline.stderr
    runner.invoke(app, ["weights", "fetch", "tinynet.test", "-q"])
    removed = runner.invoke(app, ["weights", "rm", "tinynet.test", "--json"])
    assert json.loads(removed.stdout)["removed"] == [path]


def test_weights_import_cli(tiny, tmp_path):
    import torch

    from conftest import build_tiny

    f = tmp_path / "w.pth"
    torch.save(build_tiny().state_dict(), f)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    ok = runner.invoke(app, ["weights", "import", "tinynet.local", str(f), "--labels", str(labels), "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["labels"] == 3 and len(data["sha256"]) == 64
    info = json.loads(runner.invoke(app, ["weights", "info", "tinynet.local", "--json"]).stdout)
    assert info["state"] == "imported" and info["sha256"] == data["sha256"]
    bad = runner.invoke(app, ["weights", "import", "nodot", str(f)])
    assert bad.exit_code == 2 and "must be ARCH.TAG" in bad.stderr
    missing = runner.invoke(app, ["weights", "import", "tinynet.x", str(tmp_path / "none.pth")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    preset = runner.invoke(app, ["weights", "import", "tinynet.y", str(f), "--preprocess", "bogus"])
    assert preset.exit_code == 2 and "unknown --preprocess" in preset.stderr


def test_doctor_json_parses():
    result = runner.invoke(app, ["doctor", "--json", "--no-verify"])
    data = json.loads(result.stdout)
    assert data["devices"][0]["device"] in ("cpu", "cuda:0", "mps") or data["devices"]
    assert any(d["device"] == "cpu" and d["matmul_ok"] for d in data["devices"])
    assert data["cache_writable"] is True
    assert "torch" in data["versions"]
    assert result.exit_code == 0 if data["healthy"] else result.exit_code in (2, 3, 4)


def test_shell_completion_completes_commands():
    import os

    env = {**os.environ, "_DL_COMPLETE": "complete_bash", "COMP_WORDS": "dl weights l", "COMP_CWORD": "2"}
    proc = subprocess.run([sys.executable, "-m", "dlcli"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split() == ["list"], proc.stdout + proc.stderr


def _listed(out: str, names: set[str]) -> list[str]:
    """Command names in the order a help text lists them (plain click or Typer's Rich panels)."""
    import re

    found = [re.match(r"^(?:│ |  )(\S+)\s", line) for line in out.splitlines()]  # a name starts its row
    return [m.group(1) for m in found if m and m.group(1) in names]


def test_root_help_lists_the_chapters_tasks_then_the_tools():
    from dlcli.cli.app import CHAPTER_ORDER

    plain = subprocess.run([sys.executable, "-m", "dlcli", "--help"], capture_output=True, text=True, timeout=60).stdout
    for out in (plain, runner.invoke(app, ["--help"]).output):  # as users see it, and with Rich help
        tasks_at, tools_at = out.index("Tasks (in the chapter's order)"), out.index("Tools")
        assert tasks_at < tools_at
        listed = _listed(out[tasks_at:], set(app_commands()))
        tasks = [n for n in listed if n in CHAPTER_ORDER]
        tools = [n for n in listed if n not in CHAPTER_ORDER]
        assert tasks == list(CHAPTER_ORDER)
        assert listed == tasks + tools and tools == sorted(tools)
        assert {"weights", "summary", "profile", "doctor"} <= set(tools)


def app_commands() -> list[str]:
    return [p[0] for p in _command_paths() if len(p) == 1]


@pytest.mark.parametrize("group,option,usage", [
    ("classify", "--top-k", "IMAGES..."), ("detect", "--threshold", "IMAGES..."), ("segment", "--opacity", ""),
    ("caption", "--beam-size", ""), ("generate", "--interpolate", ""), ("play-dqn", "--episodes", ""),
])
def test_group_help_shows_the_default_subcommands_options(group, option, usage):
    out = runner.invoke(app, [group, "--help"]).output
    first = out.strip().splitlines()[0]
    assert first.startswith(f"Usage: dl {group} [OPTIONS]") and usage in first
    assert option in out and "--json" in out  # its own options and the shared ones
    other = out.split(f"Other commands (dl {group} COMMAND --help):", 1)[1]
    assert "train" in other and " run " not in other
    # The subcommand's own help is unchanged.
    assert option in runner.invoke(app, [group, "run", "--help"]).output


def test_every_report_type_has_one_table_renderer() -> None:
    """`render.show` is the one entry the commands print through: each task's report or result
    type has a table, and an unknown type is a programming error, not a silent nothing."""
    import dataclasses

    from dlcli import render, results

    tops = [c for c in vars(results).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
            and c.__module__ == results.__name__ and c.__name__.endswith(("Report", "Result"))
            # one image's predictions, and classify's report, whose rows are streamed as each image is done
            and c.__name__ not in ("ClassifyResult", "ClassifyReport")]
    missing = [c.__name__ for c in tops if c not in render._TABLES
               and c not in (results.CaptionReport, results.VisionTrainReport)]
    assert not missing, missing
    with pytest.raises(TypeError, match="no table"):
        render.show(object(), as_json=False)


def test_renamed_options_still_work_with_a_deprecation_notice(tmp_path) -> None:
    """Old spellings are hidden aliases: they work, say once that they are deprecated, and are not
    in --help."""
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    runner = CliRunner()
    help_text = runner.invoke(app, ["play-dqn", "train", "--help"]).output
    assert "--steps" in help_text and "--total-steps" not in help_text
    # An impossible value for the new name shows the old spelling was mapped onto it.
    r = runner.invoke(app, ["play-dqn", "train", "--total-steps", "0", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--total-steps is deprecated; use --steps" in r.output
    assert "Invalid value for '--steps'" in r.output
    r = runner.invoke(app, ["caption", "train", "--val-fraction=2", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--val-fraction is deprecated; use --val-split" in r.output
    # eval commands: one name for how many (--count) and for the held-out world (--data-seed)
    for words in (["detect", "eval"], ["segment", "eval"], ["caption", "eval"]):
        text = runner.invoke(app, [*words, "--help"]).output
        assert "--count" in text and "--data-seed" in text and "--scene-seed" not in text, words
    r = runner.invoke(app, ["caption", "eval", "--size", "0"])
    assert r.exit_code == 2 and "--size is deprecated; use --count" in r.output
    r = runner.invoke(app, ["detect", "eval", "--scene-seed", "x"])
    assert r.exit_code == 2 and "--scene-seed is deprecated; use --data-seed" in r.output
