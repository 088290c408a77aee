"""Every command example in README.md's ```bash blocks runs, offline, in a temporary folder.

A command needs no download and no external data: it runs as written, or with smaller sizes
(SMALL: the same code path in seconds, not minutes). The others are in SKIP with the reason. A
README command in neither list runs as written, so a new example is tested the day it is added.
They run in README order in one folder and one $DL_HOME, as a reader would type them (the caption
`--resume` example continues the run of the example before it).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlcli.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# README command -> why it cannot run here (network, a user's own files, ../shared data).
SKIP: dict[str, str] = {
    'pip install -e ".[dev]"': "installs packages (network)",
    "pytest": "this is the test suite",
    "dl weights fetch resnet50.imagenet": "downloads",
    "dl weights import squeezenet1_0.caffe squeezenet.pth --preprocess caffe --labels imagenet": "the user's own file",
    "dl detect street.jpg --classes person,car --threshold 0.6 --out annotated/ --crops crops/ --coco-json dets.json":
        "the user's own photo and a COCO download",
    "dl detect street.jpg --model fasterrcnn_mobilenet_v3_large_fpn.coco --json": "the user's own photo, a download",
    "dl segment photo.jpg --model deeplabv3_resnet50.coco_voc --opacity 0.6 --out masks/ --json":
        "the user's own photo, a download",
    "dl classify samples/chelsea.png samples/coffee.png --top-k 3": "downloads resnet50.imagenet",
    "dl weights import squeezenet1_0.caffe squeezenet1_0-caffe-imagenet.pth --preprocess caffe --labels imagenet":
        "a downloaded Caffe file",
    "dl classify photos/ --model squeezenet1_0.caffe --batch-size 32 --json --show-preprocessed seen.png":
        "the user's own photos and import",
    "dl classify train flowers/ --from resnet18.imagenet --freeze-backbone --epochs 5 --out runs/flowers":
        "the user's own image folder, a download",
    "dl classify rose.jpg --weights-file runs/flowers/best.safetensors": "the user's own photo and run",
    "pip install 'dlcli[style]'": "installs packages (network)",
    "dl stylize photo.jpg a.jpg b.jpg --style-blend 0.7,0.3 --preserve-color --snapshot-every 50 --optimizer adam":
        "the user's own photos",
    "dl generate train mnist --data DIR --epochs 3 --out runs/dcgan-mnist": "MNIST files (DIR)",
    "dl generate train mnist --data DIR --upsample resize --augment translate --class-entropy 3 --lr-schedule linear "
    "--epochs 25 --batch-size 64 --precision bf16 --out runs/dcgan-best": "MNIST files (DIR)",
    "dl generate train mnist --data DIR --loss hinge --d-norm spectral --lr 1e-4 --lr-d 4e-4 --beta1 0 --beta2 0.9 "
    "--lr-schedule linear --out runs/dcgan-sn": "MNIST files (DIR)",
    "dl caption train --captions captions_train2017.json --images train2017/ --backbone resnet18 --encoder-weights "
    "resnet18.imagenet --freeze-encoder --image-size 224": "COCO captions and images, a download",
    "dl caption eval --weights-file runs/nic/best.safetensors --captions captions_val2017.json --images val2017/":
        "COCO captions and images",
    "dl train-mnist --data ../shared/data/MNIST/raw --out runs/mnist": "../shared data (MNIST)",
    "dl train-mnist --data DIR --recipe best": "MNIST files (DIR)",
    "dl train-mnist --data DIR --recipe fast": "MNIST files (DIR)",
    "dl train-mnist --data DIR --budget 2m": "MNIST files (DIR)",
    "dl train-mnist --data DIR --recipe fast --epochs 8 --no-logit-dropout": "MNIST files (DIR)",
    "dl train-mnist --data DIR --recipe best --ensemble 5": "MNIST files (DIR)",
    "dl train-mnist --resume runs/mnist --data DIR": "MNIST files (DIR) and an earlier run",
    "dl train-mnist --evaluate --model deepconvnet.mnist --data DIR --json": "MNIST files (DIR)",
    "torchrun --nproc_per_node 2 -m dlcli train-mnist --data DIR --device cpu": "MNIST files (DIR), two processes",
    "dl weights import deepconvnet.book deep_convnet_params.pkl": "the book's own pickle file",
    "dl detect eval --model fasterrcnn_resnet50_fpn_v2.coco --data instances_val2017.json --images val2017/ --json":
        "COCO val2017 and a download",
    "DL_OFFLINE=1 dl classify samples/chelsea.png": "an environment prefix; the same fallback runs in "
                                                    "tests/test_classify.py with DL_OFFLINE=1",
    "dl classify photos/ --model-file model.onnx": "the user's own photos and exported file",
    'pip install -e ".[export]"': "installs packages (network)",
    "dl export deepconvnet.mnist --int8 --calibrate DIR --out digits8.onnx": "MNIST files (DIR)",
    "dl bench deepconvnet.mnist --data DIR --batch-size 1,64 --threads 1": "MNIST files (DIR)",
    "dl generate --model-file dcgan.onnx --out grid.png": "a file written by `dl export dcgan.mnist --out dcgan.onnx`, "
                                                          "which tests/test_export.py runs",
    "pip install 'dlcli[video]'": "installs packages (network)",
    "dl detect clip.gif --frames all --out clip_det.mp4": "the user's own GIF; tests/test_video.py runs one",
    "dl detect frames/ --frames all --out frames_det.webm": "the user's own folder of frames; tests/test_video.py "
                                                            "runs one",
}

# README command -> the same command with small sizes (same code path; figures of the full run are
# in the README's "Measured figures").
SMALL: dict[str, str] = {
    "dl play-dqn --episodes 30 --vs-random": "dl play-dqn --episodes 1 --vs-random",
    "dl play-dqn --env Breakout --record game.gif": "dl play-dqn --env Breakout --record game.gif --episodes 1",
    "dl play-dqn --env Breakout --record game.mp4": "dl play-dqn --env Breakout --record game.mp4 --episodes 1",
    "dl play-dqn train --env Breakout --steps 10000000 --out runs/dqn":
        "dl play-dqn train --env Breakout --steps 300 --learning-starts 100 --buffer-size 400 --eval-every 0 "
        "--out runs/dqn",
    "dl detect eval --model fasterrcnn_small.scenes -n 500": "dl detect eval --model fasterrcnn_small.scenes -n 2",
    "dl detect train --data scenes --init-from fcn_small.scenes --freeze-backbone --out runs/det":
        "dl detect train --data scenes --init-from fcn_small.scenes --freeze-backbone --out runs/det --epochs 1 "
        "--steps-per-epoch 1 --batch-size 2 --val-size 1",
    "dl segment eval --model fcn_small.scenes -n 500": "dl segment eval --model fcn_small.scenes -n 2",
    "dl detect eval --model fasterrcnn_small.scenes -n 100 --out pics/":
        "dl detect eval --model fasterrcnn_small.scenes -n 2 --out pics/",
    "dl segment eval --model fcn_small.scenes -n 100 --out pics/": "dl segment eval --model fcn_small.scenes -n 2 --out pics/",
    "dl segment train --data scenes --out runs/seg":
        "dl segment train --data scenes --out runs/seg --epochs 1 --steps-per-epoch 1 --batch-size 2 --val-size 1",
    "dl profile resnet50 --batch-size 8 --repeats 10 --precision bf16":
        "dl profile resnet50 --batch-size 1 --repeats 1 --warmup 0 --input-size 64 --precision bf16",
    "dl stylize samples/chelsea.png samples/style_hubble.jpg --size 256 --steps 200 --out cat_hubble.png":
        "dl stylize samples/chelsea.png samples/style_hubble.jpg --size 32 --steps 1 --out cat_hubble.png",
    "dl caption train --data scenes --out runs/nic --name nic.mine":
        "dl caption train --data scenes --out runs/nic --name nic.mine --epochs 1 --train-size 8 --val-size 2",
    "dl caption train --resume runs/nic --epochs 20": "dl caption train --resume runs/nic --epochs 2",
    "dl caption eval --count 500 --data-seed 2": "dl caption eval --count 2 --data-seed 2",
    # The example above it wrote masks/ from the same image: in one folder the second needs --force.
    "dl segment samples/scene.png --model fcn_small.scenes --runtime onnx --out masks/":
        "dl segment samples/scene.png --model fcn_small.scenes --runtime onnx --out masks/ --force",
}

# Commands that take more than a few seconds even when small (games, training): opt-in.
SLOW = {
    "dl play-dqn --episodes 30 --vs-random",
    "dl play-dqn --env Breakout --record game.gif",
    "dl play-dqn --env Breakout --record game.mp4",
    "dl play-dqn train --env Breakout --steps 10000000 --out runs/dqn",
    "dl detect train --data scenes --init-from fcn_small.scenes --freeze-backbone --out runs/det",
    "dl segment train --data scenes --out runs/seg",
    "dl caption train --data scenes --out runs/nic --name nic.mine",
    "dl caption train --resume runs/nic --epochs 20",
    # These read the runs the slow training examples above leave in runs/ (seg, det).
    "dl runs list",
    "dl runs show runs/seg",
    "dl runs plot runs/seg runs/det --metric train/loss --out compare.png",
    "dl runs report runs/seg --out report.html",
}


def readme_commands() -> list[str]:
    """The commands of README.md's bash blocks: continuation lines joined, comments dropped."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line)
            line = re.sub(r"\s+", " ", line).strip()
            if line and not line.startswith("#"):  # a comment line shows what a command prints
                commands.append(line)
    return commands


COMMANDS = readme_commands()


def test_the_lists_name_only_readme_commands() -> None:
    """A README edit must update the lists: a stale entry would hide a command from this test."""
    stale = [c for c in (*SKIP, *SMALL, *SLOW) if c not in COMMANDS]
    assert stale == []


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for all examples, with samples/ where the README expects it."""
    work = tmp_path_factory.mktemp("readme")
    (work / "samples").symlink_to(ROOT / "samples")
    (work / "home").mkdir()
    return work


def _params() -> list:
    out = []
    for i, command in enumerate(COMMANDS):
        marks = [pytest.mark.slow] if command in SLOW else []
        out.append(pytest.param(command, marks=marks, id=f"{i:02d} {command[:60]}"))
    return out


@pytest.mark.parametrize("command", _params())
def test_readme_example_runs(command: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if command in SKIP:
        pytest.skip(SKIP[command])
    run = SMALL.get(command, command)
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("DL_HOME", str(workdir / "home"))
    monkeypatch.setenv("TORCH_HOME", str(workdir / "home" / "torch"))
    monkeypatch.setenv("DL_OFFLINE", "1")  # nothing here may need the network
    dl_part, _, pipe = run.partition(" | ")
    args = shlex.split(dl_part)
    assert args[0] == "dl", f"add {command!r} to SKIP or SMALL with a reason"
    result = CliRunner().invoke(app, args[1:])
    assert result.exit_code == 0, f"{run}\n{result.stdout}\n{result.stderr}"
    assert "Error:" not in result.stderr, result.stderr
    if pipe:
        tool = shlex.split(pipe)[0]
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
        piped = subprocess.run(shlex.split(pipe), input=result.stdout, capture_output=True, text=True, timeout=30)
        assert piped.returncode == 0 and piped.stdout.strip(), piped.stderr
