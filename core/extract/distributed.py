"""One corpus across processes and nodes: ``moe-tui extract ... --distributed``.

Launched by ``torchrun`` / ``accelerate launch`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) or by
``srun`` alone (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``). Every rank writes into the same
run directory, which must be on a file system all ranks share (``$MOE_TUI_CACHE`` or ``--cache-dir``).

Protocol (no process group, no network: only files, so nothing times out while ranks work):

* every rank reads the corpus, loads the model on its device (``cuda:LOCAL_RANK``, else ``cpu``) and
  computes the same deterministic batch plan; rank 0 holds the run lock, writes ``identity.json`` and
  ``shards/plan.json`` (keeping a compatible plan of an interrupted run); the other ranks wait until
  a plan.json covering the same sentences is there and use it;
* shard ``i`` of the plan belongs to rank ``i % WORLD_SIZE``; a rank skips shards already on disk and
  writes its others atomically, exactly as a single process would;
* ranks other than 0 exit when their shards are written; rank 0 then polls for every shard and
  finalizes the run (merged in corpus order, so the run is byte-identical to a single-process run:
  the run id does not depend on the world size);
* a rank that dies leaves only complete shards; launching again (any world size) resumes.

``MOE_TUI_DIST_TIMEOUT`` (seconds, default: no limit) bounds each wait, for launchers that do not
stop the other ranks when one dies (torchrun and srun do).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from moe_tui.errors import CacheError, Cancelled, ModelError

_SHARD_RE = re.compile(r"^shard-(\d+)\.npz$")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "none"  # "torch" (torchrun/accelerate), "slurm" or "none"
    local_world_size: int = 1  # ranks on this node

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def owns(self, shard: int) -> bool:
        """Shard ``i`` of the plan is extracted by rank ``i % world_size``."""
        return shard % self.world_size == self.rank


def _env_int(env, name: str) -> int | None:
    v = env.get(name)
    if v is None or str(v).strip() == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ModelError(f"environment variable {name}={v!r} is not an integer") from None


def dist_info(distributed: bool = True, env=None) -> DistInfo:
    """This process's rank from the launcher's environment (single process when not distributed)."""
    if not distributed:
        return DistInfo()
    env = os.environ if env is None else env
    for launcher, (r, w, lr, lw) in (("torch", ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")),
                                     ("slurm", ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
                                                "SLURM_NTASKS_PER_NODE"))):
        rank, world = _env_int(env, r), _env_int(env, w)
        if rank is None or world is None:
            continue
        local = _env_int(env, lr)
        m = re.match(r"\s*(\d+)", env.get(lw, "") or "")  # SLURM writes e.g. "4(x2)"
        if world < 1 or not 0 <= rank < world:
            raise ModelError(f"bad launcher environment: {r}={rank}, {w}={world}")
        return DistInfo(rank, world, local if local is not None else 0, launcher, int(m.group(1)) if m else 1)
    return DistInfo()


def gpus_for_rank(info: DistInfo, n_gpus: int) -> list[int]:
    """Under ``--distributed --device-map``: the GPUs of this node split evenly among its ranks
    (8 GPUs, 4 ranks per node: local rank 1 gets GPUs 2 and 3)."""
    per = n_gpus // max(1, info.local_world_size)
    if per < 1:
        raise ModelError(f"{info.local_world_size} ranks on this node but only {n_gpus} GPU(s): "
                         "use fewer ranks per node (--nproc-per-node)")
    return list(range(info.local_rank * per, (info.local_rank + 1) * per))


def rank_max_memory(info: DistInfo, max_memory: dict | None, n_gpus: int,
                    free: Callable[[int], int]) -> dict | None:
    """``max_memory`` for this rank's device map: only its own GPUs (the user's cap, else their free
    memory, ``free(i)``), plus the user's cpu/disk entries. None when one rank has the whole node."""
    from moe_tui.core.extract.models import resolve_max_memory

    if n_gpus == 0 or info.local_world_size <= 1:
        return max_memory
    user = resolve_max_memory(max_memory) or {}
    own = gpus_for_rank(info, n_gpus)
    out: dict = {g: user.get(g, free(g)) for g in own}
    out.update({k: v for k, v in user.items() if not isinstance(k, int)})
    return out


def rank_device(info: DistInfo, device: str | None) -> str | None:
    """``--device auto`` under ``--distributed``: ``cuda:LOCAL_RANK`` when CUDA is there, else ``cpu``."""
    if device not in (None, "auto"):
        return device
    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        if info.local_rank >= n and n == 1:  # the launcher gave each task its own GPU (srun --gpus-per-task 1)
            return "cuda:0"
        if info.local_rank >= n:
            raise ModelError(f"LOCAL_RANK {info.local_rank} but only {n} GPU(s) are visible on this node")
        return f"cuda:{info.local_rank}"
    return "cpu"


def _timeout() -> float | None:
    v = os.environ.get("MOE_TUI_DIST_TIMEOUT")
    try:
        return float(v) if v else None
    except ValueError:
        raise ModelError(f"MOE_TUI_DIST_TIMEOUT={v!r} is not a number of seconds") from None


def shards_on_disk(shard_dir: Path, n: int) -> set[int]:
    """Indices ``< n`` of the complete shards in ``shard_dir`` (one directory listing)."""
    try:
        names = os.listdir(shard_dir)
    except FileNotFoundError:
        return set()
    out = set()
    for name in names:
        m = _SHARD_RE.match(name)
        if m and int(m.group(1)) < n:
            out.add(int(m.group(1)))
    return out


def _sleeper(start: float = 0.2, cap: float = 5.0):
    delay = start
    while True:
        time.sleep(delay)
        delay = min(cap, delay * 1.5)
        yield


def wait_for_plan(writer, sentences: list[int], cancelled: Callable[[], bool],
                  on_wait: Callable[[str], None] | None = None) -> list[list[int]]:
    """(ranks > 0) Wait until rank 0 has written a plan.json covering exactly ``sentences``; return it."""
    limit, t0, told = _timeout(), time.monotonic(), False
    for _ in _sleeper():
        plan = writer.load_plan()
        if plan is not None and sorted(i for b in plan for i in b) == sentences:
            return plan
        if cancelled():
            raise Cancelled("extraction cancelled while waiting for rank 0's batch plan")
        if not told and on_wait and time.monotonic() - t0 > 2:
            on_wait("waiting for rank 0 to write the batch plan")
            told = True
        if limit is not None and time.monotonic() - t0 > limit:
            raise CacheError(f"rank 0 wrote no batch plan in {limit:.0f}s under {writer.shard_dir}; "
                             "is the run directory on a file system shared by all ranks?")
    raise AssertionError("unreachable")  # pragma: no cover


def wait_for_shards(writer, n: int, cancelled: Callable[[], bool],
                    on_change: Callable[[set[int]], None] | None = None) -> None:
    """(rank 0) Wait until all ``n`` shards of the plan are on disk; ``on_change(done)`` as they come."""
    limit, t0 = _timeout(), time.monotonic()
    seen: set[int] = set()
    for _ in _sleeper():
        done = shards_on_disk(writer.shard_dir, n)
        if done != seen:
            seen = done
            t0 = time.monotonic()  # the timeout counts from the last shard that appeared
            if on_change:
                on_change(done)
        if len(done) >= n:
            return
        if cancelled():
            raise Cancelled(f"extraction cancelled while waiting for other ranks; {len(done)} of {n} "
                            "batches kept, run the same command again to resume")
        if limit is not None and time.monotonic() - t0 > limit:
            missing = sorted(set(range(n)) - done)
            raise CacheError(f"no new shard for {limit:.0f}s; {len(missing)} of {n} missing (first: {missing[0]}): "
                             "a rank died? launch the same command again to resume")
    raise AssertionError("unreachable")  # pragma: no cover
