"""Runs you can look at: every trainer's run folder gets curves.png (+ curves.json, the numbers it
shows) and TensorBoard event files that match its metrics.jsonl; eval commands draw their pictures
with --out DIR; `dl runs list | show | plot | report` read run folders back, broken ones included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlcli import plots
from dlcli.cli.app import app
from test_trainers import SCENE_TINY, TRAINERS, _cli

runner = CliRunner()
ROW_FIELDS = ("step", "epoch", "split", "time")
# Row fields the curves leave out (bookkeeping); TensorBoard keeps every numeric field.
NOT_CURVES = {"seconds", "images_per_s", "steps_per_s", "errors", "episodes", "eval_episodes", "eval_std", "epsilon"}

needs_plots = pytest.mark.skipif(not plots.available(), reason='matplotlib is not installed (pip install "dlcli[plots]")')


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _numeric(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expected_curves(rows: list[dict], x: str) -> dict[tuple[str, str], list[tuple[float, float]]]:
    want: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in rows:
        for key, value in r.items():
            if key not in ROW_FIELDS and key not in NOT_CURVES and _numeric(value):
                want.setdefault((r["split"], key), []).append((r[x], value))
    return want


def _segment_run(folder: Path, *extra: str) -> Path:
    r = _cli(["segment", "train"], *SCENE_TINY, "--epochs", "2", "--out", str(folder), *extra)
    assert r.exit_code == 0, r.output
    return folder


# --- curves and TensorBoard from every trainer ---------------------------------------------------


@needs_plots
@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_every_trainer_leaves_curves_and_tensorboard_matching_its_metrics(trainer: str, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason='tensorboard is not installed (pip install "dlcli[tensorboard]")')
    if trainer == "dqn":
        pytest.importorskip("ale_py", reason="Atari needs the atari extra (gymnasium, ale-py)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    words, make, longer, _, more = TRAINERS[trainer]
    run = tmp_path / "run"
    r = _cli(words, *make(tmp_path), longer, more, "--out", str(run))
    assert r.exit_code == 0, r.output
    rows = _rows(run)

    # curves.json holds exactly the points of metrics.jsonl, by epoch (by step for DQN)
    data = json.loads((run / "curves.json").read_text())
    assert data["rows"] == len(rows)
    x = data["x"]
    assert x == ("step" if trainer == "dqn" else "epoch")
    want = _expected_curves(rows, x)
    lines = {(line["split"], line["key"]): line for panel in data["panels"] for line in panel["lines"]}
    assert set(lines) == {k for k, pts in want.items() if pts}
    for key, line in lines.items():
        got = [(a, b) for a, b in zip(line["x"], line["y"]) if b is not None]
        assert got == pytest.approx(want[key]), key
    panels = {p["title"]: p for p in data["panels"]}
    assert panels["loss"]["lines"] and panels["learning rate"]["lines"]
    if trainer != "dqn":  # a 60-step DQN run finishes no episode: no return to plot yet
        metric_panel = data["panels"][1]
        assert metric_panel["lines"], metric_panel["title"]
    if x == "epoch":  # as many epochs in the figure as the run did
        epochs = {r["epoch"] for r in rows}
        assert {e for line in lines.values() for e in line["x"]} == epochs
    # curves.png shows those numbers (its text chunk) and is a real picture
    assert plots.plotted_data(run / "curves.png") == data
    from PIL import Image

    with Image.open(run / "curves.png") as im:
        drawn_panels = sum(1 for p in data["panels"] if p["lines"])  # one panel each, side by side
        assert im.format == "PNG" and im.width >= 350 * drawn_panels and im.height >= 250

    # TensorBoard: one scalar tag per (split, metric), at the rows' steps
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tb_want: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        for key, value in r.items():
            if key not in ROW_FIELDS and _numeric(value):
                tb_want.setdefault(f"{r['split']}/{key}", []).append((r["step"], float(value)))
    assert set(acc.Tags()["scalars"]) == set(tb_want)
    for tag, points in tb_want.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in points], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-5), tag
    # pictures per epoch: held-out scenes drawn, the misclassified digits, the fixed latent grid
    image_tags = {"detect": "val/detections", "segment": "val/segmentations", "mnist": "test/misclassified",
                  "generate": "samples"}
    if trainer in image_tags:
        tag = image_tags[trainer]
        assert tag in acc.Tags()["images"]
        assert len(acc.Images(tag)) == len({r["epoch"] for r in rows})
    if trainer == "mnist":  # and the confusion matrix beside misclassified.png
        assert (run / "confusion.png").is_file() and (run / "misclassified.png").is_file()
        assert plots.plotted_data(run / "confusion.png")
    if trainer in ("detect", "segment"):  # and the last evaluation's pictures
        names = {"detect": ("pr.png", "confusion.png"), "segment": ("iou.png", "confusion.png")}[trainer]
        assert all((run / n).is_file() for n in names)


def test_without_matplotlib_and_tensorboard_a_run_trains_and_says_so_once(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.training import listeners, run as run_module

    monkeypatch.setattr(plots, "available", lambda: False)
    monkeypatch.setattr(listeners, "tensorboard_available", lambda: False)
    monkeypatch.setattr(run_module, "_TOLD", set())
    folder = tmp_path / "run"
    r = runner.invoke(app, ["segment", "train", *SCENE_TINY, "--epochs", "2", "--out", str(folder), "--device", "cpu",
                            "--seed", "0"])
    assert r.exit_code == 0, r.output
    assert r.output.count("dlcli[tensorboard]") == 1 and r.output.count("dlcli[plots]") == 1, r.output
    assert (folder / "last.safetensors").is_file() and (folder / "curves.json").is_file()
    assert not (folder / "curves.png").exists() and not list(folder.glob("events.out.tfevents.*"))
    assert not (folder / "iou.png").exists()
    notes = json.loads((folder / "run.json").read_text())["notes"]
    assert listeners.TENSORBOARD_MISSING in notes and plots.MISSING in notes

    # the run can still be looked at: a report without curves says why
    out = tmp_path / "report.html"
    r = runner.invoke(app, ["runs", "report", str(folder), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "dlcli[plots]" in out.read_text() and "data:image/png" not in out.read_text()
    r = runner.invoke(app, ["runs", "plot", str(folder), "--metric", "val_miou", "--out", str(tmp_path / "c.png")])
    assert r.exit_code == 2 and "dlcli[plots]" in r.output and not (tmp_path / "c.png").exists()


def test_force_removes_the_listeners_files_too(tmp_path: Path) -> None:
    from dlcli.training.run import RunFolder

    folder = tmp_path / "run"
    run = RunFolder.open(folder, task="segment", config={})
    run.log("train", {"loss": 1.0}, step=1, epoch=1)
    run.finish()
    stale = folder / "events.out.tfevents.1.host.1.0"
    stale.write_bytes(b"old")
    (folder / "pr.png").write_bytes(b"old")
    (folder / "notes.txt").write_text("mine")
    RunFolder.open(folder, task="segment", config={}, force=True, listen=False).close()
    assert not stale.exists() and not (folder / "curves.png").exists() and not (folder / "pr.png").exists()
    assert (folder / "notes.txt").read_text() == "mine"  # never anything a run does not own


def test_step_based_curves_are_redrawn_at_most_every_so_often_and_at_the_end(tmp_path: Path) -> None:
    from dlcli.training.listeners import CurvesListener
    from dlcli.training.run import RunFolder

    run = RunFolder.open(tmp_path / "run", task="dqn", config={}, listen=False)
    curves = CurvesListener(run, run.note, every_seconds=3600)
    run.listeners.append(curves)
    for step in range(1, 6):  # DQN-like rows: no epoch
        run.log("train", {"loss": 1.0 / step, "lr": 1e-4}, step=step * 100)
        assert json.loads((tmp_path / "run" / "curves.json").read_text())["rows"] == 1  # drawn once, then throttled
    run.finish()
    data = json.loads((tmp_path / "run" / "curves.json").read_text())
    assert data["rows"] == 5 and data["x"] == "step"  # the end always draws
    loss = next(line for line in data["panels"][0]["lines"] if line["key"] == "loss")
    assert loss["x"] == [100, 200, 300, 400, 500]


def test_log_image_reaches_tensorboard_and_is_a_no_op_without_it(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dlcli.training.run import RunFolder

    run = RunFolder.open(tmp_path / "run", task="generate", config={})
    assert run.takes_images
    run.log_image("samples", Image.new("RGB", (8, 6), (255, 0, 0)), step=3)
    run.log_image("grey", np.zeros((5, 7), dtype=np.uint8), step=4)
    run.close()
    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0})
    acc.Reload()
    assert set(acc.Tags()["images"]) == {"samples", "grey"}
    first = acc.Images("samples")[0]
    assert (first.step, first.width, first.height) == (3, 8, 6)
    with pytest.raises(ValueError, match="HxW"):
        run.log_image("bad", np.zeros((2, 2, 2, 2), dtype=np.uint8), step=5)
    quiet = RunFolder.open(tmp_path / "other", task="generate", config={}, listen=False)
    assert not quiet.takes_images
    quiet.log_image("samples", np.zeros((4, 4, 3), dtype=np.uint8), step=1)  # nothing to do, no error
    assert not list((tmp_path / "other").glob("events.out.tfevents.*"))


# --- dl runs ------------------------------------------------------------------------------------


def _interrupted(folder: Path) -> None:
    from dlcli.training.run import RunFolder

    run = RunFolder.open(folder, task="detect", config={"epochs": 3}, listen=False)
    run.log("train", {"loss": 2.0, "lr": 0.1}, step=5, epoch=1)
    run.checkpoint.write_bytes(b"a checkpoint")
    run.interrupted()


def test_runs_list_tells_finished_interrupted_running_and_broken(tmp_path: Path) -> None:
    from dlcli.training.run import RunFolder

    root = tmp_path / "runs"
    _segment_run(root / "good")
    _interrupted(root / "stopped")
    live = RunFolder.open(root / "live", task="caption", config={}, listen=False)  # this process: alive
    shutil.copytree(root / "good", root / "cut")
    with open(root / "cut" / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "epoch": 3, "spl')  # killed mid-write
    shutil.copytree(root / "good", root / "nested" / "no_checkpoint")
    (root / "nested" / "no_checkpoint" / "checkpoint.pt").unlink()
    shutil.copytree(root / "good", root / "crashed")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    state = json.loads((root / "crashed" / "run.json").read_text())
    state.update(state="running", pid=int(dead.stdout))
    (root / "crashed" / "run.json").write_text(json.dumps(state))
    (root / "photos").mkdir()
    (root / "photos" / "cat.jpg").write_bytes(b"not a run")
    (root / "garbled").mkdir()
    (root / "garbled" / "run.json").write_text("{not json")

    r = runner.invoke(app, ["runs", "list", str(root), "--json"])
    assert r.exit_code == 0, r.output
    listed = {Path(x["path"]).relative_to(root).as_posix(): x for x in json.loads(r.stdout)}
    assert {k: v["state"] for k, v in listed.items()} == {
        "good": "finished", "stopped": "interrupted", "live": "running", "cut": "broken",
        "nested/no_checkpoint": "broken", "crashed": "broken", "photos": "broken", "garbled": "broken"}
    assert "metrics.jsonl line 5" in listed["cut"]["reason"]
    assert "checkpoint.pt is missing" in listed["nested/no_checkpoint"]["reason"]
    assert f"process ({dead.stdout.strip()}) is gone" in listed["crashed"]["reason"] and "--resume" in listed["crashed"]["reason"]
    assert "not a run folder" in listed["photos"]["reason"] and "run.json is unreadable" in listed["garbled"]["reason"]
    good = listed["good"]
    assert good["task"] == "segment" and good["epochs"] == 2 and good["steps"] == 4
    assert good["best"]["metric"] == "miou" and good["weights"] == ["best.safetensors", "last.safetensors"]
    assert listed["stopped"]["epochs"] == 1 and listed["stopped"]["steps"] == 5

    table = runner.invoke(app, ["runs", "list", str(root)], terminal_width=200)
    assert table.exit_code == 0 and "Traceback" not in table.output
    for name in ("good", "stopped", "cut", "photos", "nested/no_checkpoint"):
        assert name in table.output
    assert "cut: broken: metrics.jsonl line 5 is truncated" in table.output
    live.close()

    # a broken run can still be shown and reported, with the reason
    shown = runner.invoke(app, ["runs", "show", str(root / "cut"), "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["run"]["state"] == "broken"
    page = tmp_path / "cut.html"
    assert runner.invoke(app, ["runs", "report", str(root / "cut"), "--out", str(page)]).exit_code == 0
    assert "metrics.jsonl line 5 is truncated" in page.read_text()

    missing = runner.invoke(app, ["runs", "list", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_runs_show_gives_config_epochs_and_files(tmp_path: Path) -> None:
    run = _segment_run(tmp_path / "run")
    r = runner.invoke(app, ["runs", "show", str(run), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["config"]["task"] == "segment" and data["config"]["epochs"] == 2
    assert [row["epoch"] for row in data["rows"]] == [1, 2]
    assert {"train_loss", "train_lr", "val_miou", "val_pixel_acc"} <= set(data["columns"])
    assert {"curves.png", "metrics.jsonl", "best.safetensors"} <= {f["name"] for f in data["files"]}
    table = runner.invoke(app, ["runs", "show", str(run)], terminal_width=200)
    assert table.exit_code == 0 and "val_miou" in table.output and "per epoch" in table.output
    assert runner.invoke(app, ["runs", "show", str(tmp_path)]).exit_code == 2  # not a run


@needs_plots
def test_runs_plot_overlays_two_mnist_runs(tmp_path: Path) -> None:
    from test_mnist import write_mnist

    data = write_mnist(tmp_path / "mnist", n_train=120, n_test=40)
    runs = []
    for lr in ("0.001", "0.003"):
        out = tmp_path / f"lr{lr}"
        r = _cli(["train-mnist"], "--data", str(data), "--batch-size", "20", "--epochs", "2", "--lr", lr,
                 "--out", str(out))
        assert r.exit_code == 0, r.output
        runs.append(out)
    compare = tmp_path / "compare.png"
    r = runner.invoke(app, ["runs", "plot", *map(str, runs), "--metric", "test_accuracy", "--out", str(compare),
                            "--json"])
    assert r.exit_code == 0, r.output
    drawn = plots.plotted_data(compare)
    assert drawn["metric"] == "test_accuracy" and drawn["x"] == "epoch" and len(drawn["series"]) == 2
    for run, series in zip(runs, drawn["series"]):
        test_rows = [row for row in _rows(run) if row["split"] == "test"]
        assert series["x"] == [row["epoch"] for row in test_rows] == [1, 2]
        assert series["y"] == pytest.approx([row["accuracy"] for row in test_rows])
    assert json.loads(r.stdout)["points"] == [2, 2]

    again = runner.invoke(app, ["runs", "plot", *map(str, runs), "--metric", "test_accuracy", "--out", str(compare)])
    assert again.exit_code == 2 and "--force" in again.output
    loss = runner.invoke(app, ["runs", "plot", *map(str, runs), "--metric", "train/loss", "--out", str(compare),
                               "--force"])
    assert loss.exit_code == 0, loss.output
    assert len(plots.plotted_data(compare)["series"]) == 2
    unknown = runner.invoke(app, ["runs", "plot", str(runs[0]), "--metric", "bleu9", "--out", str(tmp_path / "x.png")])
    assert unknown.exit_code == 2 and "no metric 'bleu9'" in unknown.output and "test_accuracy" in unknown.output
    assert not (tmp_path / "x.png").exists()


@needs_plots
def test_runs_report_is_one_self_contained_page(tmp_path: Path) -> None:
    run = _segment_run(tmp_path / "run")
    out = tmp_path / "report.html"
    r = runner.invoke(app, ["runs", "report", str(run), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count('src="data:image/png;base64,') == 3  # curves, confusion, iou
    assert "http://" not in page and "https://" not in page and "<script" not in page  # nothing to fetch
    assert "val_miou" in page and "steps_per_epoch" in page and "finished" in page
    from dlcli.training.runs import sha256

    assert sha256(run / "best.safetensors") in page  # provenance: the weights' hashes
    assert json.loads(r.stdout)["pictures"] == ["curves.png", "confusion.png", "iou.png"]


def _browser() -> list[str] | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


@pytest.mark.slow
@needs_plots
def test_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    """The report opens in a real browser: headless Chromium renders it to a PNG (look at it:
    DL_KEEP_RENDER=DIR keeps report.html and the screenshot there)."""
    import numpy as np
    from PIL import Image

    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium/Chrome on this machine (Debian: apt-get install chromium)")
    run = _segment_run(tmp_path / "run")
    out = tmp_path / "report.html"
    assert runner.invoke(app, ["runs", "report", str(run), "--out", str(out)]).exit_code == 0
    shot = tmp_path / "report.png"
    proc = subprocess.run([*browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1200,1800", f"--screenshot={shot}", out.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.shape == (1800, 1200)
    # Not a blank or error page: dark text and coloured figures on white, spread over the page.
    assert (pixels < 128).mean() > 0.003 and pixels[:600].std() > 10 and pixels[600:1200].std() > 10
    keep = os.environ.get("DL_KEEP_RENDER")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")
        shutil.copy(out, Path(keep) / "report.html")


# --- evaluation pictures ------------------------------------------------------------------------


@needs_plots
def test_detect_eval_out_draws_pr_curves_and_a_confusion_matrix_with_background(tmp_path: Path) -> None:
    r = runner.invoke(app, ["detect", "eval", "--count", "6", "--out", str(tmp_path / "pics"), "--json",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    pr = plots.plotted_data(tmp_path / "pics" / "pr.png")
    assert set(pr["precision"]) == set(report["per_class"]) and len(pr["recall"]) == 101
    assert pr["ap"] == pytest.approx({k: v["ap50"] for k, v in report["per_class"].items()})
    cm = plots.plotted_data(tmp_path / "pics" / "confusion.png")
    assert cm["labels"][0] == "background"
    # every real object is counted once: found as some class, or missed (predicted background)
    assert sum(sum(row) for row in cm["counts"][1:]) == report["ground_truth"]
    assert sorted(Path(p).name for p in report["pictures"]) == ["confusion.png", "pr.png"]


@needs_plots
def test_segment_eval_out_draws_iou_bars_and_a_confusion_matrix(tmp_path: Path) -> None:
    r = runner.invoke(app, ["segment", "eval", "--count", "4", "--out", str(tmp_path / "pics"), "--json",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    bars = plots.plotted_data(tmp_path / "pics" / "iou.png")
    assert bars["iou"] == pytest.approx(report["per_class_iou"])
    assert bars["miou"] == pytest.approx(report["miou"])
    cm = plots.plotted_data(tmp_path / "pics" / "confusion.png")
    assert cm["labels"] == list(report["per_class_iou"]) and sum(map(sum, cm["counts"])) == 4 * 128 * 128


@needs_plots
def test_caption_eval_out_draws_a_sheet_of_captions(tmp_path: Path) -> None:
    r = runner.invoke(app, ["caption", "eval", "--count", "6", "--examples", "3", "--out", str(tmp_path / "pics"),
                            "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    sheet = plots.plotted_data(tmp_path / "pics" / "captions.png")
    assert [c["caption"] for c in sheet["captions"]] == [e["caption"] for e in report["examples"]]
    assert [c["references"] for c in sheet["captions"]] == [e["references"] for e in report["examples"]]


def test_eval_out_that_is_a_file_fails_before_the_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    r = runner.invoke(app, ["segment", "eval", "--count", "2", "--out", str(tmp_path / "file")])
    assert r.exit_code == 2 and "is a file" in r.output


@needs_plots
def test_play_dqn_out_draws_the_scores_against_random(tmp_path: Path) -> None:
    pytest.importorskip("ale_py", reason="Atari needs the atari extra (gymnasium, ale-py)")
    r = runner.invoke(app, ["play-dqn", "--episodes", "1", "--vs-random", "--out", str(tmp_path), "--json",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    strip = plots.plotted_data(tmp_path / "scores.png")["scores"]
    assert strip["random"] == [e["score"] for e in result["random"]["episodes"]]
    assert list(strip.values())[0] == [e["score"] for e in result["agent"]["episodes"]]


# --- the pieces ---------------------------------------------------------------------------------


def test_detection_confusion_counts_hits_confusions_misses_and_false_alarms() -> None:
    from dlcli.evaluation.detection import ImageBoxes, detection_confusion

    truth = ImageBoxes.of([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [70, 70, 80, 80]], [1, 2, 2, 1],
                          crowd=[False, False, False, True])
    dets = ImageBoxes.of([[0, 0, 10, 10], [21, 21, 30, 30], [40, 0, 45, 5], [0, 0, 9, 10], [50, 50, 60, 60]],
                         [1, 1, 2, 1, 2], [0.9, 0.8, 0.7, 0.6, 0.3])
    cm = detection_confusion([dets], [truth])
    # box 1 found as 1; box 2 found as 1 (confused); box 3 only by a detection under the score
    # threshold (missed); the crowd box counts for nothing; the detection at (40, 0) and the
    # duplicate of box 1 are detections of nothing.
    assert cm == [[0, 1, 1], [0, 1, 0], [1, 1, 0]]


@needs_plots
def test_plots_keep_their_numbers_and_the_house_style(tmp_path: Path) -> None:
    from dlcli.evaluation import pictures

    path = plots.confusion_matrix([[5, 1], [0, 3]], ["0", "1"], tmp_path / "confusion.png")
    assert plots.plotted_data(path) == {"labels": ["0", "1"], "counts": [[5.0, 1.0], [0.0, 3.0]], "normalize": True}
    with pytest.raises(ValueError, match="square"):
        plots.confusion_matrix([[1, 2, 3]], ["a"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
    bars = pictures.segmentation([[8, 2, 0], [1, 4, 0], [0, 0, 0]], ["bg", "cat", "dog"], tmp_path)
    iou = plots.plotted_data(bars[0])["iou"]
    assert iou == pytest.approx({"bg": 8 / 11, "cat": 4 / 7, "dog": None})
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "other.png")
    assert plots.plotted_data(tmp_path / "other.png") is None  # not one of ours


def test_help_does_not_import_matplotlib_or_tensorboard() -> None:
    code = ("import sys\nfrom dlcli.cli.app import main\nsys.argv=['dl','runs','--help']\ntry:\n    main()\n"
            "except SystemExit:\n    pass\nprint([m for m in ('matplotlib','tensorboard','torch') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr
