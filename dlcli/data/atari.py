"""Atari environments (gymnasium 1.x + ale-py) with the standard DQN preprocessing.

Preprocessing (Mnih et al. 2015; Machado et al. 2018 for the evaluation details):
- frame skip 4, max-pooled over the last two raw frames (removes Atari sprite flicker),
- 84x84 grey uint8 frames, 4-frame stack, up to 30 random no-ops at reset,
- no sticky actions (repeat_action_probability 0) as in the Nature protocol,
- training only: a lost life ends the *training* episode (the game goes on) and rewards are
  clipped to their sign; evaluation plays full games with raw scores.
Games that need FIRE to launch (Breakout) get FIRE pressed after each reset.

gymnasium and ale_py are imported inside functions: `dl --help` must not pay for them.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from dlcli.errors import DataError, InputError

FRAME_SKIP = 4
NOOP_MAX = 30
SCREEN = 84
STACK = 4
# 108000 raw frames = 30 minutes of play: the standard cap on an evaluation game.
MAX_FRAMES = 108_000


def _gym() -> Any:
    try:
        import ale_py
        import gymnasium as gym
    except ImportError as exc:
        raise DataError(
            f"Atari support needs gymnasium and ale-py ({exc.name} is missing); "
            "install them with `pip install 'gymnasium>=1.0' 'ale-py>=0.9'`"
        ) from None
    gym.register_envs(ale_py)
    return gym


def _game_ids() -> dict[str, str]:
    """lower-case game key (e.g. "breakout", "montezumarevenge") -> env id "ALE/Breakout-v5"."""
    gym = _gym()
    out: dict[str, str] = {}
    for env_id in gym.envs.registry:
        m = re.fullmatch(r"ALE/(\w+)-v5", env_id)
        if m:
            out[m.group(1).lower()] = env_id
    return out


def _key(name: str) -> str:
    # "ALE/Breakout-v5", "BreakoutNoFrameskip-v4", "breakout", "Space Invaders" all reduce to a key.
    s = name.strip()
    s = re.sub(r"^ALE/", "", s, flags=re.IGNORECASE)
    s = re.sub(r"-v\d+$", "", s)
    s = re.sub(r"(NoFrameskip|Deterministic)$", "", s)
    return re.sub(r"[^a-z0-9]", "", s.lower())


def resolve_game(name: str) -> str:
    """A user's game name -> the gymnasium env id (`Breakout`, `breakout`, `ALE/Breakout-v5` ->
    `ALE/Breakout-v5`). Unknown names get a "did you mean"."""
    ids = _game_ids()
    key = _key(name)
    if key in ids:
        return ids[key]
    pretty = {ids[k].split("/")[1].rsplit("-", 1)[0]: k for k in ids}
    close = difflib.get_close_matches(key, list(ids), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(ids[c].split('/')[1].rsplit('-', 1)[0]) for c in close)}?" if close else ""
    raise InputError(f"unknown Atari game {name!r}{hint} ({len(pretty)} games; e.g. Breakout, Pong, SpaceInvaders)")


def game_title(env_id: str) -> str:
    """`ALE/Breakout-v5` -> `Breakout`."""
    return env_id.split("/")[-1].rsplit("-", 1)[0]


def _rom_key(env_id: str) -> str:
    gym = _gym()
    return str(gym.spec(env_id).kwargs.get("game", _key(env_id)))


def check_rom(env_id: str) -> None:
    """Raise a DataError naming the game when ale-py has no ROM for it."""
    from ale_py import roms

    game = _rom_key(env_id)
    try:
        path = roms.get_rom_path(game)
    except Exception:  # older/newer ale-py raise different errors for unknown ROMs
        path = None
    if path is None or not path.exists():
        raise DataError(
            f"the Atari ROM for {game_title(env_id)} ({game!r}) is not installed; ale-py >= 0.9 bundles "
            "the ROMs: reinstall it with `pip install --force-reinstall ale-py`"
        )


def atari_roms_status() -> dict[str, Any]:
    """What `dl doctor` reports: whether gymnasium/ale-py import and how many ROMs are present.

    Keys: ok (bool), gymnasium, ale_py (versions or None), roms (count found), games (count
    known), missing (a few game names without ROMs), message (one line for the user)."""
    status: dict[str, Any] = {"ok": False, "gymnasium": None, "ale_py": None, "roms": 0, "games": 0,
                              "missing": [], "message": ""}
    try:
        import ale_py
        import gymnasium
        from ale_py import roms
    except ImportError as exc:
        status["message"] = f"{exc.name} is not installed: pip install 'gymnasium>=1.0' 'ale-py>=0.9'"
        return status
    status["gymnasium"] = gymnasium.__version__
    status["ale_py"] = getattr(ale_py, "__version__", "unknown")
    try:
        ids = sorted(roms.get_all_rom_ids())
    except Exception as exc:  # a broken install: report it rather than crash doctor
        status["message"] = f"ale-py cannot list its ROMs ({exc})"
        return status
    present, missing = 0, []
    for rom in ids:
        try:
            path = roms.get_rom_path(rom)
        except Exception:
            path = None
        if path is not None and path.exists():
            present += 1
        else:
            missing.append(rom)
    status.update(roms=present, games=len(ids), missing=missing[:10])
    status["ok"] = present > 0 and not missing
    if status["ok"]:
        status["message"] = f"{present} Atari ROMs (ale-py {status['ale_py']})"
    elif present:
        status["message"] = f"{present}/{len(ids)} Atari ROMs; missing e.g. {', '.join(missing[:5])}"
    else:
        status["message"] = "no Atari ROMs found; reinstall ale-py (>= 0.9 bundles them)"
    return status


@dataclass(frozen=True)
class EnvConfig:
    """How an environment is built; training and evaluation differ only in `training`."""

    env_id: str
    training: bool
    noop_max: int = NOOP_MAX
    frame_skip: int = FRAME_SKIP
    screen: int = SCREEN
    stack: int = STACK
    max_frames: int = MAX_FRAMES


def _wrappers() -> tuple[type, type, type]:
    gym = _gym()

    class EpisodicLife(gym.Wrapper):
        """A lost life ends the training episode, but reset() only restarts the game when it is
        really over (otherwise one no-op step continues it), so the agent sees every life."""

        def __init__(self, env: Any) -> None:
            super().__init__(env)
            self.lives = 0
            self.game_over = True

        def step(self, action: Any) -> Any:
            obs, reward, terminated, truncated, info = self.env.step(action)
            self.game_over = terminated or truncated
            lives = self.env.unwrapped.ale.lives()
            if 0 < lives < self.lives:
                terminated = True
            self.lives = lives
            return obs, reward, terminated, truncated, info

        def reset(self, **kwargs: Any) -> Any:
            if self.game_over:
                obs, info = self.env.reset(**kwargs)
            else:
                obs, _, terminated, truncated, info = self.env.step(0)
                if terminated or truncated:
                    obs, info = self.env.reset(**kwargs)
            self.lives = self.env.unwrapped.ale.lives()
            self.game_over = False
            return obs, info

    class FireReset(gym.Wrapper):
        """Press FIRE after reset: Breakout and others wait for it before the ball is served."""

        def reset(self, **kwargs: Any) -> Any:
            self.env.reset(**kwargs)
            obs, _, terminated, truncated, info = self.env.step(1)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
            return obs, info

    class ClipReward(gym.RewardWrapper):
        """Rewards to their sign: one learning rate fits every game's score scale."""

        def reward(self, reward: float) -> float:
            return float((reward > 0) - (reward < 0))

    return EpisodicLife, FireReset, ClipReward


def make_env(game: str, *, training: bool, seed: int | None = None, render_mode: str | None = None,
             noop_max: int = NOOP_MAX) -> Any:
    """A preprocessed Atari env: observations are uint8 arrays (4, 84, 84).

    `info["episode"]` ({"r": raw score, "l": agent steps}) appears when a full game ends, even in
    training mode where a lost life already ends the episode the agent sees."""
    gym = _gym()
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, RecordEpisodeStatistics

    env_id = resolve_game(game)
    check_rom(env_id)
    EpisodicLife, FireReset, ClipReward = _wrappers()
    try:
        env = gym.make(env_id, frameskip=1, repeat_action_probability=0.0, full_action_space=False,
                       max_num_frames_per_episode=MAX_FRAMES, render_mode=render_mode)
    except Exception as exc:  # ale-py errors are plain RuntimeErrors/ValueErrors
        raise DataError(f"cannot start {game_title(env_id)}: {exc}") from None
    # Statistics below the life/clip wrappers: they see whole games and raw scores.
    env = RecordEpisodeStatistics(env)
    env = AtariPreprocessing(env, noop_max=noop_max, frame_skip=FRAME_SKIP, screen_size=SCREEN,
                             terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)
    if training:
        env = EpisodicLife(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    if training:
        env = ClipReward(env)
    env = FrameStackObservation(env, STACK)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def action_meanings(env: Any) -> list[str]:
    return list(env.unwrapped.get_action_meanings())
