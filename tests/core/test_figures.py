"""moe_tui.core.analysis.figures: each figure plots exactly the numbers of the CSV written beside it.

The plotted data is read back from the matplotlib artists (line data, image arrays, scatter offsets) of
the figure that was saved (its PNG bytes equal the file's), and compared with the CSV file read with the
csv module by column name. The routing figures are also checked against a run built so that the answer
is known by hand: every POS always goes to its own two experts, so Spec = 100 and KL = -ln(corpus share).
"""

from __future__ import annotations

import csv
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from moe_tui.core.analysis import figures as F
from moe_tui.core.analysis.options import ReportOptions
from moe_tui.core.analysis.report import report_tables
from moe_tui.core.analysis.view import RunView, form_keys
from moe_tui.core.analysis.writer import write_report
from moe_tui.errors import ReportError

FAST = ReportOptions(seed=0, max_iter=40, ablation_removed=[0, 1, 2], tsne_samples=60, n_permutations=5, n_boot=10,
                     mlp_kwargs={"hidden_layer_sizes": (8,)})

# known run: ADJ has no token; NOUN 60 %, VERB 30 %, X 10 %; POS p always goes to experts 2(p-1), 2(p-1)+1
KNOWN_TAGS = ("ADJ", "NOUN", "VERB", "X")
KNOWN_SHARE = {"NOUN": 0.6, "VERB": 0.3, "X": 0.1}


def known_view(run_id: str = "known_run", model: str = "org/known-moe", T: int = 200, seed: int = 0) -> RunView:
    rng = np.random.default_rng(seed)
    pos = np.array([1] * (6 * T // 10) + [2] * (3 * T // 10) + [3] * (T // 10))
    rng.shuffle(pos)
    first = 2 * (pos - 1)
    experts = np.stack([first, first + 1], axis=1)[:, None, :].repeat(3, axis=1)  # [T, 3 layers, k=2]
    return RunView(model=model, run_id=run_id, tags=KNOWN_TAGS, moe_layers=[2, 5, 7], n_experts=8, top_k=2,
                   experts=experts, pos=pos, **form_keys(np.array([f"w{p}{i % 5}" for i, p in enumerate(pos)])),
                   sentence=np.arange(T) // 10, token_ids=rng.integers(0, 40, T))


def noisy_view(run_id: str, model: str, seed: int, T: int = 240) -> RunView:
    """Routes that depend on POS with noise (probes are imperfect, confusions off the diagonal)."""
    rng = np.random.default_rng(seed)
    tags = ("NOUN", "VERB", "ADP", "PUNCT")
    pos = rng.integers(0, 4, T)
    experts = np.stack([(2 * pos + rng.integers(0, 3, T))[:, None].repeat(4, 1) % 8,
                        ((2 * pos + 5 + rng.integers(0, 2, T)) % 8)[:, None].repeat(4, 1)], axis=2)
    return RunView(model=model, run_id=run_id, tags=tags, moe_layers=[0, 1, 2, 3], n_experts=8, top_k=2,
                   experts=experts, pos=pos, **form_keys(np.array([f"f{i % 9}" for i in range(T)])),
                   sentence=np.arange(T) // 8, token_ids=rng.integers(0, 60, T))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def num(cell: str) -> float:
    return math.nan if cell == "" else float(cell)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def by_gid(fig, kind: str) -> dict[str, object]:
    """Artists of one kind (lines, images, collections) of every axes, keyed by gid."""
    out = {}
    for ax in fig.axes:
        for a in getattr(ax, kind):
            if a.get_gid():
                out[a.get_gid()] = a
    return out


def assert_saved(fig, stem_path: Path) -> None:
    """The figure under test is the one on disk: its PNG bytes equal the file's, the PNG is wide enough
    for print and the PDF is a PDF with no creation date."""
    png, pdf = stem_path.with_suffix(".png"), stem_path.with_suffix(".pdf")
    assert F.figure_bytes(fig, "png") == png.read_bytes(), png
    assert png_size(png)[0] >= 1600
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and b"/CreationDate" not in data


# ------------------------------------------------------------------------------------------------------------
# routing figures (no probe)


@pytest.mark.slow
def test_routing_figures_plot_the_csv_and_the_known_answer(tmp_path):
    v = known_view()
    res = write_report([v], tmp_path, figures=True)
    d = tmp_path / "known_run"
    names = sorted(p.name for p in d.iterdir())
    assert [n for n in names if n.startswith("fig_")] == ["fig_kl_heatmap.pdf", "fig_kl_heatmap.png",
                                                           "fig_spec_by_layer.pdf", "fig_spec_by_layer.png"]
    assert not list(tmp_path.rglob("*.tmp-*")) and not list(tmp_path.glob("fig_*"))  # one run: no cross-model
    assert str((d / "fig_spec_by_layer.png").resolve()) in res["files"]
    tables = res["runs"]["known_run"]
    title = F.panel_titles([v.model], [v.run_id])[0]
    assert title == "org/known-moe"

    # Spec by layer: one line per POS with tokens, x = decoder layers, y = the CSV's spec; U dashed
    fig = F.run_figure("fig_spec_by_layer", tables, title)
    assert_saved(fig, d / "fig_spec_by_layer")
    rows = read_csv(d / "spec_layer.csv")
    lines = by_gid(fig, "lines")
    assert sorted(g for g in lines if g.startswith("spec:")) == ["spec:NOUN", "spec:VERB", "spec:X"]  # ADJ: no token
    for tag in ("NOUN", "VERB", "X"):
        mine = sorted((int(r["layer"]), num(r["spec"])) for r in rows if r["pos"] == tag)
        x, y = lines[f"spec:{tag}"].get_data()
        assert list(map(int, x)) == [m[0] for m in mine] == [2, 5, 7]
        assert list(map(float, y)) == [m[1] for m in mine]
        assert list(map(float, y)) == [100.0, 100.0, 100.0]  # each POS always takes the same k experts
    assert all(r["spec"] == "" for r in rows if r["pos"] == "ADJ")
    u = lines["uniform"].get_ydata()
    assert float(u[0]) == float(rows[0]["uniform"]) == 25.0  # U = 100 * 2 / 8
    ax = fig.axes[0]
    assert ax.get_xlabel() == "decoder layer" and ax.get_ylabel() == "Spec (%)"
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["NOUN", "VERB", "X"] and legend.get_title().get_text() == "POS"
    assert {lines[f"spec:{t}"].get_color() for t in ("NOUN", "VERB", "X")} <= set(F.TOL_MUTED)

    # KL heatmap: image [expert, layer] = the CSV's kl; grey (masked) where an expert has no assignment
    fig = F.run_figure("fig_kl_heatmap", tables, title)
    assert_saved(fig, d / "fig_kl_heatmap")
    img = by_gid(fig, "images")["kl"].get_array()
    assert img.shape == (8, 3)
    expected = np.full((8, 3), np.nan)
    for r in read_csv(d / "kl_layer_expert.csv"):
        expected[int(r["expert"]), [2, 5, 7].index(int(r["layer"]))] = num(r["kl"])
    np.testing.assert_array_equal(np.ma.filled(img.astype(float), np.nan), expected)
    assert img.mask[6:].all() and not img.mask[:6].any()  # experts 6, 7 never chosen
    for p, tag in enumerate(("NOUN", "VERB", "X")):
        np.testing.assert_allclose(img[2 * p:2 * p + 2].data, -math.log(KNOWN_SHARE[tag]), rtol=1e-12)
    ax = fig.axes[0]
    fmt = ax.xaxis.get_major_formatter()
    assert [fmt(i, None) for i in range(3)] == ["2", "5", "7"]  # columns labelled with decoder layers
    assert ax.get_xlabel() == "decoder layer" and ax.get_ylabel() == "expert"


@pytest.mark.slow
def test_output_is_deterministic(tmp_path):
    v = known_view()
    write_report([v], tmp_path / "a", figures=True)
    write_report([known_view()], tmp_path / "b", figures=True)
    for name in ("fig_spec_by_layer.png", "fig_spec_by_layer.pdf", "fig_kl_heatmap.png", "fig_kl_heatmap.pdf"):
        assert (tmp_path / "a" / "known_run" / name).read_bytes() == (tmp_path / "b" / "known_run" / name).read_bytes()


def test_no_figures_unless_asked(tmp_path):
    write_report([known_view()], tmp_path)
    assert not list(tmp_path.rglob("fig_*"))


def test_tables_are_read_by_column_name():
    v = known_view()
    tables = report_tables(v)
    t = tables["spec_layer"]
    order = [3, 0, 5, 2, 1, 4]  # columns shuffled, plus a column the figures do not know
    shuffled = {"name": "spec_layer", "columns": [t["columns"][i] for i in order] + ["engine"],
                "rows": [[r[i] for i in order] + ["sklearn"] for r in t["rows"]]}
    a = by_gid(F.fig_spec_by_layer({"m": t}), "lines")
    b = by_gid(F.fig_spec_by_layer({"m": shuffled}), "lines")
    assert set(a) == set(b)
    for g in a:
        np.testing.assert_array_equal(np.asarray(a[g].get_xydata()), np.asarray(b[g].get_xydata()))
    broken = {"name": "spec_layer", "columns": ["layer", "pos"], "rows": [[0, "NOUN"]]}
    with pytest.raises(ReportError, match="spec_layer has no column 'spec'"):
        F.fig_spec_by_layer({"m": broken})
    with pytest.raises(ReportError, match="no tsne table"):
        F.fig_tsne({})


def test_missing_matplotlib_is_one_line_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ReportError) as e:
        write_report([known_view()], tmp_path / "out", figures=True)
    msg = str(e.value)
    assert "matplotlib" in msg and "pip install" in msg and "\n" not in msg
    assert not (tmp_path / "out").exists()  # nothing computed or written


def test_matplotlib_is_imported_only_to_draw():
    import subprocess

    code = ("import sys, moe_tui.cli, moe_tui.core.analysis.report, moe_tui.core.analysis.figures; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_panel_titles_and_text():
    assert F.panel_titles(["/data/ckpt/mixtral", "org/m", "org/m"], ["aaaaaaaa1111", "bbbbbbbb2222", "cccccccc3333"]) \
        == ["ckpt/mixtral", "org/m (bbbbbbbb)", "org/m (cccccccc)"]
    fig = F.fig_spec_by_layer({"a $x$ model": report_tables(known_view())["spec_layer"]})
    # a '$' in a model name is shown as typed, not as mathtext
    assert fig.axes[0].get_title().startswith(r"a \$x\$ model")
    F.figure_bytes(fig, "png")  # renders


def test_pos_styles_are_fixed_and_distinct():
    from moe_tui.core.extract.tagsets import UPOS_TAGS

    styles = [F.pos_style(t) for t in UPOS_TAGS]
    keys = {(s["color"], s["marker"], s["linestyle"]) for s in styles}
    assert len(keys) == 17  # every UPOS tag has its own look
    assert all(s["color"] in F.TOL_MUTED for s in styles)
    assert F.pos_style("NOUN") == F.pos_style("NOUN", order=("VERB", "NOUN"))  # same in every run / tagset
    assert F.pos_style("NEWTAG", order=("NOUN", "NEWTAG"))["color"] in F.TOL_MUTED


# ------------------------------------------------------------------------------------------------------------
# probe figures and cross-model figures


@pytest.mark.slow
def test_probe_and_cross_model_figures_plot_the_csv(tmp_path):
    a = noisy_view("run_a", "org/moe-a", seed=1)
    b = noisy_view("run_b", "org/moe-b", seed=2)
    seen = []
    res = write_report([a, b], tmp_path, probe=True, figures=True, options=FAST,
                       progress=lambda s, i, n: seen.append(s))
    assert "figures" in seen
    per_run_stems = ["fig_spec_by_layer", "fig_kl_heatmap", "fig_confusion_top_k", "fig_confusion_top_1",
                     "fig_confusion_onehot_top_k", "fig_confusion_baseline", "fig_ablation", "fig_tsne"]
    for rid in ("run_a", "run_b"):
        for stem in per_run_stems:
            for ext in ("png", "pdf"):
                assert (tmp_path / rid / f"{stem}.{ext}").is_file(), (rid, stem, ext)
    for stem in per_run_stems:  # cross-model versions in DIR
        assert png_size(tmp_path / f"{stem}.png")[0] >= 1600
        assert (tmp_path / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    assert not list(tmp_path.rglob("*.tmp-*"))
    assert len([f for f in res["files"] if f.endswith((".png", ".pdf"))]) == 2 * 3 * len(per_run_stems)

    tables = res["runs"]["run_a"]
    d = tmp_path / "run_a"

    # confusion: image = CSV counts divided by their row sums (true POS), in the CSV's tag order
    for variant in ("top_k", "baseline"):
        fig = F.run_figure(f"fig_confusion_{variant}", tables, "org/moe-a")
        if variant == "top_k":  # (rendering is slow: one confusion figure is compared byte for byte)
            assert_saved(fig, d / f"fig_confusion_{variant}")
        rows = read_csv(d / f"confusion_{variant}.csv")
        tags = list(dict.fromkeys(r["true"] for r in rows))
        assert tags == ["NOUN", "VERB", "ADP", "PUNCT"]
        counts = {(r["true"], r["pred"]): int(r["count"]) for r in rows}
        img = by_gid(fig, "images")["confusion"].get_array()
        for i, t in enumerate(tags):
            row_total = sum(counts[(t, p)] for p in tags)
            for j, p in enumerate(tags):
                assert img[i, j] == pytest.approx(counts[(t, p)] / row_total, rel=1e-12)
        ax = fig.axes[0]
        assert [x.get_text() for x in ax.get_xticklabels()] == tags == [y.get_text() for y in ax.get_yticklabels()]
        assert ax.get_xlabel() == "predicted POS" and ax.get_ylabel() == "true POS"
        acc = {r["variant"]: float(r["accuracy"]) for r in read_csv(d / "probe.csv")}[variant]
        assert f"accuracy {100 * acc:.1f}%" in ax.get_title()

    # ablation: a line per side (x = removed, y = accuracy), the form baseline from probe.csv
    fig = F.run_figure("fig_ablation", tables, "org/moe-a")
    assert_saved(fig, d / "fig_ablation")
    lines = by_gid(fig, "lines")
    rows = read_csv(d / "ablation.csv")
    for side in ("first", "last"):
        mine = sorted((int(r["removed"]), float(r["accuracy"])) for r in rows if r["side"] == side)
        x, y = lines[f"ablation:{side}"].get_data()
        assert list(map(int, x)) == [m[0] for m in mine] == [0, 1, 2]
        assert list(map(float, y)) == [m[1] for m in mine]
    base = [float(r["accuracy"]) for r in read_csv(d / "probe.csv") if r["variant"] == "baseline"]
    assert float(lines["baseline"].get_ydata()[0]) == base[0]

    # t-SNE: one scatter per POS whose offsets are the CSV's (x, y) rows of that POS
    fig = F.run_figure("fig_tsne", tables, "org/moe-a")
    assert_saved(fig, d / "fig_tsne")
    cols = by_gid(fig, "collections")
    rows = read_csv(d / "tsne.csv")
    assert len(rows) == 60
    assert sorted(cols) == sorted(f"tsne:{t}" for t in {r["pos"] for r in rows})
    for gid, sc in cols.items():
        mine = [(float(r["x"]), float(r["y"])) for r in rows if r["pos"] == gid[5:]]
        np.testing.assert_array_equal(sc.get_offsets(), np.array(mine))

    # cross-model figures: one panel (or line) per run, each holding that run's CSV
    titles = F.panel_titles(["org/moe-a", "org/moe-b"], ["run_a", "run_b"])
    runs = [(titles[0], res["runs"]["run_a"]), (titles[1], res["runs"]["run_b"])]
    fig = F.compare_figure("fig_spec_by_layer", runs)
    assert_saved(fig, tmp_path / "fig_spec_by_layer")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == titles
    for ax, rid in zip(panels, ("run_a", "run_b")):
        rows = read_csv(tmp_path / rid / "spec_layer.csv")
        for ln in ax.lines:
            if ln.get_gid().startswith("spec:"):
                tag = ln.get_gid()[5:]
                mine = sorted((int(r["layer"]), num(r["spec"])) for r in rows if r["pos"] == tag)
                assert [float(v) for v in ln.get_ydata()] == [m[1] for m in mine]
    fig = F.compare_figure("fig_kl_heatmap", runs)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2 and images[0].norm is images[1].norm  # one colour scale for the models
    for im, rid in zip(images, ("run_a", "run_b")):
        for r in read_csv(tmp_path / rid / "kl_layer_expert.csv"):
            v = im.get_array()[int(r["expert"]), int(r["layer"])]
            assert (v is np.ma.masked) if r["kl"] == "" else float(v) == float(r["kl"])
    fig = F.compare_figure("fig_ablation", runs)
    lines = by_gid(fig, "lines")
    for rid, title in zip(("run_a", "run_b"), titles):
        rows = read_csv(tmp_path / rid / "ablation.csv")
        for side in ("first", "last"):
            mine = sorted((int(r["removed"]), float(r["accuracy"])) for r in rows if r["side"] == side)
            assert [float(v) for v in lines[f"ablation:{side}:{title}"].get_ydata()] == [m[1] for m in mine]
