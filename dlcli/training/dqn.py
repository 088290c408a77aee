"""DQN trainer (Mnih et al. 2015), defaults as in CleanRL's dqn_atari.py (the Nature recipe with Adam).

One environment, epsilon-greedy acting, a uint8 replay buffer, a target network copied every
`target_update` steps, Huber (smooth L1) loss on the one-step TD error, Adam. Outputs in the run
folder:
  checkpoint.pt        everything to continue (networks, optimiser, counters, RNG); `resume=True`
  replay.npz           the replay buffer, only with `checkpoint_buffer` (it is ~N x 7 KB)
  last.safetensors     the Q-network at the end, with dlcli metadata (`--weights-file` loads it)
  best.safetensors     the Q-network with the best periodic evaluation so far
  metrics.jsonl        one row per log interval (split train) and per evaluation (split eval)
  config.json, run.json  the shared run folder's (dlcli/training/run.py)
Without a saved buffer, a resumed run refills `learning_starts` transitions before learning again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcli.training.configs import DQNConfig
from dlcli.errors import InputError
from dlcli.progress import NullReporter, Reporter
from dlcli.results import DQNTrainReport, Provenance

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime


# Options that may change between a run and its resumption (they do not change what is learned).
_RESUMABLE = {"total_steps", "eval_every", "eval_episodes", "log_every", "checkpoint_every", "checkpoint_buffer", "name"}


def resume_config(out_dir: Path, given: DQNConfig) -> tuple[DQNConfig, list[str]]:
    """The settings to continue the run in `out_dir` with: the run's own, except the options that
    may change on resumption (steps, evaluation, logging, checkpoints), which come from `given`.
    Also returns the options of `given` that were set away from their defaults and are overridden
    by the run's values (the CLI tells the user it ignored them)."""
    path = Path(out_dir).expanduser() / "config.json"
    if not path.is_file():
        raise InputError(f"no run to resume in {Path(out_dir)} (config.json is missing); give the --out folder of the run")
    saved = json.loads(path.read_text(encoding="utf-8"))
    defaults = DQNConfig()
    values, ignored = {}, []
    for f in dataclasses.fields(DQNConfig):
        mine = getattr(given, f.name)
        if f.name in _RESUMABLE or f.name not in saved:
            values[f.name] = mine
            continue
        values[f.name] = saved[f.name]
        if mine != saved[f.name] and mine != getattr(defaults, f.name):
            ignored.append(f"{f.name}={mine} (the run uses {saved[f.name]})")
    return DQNConfig(**values), ignored


def weights_meta(cfg: DQNConfig, env_id: str, n_actions: int, meanings: list[str], metrics: dict[str, Any],
                 recipe: str) -> dict[str, Any]:
    """The dlcli metadata of a DQN weights file (what `--weights-file` and the manifest read)."""
    from dlcli.data.atari import game_title

    return {
        "name": cfg.name or f"dqn.{game_title(env_id).lower()}",
        "arch": "dqn",
        "task": "dqn",
        "config": {"n_actions": n_actions},
        "labels": meanings,
        "preprocess": "atari",
        "preprocess_args": {"env": env_id, "frame_skip": 4, "screen": 84, "stack": 4, "noop_max": 30},
        "metrics": metrics,
        "recipe": recipe,
        "extra": {"env": env_id},
    }


def _recipe(cfg: DQNConfig) -> str:
    keys = ("total_steps", "learning_rate", "buffer_size", "gamma", "target_update", "batch_size", "end_epsilon",
            "exploration_fraction", "learning_starts", "train_freq", "double", "n_step", "seed")
    env = f"dl play-dqn train --env {cfg.env} "
    parts = []
    for k in keys:
        value, flag = getattr(cfg, k), "--steps" if k == "total_steps" else f"--{k.replace('_', '-')}"
        parts.append(flag if value is True else ("--no-double" if k == "double" else f"{flag} {value}"))
    return env + " ".join(parts)


def train_dqn(cfg: DQNConfig, out_dir: Path, *, runtime: Runtime, reporter: Reporter | None = None,
              resume: bool = False, force: bool = False) -> DQNTrainReport:
    """Train (or continue training) a DQN; see the module docstring for what it writes."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from dlcli.data.atari import action_meanings, make_env, resolve_game
    from dlcli.models.qnetwork import QNetwork
    from dlcli.evaluation.dqn import evaluate
    from dlcli.training.checkpoint import Interrupted, load_checkpoint, save_checkpoint
    from dlcli.training.replay import ReplayBuffer
    from dlcli.training.run import RunFolder, check_run_folder
    from dlcli.weights.store import save_weights_file, sha256_file

    cfg.validate()
    reporter = reporter or NullReporter()
    out_dir = Path(out_dir).expanduser()
    env_id = resolve_game(cfg.env)
    ckpt_path = out_dir / "checkpoint.pt"
    check_run_folder(out_dir, resume=resume, force=force)  # before the emulator starts

    env = make_env(env_id, training=True, seed=cfg.seed)
    n_actions = int(env.action_space.n)
    meanings = action_meanings(env)
    if cfg.seed is not None:
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
    q = runtime.place(QNetwork(n_actions))
    target = runtime.place(QNetwork(n_actions))
    target.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=cfg.learning_rate)
    # fp16 autocast needs loss scaling (small TD errors underflow in fp16 gradients); bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(runtime.device.type) if runtime.dtype == torch.float16 else None
    buffer = ReplayBuffer(cfg.buffer_size, seed=cfg.seed)

    step, episodes, evaluations = 0, 0, []
    returns: deque[float] = deque(maxlen=100)
    best_eval: float | None = None
    refill_until = 0
    run_config = dataclasses.asdict(cfg) | {"env_id": env_id}
    if resume:
        state = load_checkpoint(ckpt_path, model=q, optimizer=opt, scaler=scaler)
        saved = state["config"]
        changed = [k for k in run_config if k not in _RESUMABLE and k in saved and saved[k] != run_config[k]]
        if changed:
            raise InputError(f"--resume continues a run with other settings ({', '.join(changed)}); "
                             "start a new --out folder or use the run's settings")
        target.load_state_dict(state["extra"]["target"])
        prog = state["progress"]
        step, episodes, best_eval = int(prog["step"]), int(prog["episodes"]), prog.get("best_eval")
        returns.extend(prog.get("returns", []))
        evaluations = list(prog.get("evaluations", []))
        buf_path = out_dir / "replay.npz"
        if buf_path.is_file():
            with np.load(buf_path, allow_pickle=False) as data:
                buffer.load_state_dict({k: data[k] for k in data.files})
            reporter.message(f"resumed at step {step:,} with {len(buffer):,} replayed transitions")
        else:
            refill_until = step + cfg.learning_starts
            reporter.message(f"resumed at step {step:,}; refilling {cfg.learning_starts:,} transitions before learning")
    if step >= cfg.total_steps:
        reporter.message(f"the run already reached {step:,} of {cfg.total_steps:,} steps")

    run = RunFolder.open(out_dir, task="dqn", config=run_config, resume=resume, force=force,
                         owned_extra=("replay.npz",), reporter=reporter)
    if resume:
        run.write_json("config.json", {"task": "dqn", **run_config})  # a longer --steps is the run's own now

    def save_weights(path: Path, metrics: dict[str, Any]) -> None:
        save_weights_file(path, q.state_dict(), weights_meta(cfg, env_id, n_actions, meanings, metrics, _recipe(cfg)))

    def checkpoint() -> None:
        progress = {"step": step, "episodes": episodes, "best_eval": best_eval, "returns": list(returns),
                    "evaluations": evaluations}
        if cfg.checkpoint_buffer:
            from dlcli.atomic import atomic_target

            with atomic_target(out_dir / "replay.npz") as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **buffer.state_dict())
        save_checkpoint(ckpt_path, model=q, optimizer=opt, scaler=scaler, progress=progress, config=run_config,
                        extra_state={"target": target.state_dict()})

    def update() -> float:
        batch = buffer.sample(cfg.batch_size, n_step=cfg.n_step, gamma=cfg.gamma)
        obs = runtime.to(torch.from_numpy(batch["obs"]))
        next_obs = runtime.to(torch.from_numpy(batch["next_obs"]))
        actions = runtime.to(torch.from_numpy(batch["actions"]))
        rewards = runtime.to(torch.from_numpy(batch["rewards"]))
        dones = runtime.to(torch.from_numpy(batch["dones"]))
        discounts = runtime.to(torch.from_numpy(batch["discounts"]))
        with torch.no_grad(), runtime.autocast():
            next_target = target(next_obs).float()
            if cfg.double:
                best = q(next_obs).argmax(dim=1, keepdim=True)
                next_v = next_target.gather(1, best).squeeze(1)
            else:
                next_v = next_target.max(dim=1).values
            td_target = rewards + discounts * next_v * (1.0 - dones)
        with runtime.autocast():
            q_sa = q(obs).float().gather(1, actions.unsqueeze(1)).squeeze(1)
        loss = F.smooth_l1_loss(q_sa, td_target)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return float(loss.detach())

    def periodic_eval() -> None:
        nonlocal best_eval
        q.eval()
        outcomes = evaluate(q, runtime, env_id, cfg.eval_episodes, seed=10_000 + step, record_first=run.takes_images)
        q.train()
        if run.takes_images and outcomes and outcomes[0].frames:
            run.log_image("eval/game", game_strip(outcomes[0].frames), step=step)
        scores = [o.score for o in outcomes]
        mean = float(np.mean(scores))
        row = {"step": step, "eval_mean": mean, "eval_std": float(np.std(scores)), "eval_episodes": len(scores)}
        evaluations.append(row)
        run.log("eval", {k: v for k, v in row.items() if k != "step"}, step=step)
        reporter.row({"step": step, "eval_mean": round(mean, 2), "eval_std": round(row["eval_std"], 2)})
        if best_eval is None or mean > best_eval:
            best_eval = mean
            save_weights(run.best, {"eval_mean": mean, "eval_episodes": len(scores), "step": step})
            run.note_best("eval_mean", mean, step=step)

    obs, _ = env.reset(seed=cfg.seed)
    t_start = time.perf_counter()
    t_ckpt = time.monotonic()
    t_log, s_log = time.perf_counter(), step
    start_step = step
    losses: deque[float] = deque(maxlen=100)
    reporter.start(f"DQN on {env_id}", total=cfg.total_steps, unit="steps")
    reporter.advance(step)
    # The bar moves about once a second (a step on a CPU can take 0.1 s, a log row may be minutes apart).
    t_bar, s_bar = time.perf_counter(), step
    try:
        while step < cfg.total_steps:
            eps = cfg.epsilon(step)
            if random.random() < eps:
                action = random.randrange(n_actions)
            else:
                with torch.no_grad(), runtime.autocast():
                    action = int(q(runtime.to(torch.from_numpy(obs).unsqueeze(0))).argmax(dim=1).item())
            next_obs, reward, terminated, truncated, info = env.step(action)
            buffer.add(obs, action, float(reward), bool(terminated), bool(truncated))
            if "episode" in info:
                episodes += 1
                returns.append(float(info["episode"]["r"]))
            obs = next_obs
            if terminated or truncated:
                obs, _ = env.reset()
            step += 1

            if step > cfg.learning_starts and step > refill_until and step % cfg.train_freq == 0:
                losses.append(update())
            if step % cfg.target_update == 0:
                if cfg.tau >= 1.0:
                    target.load_state_dict(q.state_dict())
                else:
                    with torch.no_grad():
                        for tp, qp in zip(target.parameters(), q.parameters()):
                            tp.lerp_(qp, cfg.tau)
            if step % cfg.log_every == 0 or step == cfg.total_steps:
                now = time.perf_counter()
                sps = (step - s_log) / max(now - t_log, 1e-9)
                t_log, s_log = now, step
                mean100 = float(np.mean(returns)) if returns else None
                row = {"step": step, "episodes": episodes, "return_100": mean100,
                       "return": returns[-1] if returns else None, "epsilon": round(eps, 4),
                       "loss": float(np.mean(losses)) if losses else None, "lr": opt.param_groups[0]["lr"],
                       "steps_per_s": round(sps, 1)}
                run.log("train", {k: v for k, v in row.items() if k != "step"}, step=step)
                reporter.row({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                              if k not in ("return", "lr")})
            now = time.perf_counter()
            if now - t_bar >= 1.0 or step == cfg.total_steps:
                bar_sps = (step - s_bar) / max(now - t_bar, 1e-9)
                reporter.advance(step - s_bar, episodes=episodes,
                                 ret100=round(float(np.mean(returns)), 2) if returns else None,
                                 eps=round(eps, 3), sps=round(bar_sps, 1))
                t_bar, s_bar = now, step
            if cfg.eval_every and step % cfg.eval_every == 0:
                periodic_eval()
            if time.monotonic() - t_ckpt >= cfg.checkpoint_every:
                checkpoint()
                t_ckpt = time.monotonic()
    except KeyboardInterrupt:
        checkpoint()
        reporter.finish()
        run.interrupted()
        raise Interrupted(ckpt_path) from None
    finally:
        env.close()
    reporter.finish()
    checkpoint()
    seconds = time.perf_counter() - t_start
    mean100 = float(np.mean(returns)) if returns else None
    final = run.last
    save_weights(final, {"train_return_100": mean100, "step": step, "episodes": episodes})
    best = run.best
    run.finish(steps=step, episodes=episodes, return_100=mean100, best_eval=best_eval)
    return DQNTrainReport(
        env=env_id, out=out_dir, steps=step, episodes=episodes, mean_return_100=mean100, best_eval=best_eval,
        final_weights=final, best_weights=best if best.is_file() else None, evaluations=tuple(evaluations),
        seconds=round(seconds, 2), steps_per_second=(step - start_step) / seconds if seconds > 0 else math.nan,
        provenance=Provenance.collect(runtime, weights_meta(cfg, env_id, n_actions, meanings, {}, "")["name"],
                                      sha256_file(final)),
    )


def game_strip(frames: list[Any], count: int = 8) -> Any:
    """`count` frames spread evenly over a game, side by side (HxWx3 uint8): what the agent did,
    at a glance, for TensorBoard."""
    import numpy as np

    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    return np.concatenate([np.asarray(frames[i], dtype=np.uint8) for i in picks], axis=1)


def export_weights(src: Path, dest: Path, *, metrics: dict[str, Any] | None = None, name: str | None = None) -> dict[str, Any]:
    """Copy the Q-network of a run (a weights file it wrote, or its checkpoint.pt / run folder) to
    `dest` as a .safetensors file with dlcli metadata, merging in `metrics` (e.g. a measured
    evaluation). Returns the manifest record for `weights/manifest.json` (file name, sha256, …)."""
    import torch

    from dlcli.weights.store import read_state_dict, save_weights_file

    src = Path(src)
    if src.is_dir():
        src = src / "best.safetensors" if (src / "best.safetensors").is_file() else src / "checkpoint.pt"
    if not src.is_file():
        raise InputError(f"no weights or checkpoint at {src}")
    if src.suffix == ".safetensors":
        state, meta = read_state_dict(src)
    else:
        payload = torch.load(src, map_location="cpu", weights_only=True)
        state = payload["model"]
        cfg_saved = json.loads(payload["config"])
        fields = {f.name for f in dataclasses.fields(DQNConfig)}
        cfg = DQNConfig(**{k: v for k, v in cfg_saved.items() if k in fields})
        from dlcli.data.atari import make_env

        env = make_env(cfg_saved["env_id"], training=False)
        meanings = list(env.unwrapped.get_action_meanings())
        env.close()
        prog = json.loads(payload["progress"])
        meta = weights_meta(cfg, cfg_saved["env_id"], len(meanings), meanings, {"step": prog.get("step")}, _recipe(cfg))
    meta = dict(meta)
    meta["metrics"] = {**meta.get("metrics", {}), **(metrics or {})}
    if name:
        meta["name"] = name
    sha = save_weights_file(Path(dest), state, meta)
    record = {k: meta[k] for k in ("name", "arch", "task", "preprocess", "preprocess_args", "labels", "metrics",
                                   "recipe", "config", "extra")}
    record.update(file=Path(dest).name, sha256=sha)
    return record
