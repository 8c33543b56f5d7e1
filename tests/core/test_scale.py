"""Scale out (on CPU): a model split over CPU + disk, two ranks with torchrun, quantization errors, diff."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from moe_tui.cache.store import RunStore
from moe_tui.cli import main
from moe_tui.core.extract.distributed import DistInfo, dist_info, gpus_for_rank, rank_max_memory
from moe_tui.core.extract.models import resolve_device_map, resolve_max_memory
from moe_tui.core.extract.pipeline import ExtractOptions, extract
from moe_tui.errors import CacheError, ModelError
from tests.factories_model import ewt_tiny_model
from tests.helpers import EWT_DEV, EWT_TEST, needs_ewt

pytestmark = pytest.mark.slow  # seconds per test: child processes, training, full flows

N_SENT = 12


def collect(events: list):
    """A progress callback that keeps each event in its JSON wire form (a dict, as --progress json prints it)."""
    return lambda ev: events.append(ev.to_dict())


@pytest.fixture(scope="module")
def tiny():
    return ewt_tiny_model("mixtral")


@pytest.fixture(scope="module")
def ref(tiny, tmp_path_factory):
    """The single-process, single-device fp32 run every other run is compared with."""
    cache = tmp_path_factory.mktemp("ref_cache")
    return extract(_opts(tiny, cache))


def _opts(model, cache, **kw):
    base = dict(model=str(model), data=str(EWT_DEV), max_sentences=N_SENT, batch_size=3, cache_dir=str(cache),
                device="cpu", dtype="float32")
    base.update(kw)
    return ExtractOptions(**base)


def _files(run_dir):
    return {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.npy"))}


# ----------------------------------------------------------------------------- parsing
def test_device_map_and_max_memory_parsing(tmp_path):
    assert resolve_device_map("auto") == "auto" and resolve_device_map(None) is None
    f = tmp_path / "map.json"
    f.write_text(json.dumps({"model.embed_tokens": "cpu", "model.layers.0": "cuda:1", "model.layers.1": "0",
                             "model.layers.2": "disk"}))
    assert resolve_device_map(str(f)) == {"model.embed_tokens": "cpu", "model.layers.0": 1, "model.layers.1": 0,
                                          "model.layers.2": "disk"}
    with pytest.raises(ModelError, match="unknown device map"):
        resolve_device_map("everywhere")
    # the CLI turns GPU0=... into "0"; accelerate wants int keys for GPUs
    assert resolve_max_memory({"0": "70GiB", "cuda:1": "70GiB", "cpu": "200GiB"}) == {
        0: "70GiB", 1: "70GiB", "cpu": "200GiB"}
    assert dist_info(True, {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == DistInfo(3, 4, 1, "torch")
    assert dist_info(True, {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1"}).launcher == "slurm"
    assert dist_info(True, {}) == DistInfo() and dist_info(False, {"RANK": "1", "WORLD_SIZE": "2"}) == DistInfo()
    assert [i for i in range(7) if DistInfo(1, 3).owns(i)] == [1, 4]
    # --distributed --device-map with 4 ranks on an 8-GPU node: each rank maps over its own 2 GPUs
    info = dist_info(True, {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"})
    assert gpus_for_rank(info, 8) == [2, 3]
    assert rank_max_memory(info, {"2": "60GiB", "cpu": "100GiB"}, 8, lambda i: 1000 + i) == {
        2: "60GiB", 3: 1003, "cpu": "100GiB"}
    assert rank_max_memory(DistInfo(0, 2, 0, "torch", 1), None, 8, lambda i: 0) is None
    assert dist_info(True, {"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4(x2)"}
                     ).local_world_size == 4
    with pytest.raises(ModelError, match="only 2 GPU"):
        gpus_for_rank(info, 2)


# ----------------------------------------------------------------------------- one model, several devices
@needs_ewt
def test_cpu_and_disk_offload_gives_the_same_routes(tiny, ref, tmp_path):
    """Layers 1-2 offloaded to disk (accelerate), the rest on the CPU: same experts, same weights."""
    dmap = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
            "model.layers.2": "disk", "model.layers.3": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu",
            "lm_head": "cpu"}
    mfile = tmp_path / "map.json"
    mfile.write_text(json.dumps(dmap))
    with pytest.raises(ModelError, match="--offload-folder"):
        extract(_opts(tiny, tmp_path / "c0", device_map=str(mfile)))
    off = tmp_path / "offload"
    run_dir = extract(_opts(tiny, tmp_path / "c1", device_map=str(mfile), offload_folder=str(off)))
    assert run_dir.name == ref.name  # the device map is not part of the run identity
    assert any(off.iterdir())  # the disk-offloaded weights really went there
    a, b = RunStore().open(ref), RunStore().open(run_dir)
    np.testing.assert_array_equal(a.experts, b.experts)
    np.testing.assert_allclose(a.weights.astype(np.float32), b.weights.astype(np.float32), atol=1e-3)


# ----------------------------------------------------------------------------- one corpus, several ranks
@needs_ewt
def test_torchrun_two_ranks_make_the_single_process_run(tiny, ref, tmp_path):
    cache = tmp_path / "shared_cache"
    env = {**os.environ, "MOE_TUI_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "moe_tui.cli", "extract", "--model", str(tiny), "--data", str(EWT_DEV), "--max-sentences",
           str(N_SENT), "--batch-size", "3", "--dtype", "float32", "--progress", "json", "--distributed"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rank 1 of 2: its batches are written" in proc.stderr
    run_dir = cache / ref.name  # same run id as the single-process run
    assert RunStore(cache).is_complete(ref.name)
    assert _files(run_dir) == _files(ref)  # byte-identical arrays, same token order
    assert not (run_dir / "shards").exists()


@needs_ewt
def test_dead_rank_leaves_shards_that_a_relaunch_resumes(tiny, ref, tmp_path, monkeypatch):
    """Rank 0 of 2 gives up waiting (rank 1 'died'); rank 1 comes later; a plain run finishes the rest."""
    cache = tmp_path / "c"
    monkeypatch.setenv("MOE_TUI_DIST_TIMEOUT", "0.5")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(CacheError, match="a rank died"):
        extract(_opts(tiny, cache, distributed=True))
    shards = sorted(p.name for p in (cache / ref.name / "shards").glob("shard-*.npz"))
    assert shards == ["shard-00000.npz", "shard-00002.npz"]  # rank 0's: 0 and 2 of 4
    monkeypatch.setenv("RANK", "1")
    events = []
    assert extract(_opts(tiny, cache, distributed=True), progress=collect(events)) == cache / ref.name
    assert not RunStore(cache).is_complete(ref.name)  # rank 1 never finalizes
    assert len(list((cache / ref.name / "shards").glob("shard-*.npz"))) == 4
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k)
    events = []
    run_dir = extract(_opts(tiny, cache), progress=collect(events))  # relaunch, any world size
    assert not [e for e in events if e["event"] == "progress"]  # nothing redone
    assert _files(run_dir) == _files(ref)


# ----------------------------------------------------------------------------- quantization
@pytest.mark.parametrize("quant,needs", [("8bit", "bitsandbytes"), ("4bit", "bitsandbytes"), ("fp8", "CUDA GPU")])
@needs_ewt
def test_quantization_without_backend_is_one_line_exit_2(tiny, tmp_path, capsys, quant, needs):
    code = main(["extract", "--model", str(tiny), "--data", str(EWT_DEV), "--max-sentences", "2",
                 "--quantization", quant, "--cache-dir", str(tmp_path), "--progress", "none"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("moe-tui: error: --quantization " + quant)
    assert needs in err and "missing here:" in err
    assert not any(tmp_path.iterdir())  # nothing was created


# ----------------------------------------------------------------------------- diff
@needs_ewt
def test_diff_fp32_vs_bf16_identical_and_other_corpus(tiny, ref, capsys):
    bf16 = extract(_opts(tiny, ref.parent, dtype="bfloat16"))
    assert bf16 != ref
    assert main(["diff", str(ref), str(bf16)]) == 0
    out = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    share = float(out["share_differing"])
    assert 0.0 < share < 1.0, share
    assert main(["diff", str(ref), str(bf16), "--by", "layer"]) == 0
    by_layer = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert by_layer[0][:4] == ["layer", "token_layers", "differing_sets", "share_differing"]
    # the per-layer counts add up to the overall count
    assert sum(int(r[2]) for r in by_layer[1:]) == int(out["differing_sets"])
    assert main(["diff", str(ref), str(bf16), "--by", "pos", "--out", str(ref.parent / "by_pos.csv")]) == 0
    by_pos = (ref.parent / "by_pos.csv").read_text().splitlines()
    assert by_pos[0].startswith("pos,tokens,token_layers,differing_sets")
    assert sum(int(r.split(",")[3]) for r in by_pos[1:]) == int(out["differing_sets"])
    capsys.readouterr()
    assert main(["diff", str(ref), str(ref)]) == 0
    out = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert float(out["share_differing"]) == 0.0 and out["differing_sets"] == "0"
    other = extract(_opts(tiny, ref.parent, data=str(EWT_TEST)))
    assert main(["diff", str(ref), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not hold the same tokens" in err
