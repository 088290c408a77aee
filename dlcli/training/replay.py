"""A replay buffer that stores every frame once, as uint8.

A DQN observation is a stack of the last 4 frames, so consecutive observations share 3 of
them. Storing stacks (or floats) costs 4x (or 16x) the memory; here slot i holds only the newest
frame of the observation seen at step i, with the action, reward and done that followed it, and
stacks are rebuilt at sampling time by looking back up to 3 slots. A stack never reaches into the
previous episode: frames before the episode's first slot are replaced by that first frame (the
same padding the environment's frame stack uses at reset).

Memory per transition: 84*84 frame bytes + 1 (action) + 4 (reward) + 1 (done) + 4 (episode id)
+ 1 (valid) = 7067 bytes, i.e. 1.0016x of the frames alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ReplayBuffer:
    """Circular buffer of `capacity` transitions for frame-stacked uint8 observations.

    Call `add(obs, action, reward, terminated, truncated)` once per environment step with the
    observation the action was taken in (shape (stack, H, W)); after an episode ends, the next
    `add` is taken as the first step of a new episode. `sample(batch)` returns numpy arrays
    obs (B, stack, H, W) uint8, actions (B,) int64, rewards (B,) float32, next_obs, dones (B,) float32.
    """

    def __init__(self, capacity: int, frame_shape: tuple[int, int] = (84, 84), stack: int = 4,
                 seed: int | None = None) -> None:
        if capacity < stack + 2:
            raise ValueError(f"replay capacity must be at least {stack + 2}, got {capacity}")
        self.capacity = int(capacity)
        self.stack = int(stack)
        self.frame_shape = tuple(frame_shape)
        self.frames = np.zeros((capacity, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros(capacity, dtype=np.uint8)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.dones = np.zeros(capacity, dtype=np.bool_)
        # Episode id per slot: lets a stack stop at the episode's first frame, and recognises a
        # slot overwritten by a later episode.
        self.episode = np.full(capacity, -1, dtype=np.int32)
        # False for a truncated step (its next observation is not stored) and the newest slot.
        self.valid = np.zeros(capacity, dtype=np.bool_)
        self.cursor = 0
        self.added = 0
        self._episode_id = 0
        self._new_episode = True
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return min(self.added, self.capacity)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.frames, self.actions, self.rewards, self.dones, self.episode, self.valid))

    def add(self, obs: np.ndarray, action: int, reward: float, terminated: bool, truncated: bool = False) -> None:
        if self._new_episode and self.added:
            self._episode_id += 1
        i = self.cursor
        self.frames[i] = obs[-1]
        self.actions[i] = action
        self.rewards[i] = reward
        self.dones[i] = terminated
        self.episode[i] = self._episode_id
        # A terminal step needs no next observation (its target does not bootstrap); a truncated
        # one would, and that observation is never stored, so it is not sampled.
        self.valid[i] = bool(terminated) or not truncated
        self._new_episode = bool(terminated or truncated)
        self.cursor = (i + 1) % self.capacity
        self.added += 1

    def _stack_indices(self, idx: np.ndarray) -> np.ndarray:
        """Slot indices (B, stack) of the frames of the observation at slots idx, oldest first,
        padded with the episode's first frame instead of crossing into the previous episode."""
        out = np.empty((len(idx), self.stack), dtype=np.int64)
        out[:, -1] = idx
        cur = idx.copy()
        ep = self.episode[idx]
        # Once the buffer has wrapped, the slot before the oldest one holds the newest frame.
        oldest = self.cursor if self.added >= self.capacity else 0
        for k in range(1, self.stack):
            back = (cur - 1) % self.capacity
            step = (self.episode[back] == ep) & (cur != oldest)
            cur = np.where(step, back, cur)
            out[:, -1 - k] = cur
        return out

    def sample(self, batch_size: int, n_step: int = 1, gamma: float = 0.99) -> dict[str, np.ndarray]:
        """A batch of transitions. With n_step > 1 (multi-step returns, as in Rainbow) `rewards` is
        the discounted sum of up to n rewards (stopping at the episode's end), `next_obs` the
        observation n steps later and `discounts` gamma**m for the m steps actually summed; with
        n_step 1 these are the one-step reward, next observation and gamma."""
        n = len(self)
        if n < n_step + 1:
            raise ValueError(f"the replay buffer holds fewer than {n_step + 1} transitions")
        newest = (self.cursor - 1) % self.capacity

        def usable(i: np.ndarray) -> np.ndarray:
            # All n slots after i must have been written (age >= n); truncated steps are unusable.
            ok = self.valid[i] & (((newest - i) % self.capacity) >= n_step)
            alive = ~self.dones[i]
            for k in range(1, n_step):
                j = (i + k) % self.capacity
                ok &= ~alive | (self.valid[j] & (self.episode[j] == self.episode[i]))
                alive &= ~self.dones[j]
            return ok

        idx = self.rng.integers(0, n, size=batch_size)
        ok = usable(idx)
        # Resample the few unusable picks (the newest slots, truncated steps) until all are usable.
        for _ in range(100):
            if ok.all():
                break
            bad = ~ok
            idx[bad] = self.rng.integers(0, n, size=int(bad.sum()))
            ok = usable(idx)
        if not ok.all():
            raise ValueError("the replay buffer holds no usable transitions yet")
        returns = np.zeros(batch_size, dtype=np.float32)
        discounts = np.ones(batch_size, dtype=np.float32)
        alive = np.ones(batch_size, dtype=np.bool_)
        nxt = idx.copy()
        for k in range(n_step):
            j = (idx + k) % self.capacity
            returns += np.where(alive, discounts * self.rewards[j], 0.0).astype(np.float32)
            discounts = np.where(alive, discounts * gamma, discounts).astype(np.float32)
            nxt = np.where(alive, (j + 1) % self.capacity, nxt)
            alive &= ~self.dones[j]
        obs = self.frames[self._stack_indices(idx)]
        # For an episode's last step the next slot is another episode's first frame: harmless,
        # the target ignores it (multiplied by 1 - done).
        next_obs = self.frames[self._stack_indices(nxt)]
        return {
            "obs": obs,
            "actions": self.actions[idx].astype(np.int64),
            "rewards": returns,
            "next_obs": next_obs,
            "dones": (~alive).astype(np.float32),
            "discounts": discounts,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue filling and sampling (for --checkpoint-buffer)."""
        return {
            "frames": self.frames[: len(self)], "actions": self.actions[: len(self)],
            "rewards": self.rewards[: len(self)], "dones": self.dones[: len(self)],
            "episode": self.episode[: len(self)], "valid": self.valid[: len(self)],
            "counters": np.array([self.capacity, self.cursor, self.added, self._episode_id, int(self._new_episode)],
                                 dtype=np.int64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        capacity, cursor, added, episode_id, new_episode = (int(v) for v in state["counters"])
        if capacity != self.capacity:
            raise ValueError(f"saved replay buffer has capacity {capacity}, this run uses {self.capacity}")
        n = len(state["frames"])
        for name in ("frames", "actions", "rewards", "dones", "episode", "valid"):
            getattr(self, name)[:n] = state[name]
        self.cursor, self.added, self._episode_id, self._new_episode = cursor, added, episode_id, bool(new_episode)
