"""Issue 9, items 8 and 9 (report side): paths, strict JSON, colours, ten runs, seed groups with intervals.

The runs here are written by hand (config.json + log.jsonl in the trainer's format), so the
report is tested on exactly known numbers without training.
"""
from __future__ import annotations

import itertools
import json
import math

import pytest

from discrete.validation.config import RunConfig
from osd_theory.cli import main as cli_main

STATE = {"params": 4 << 20, "grads": 4 << 20, "moments": 8 << 20, "projector": 0, "projector_optim": 0,
         "other_state": 0}


def fake_run(root, name, *, optimizer="galore", seed=0, lr=0.01, ppl=50.0, tok_s=1000.0, mem=2.0,
             residual=0.4, steps=20, visited=None, eff_rank=None, **config):
    """A run dir; ``visited`` / ``eff_rank``: the final coverage metrics (earlier records hold less);
    ``config``: other RunConfig fields."""
    d = root / name
    d.mkdir(parents=True)
    cfg = RunConfig(model="tiny", optimizer=optimizer, seed=seed, lr=lr, rank=8, steps=steps, batch_size=8,
                    seq_len=64, out=str(d), **config).to_json()
    (d / "config.json").write_text(json.dumps(cfg))
    recs = []
    for step in (1, 10, 20):
        recs.append({"kind": "train", "step": step, "tokens": step * 512, "loss": 8.0 - step / 10, "lr": lr,
                     "tokens_per_s": tok_s, "H": 8.1 - step / 10, "residual": residual, "drift_window": 0.01,
                     "state_bytes": STATE, "peak_alloc_gb": mem, "peak_reserved_gb": mem + 0.5})
        if visited is not None:
            recs[-1]["visited_dim"] = visited * step / 20
        if step in (10, 20):
            recs.append({"kind": "eval", "step": step, "tokens": step * 512, "val_loss": math.log(ppl) + (20 - step) / 100,
                         "val_ppl": ppl * math.exp((20 - step) / 100)})
            if eff_rank is not None:
                recs[-1]["update_eff_rank"] = eff_rank * step / 20
    (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def test_report_paths_missing_is_an_error_stray_and_parent_are_skipped(tmp_path, capsys):
    run = fake_run(tmp_path / "runs", "a")
    stray = tmp_path / "runs" / "notes.txt"
    stray.write_text("hello")
    assert cli_main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1
    assert cli_main(["report", str(run), str(stray), str(tmp_path / "runs")]) == 0
    out, err = capsys.readouterr()
    assert f"skipped {stray}" in err and f"skipped {tmp_path / 'runs'}" in err and "contains 1 run" in err
    assert out.splitlines()[1].split()[0] == "a"


def test_report_json_is_strict(tmp_path, capsys):
    a = fake_run(tmp_path, "a", ppl=50.0)
    b = fake_run(tmp_path, "b", residual=float("nan"))
    with open(b / "log.jsonl", "a") as f:
        f.write(json.dumps({"kind": "eval", "step": 21, "tokens": 1, "val_loss": 800.0, "val_ppl": float("inf")}) + "\n")
    assert cli_main(["report", str(a), str(b), "--json"]) == 0

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    rows = json.loads(capsys.readouterr().out, parse_constant=no_constants)
    assert rows[1]["val_ppl"] is None


def _ten_runs(root):
    """Ten runs, ten settings: five optimizers (one unregistered) x two lrs; long names."""
    return [fake_run(root, f"{opt}_a_rather_long_run_name_lr{lr}", optimizer=opt, lr=lr, ppl=40 + i, tok_s=900 + 10 * i,
                     mem=2 + 0.1 * i)
            for i, (opt, lr) in enumerate(itertools.product(("adamw", "galore", "osd", "rso", "lion_like"), (0.01, 0.02)))]


def _colour(artist):
    """The colour an artist is drawn in (lines, bars, bands, error bars, tick labels)."""
    from matplotlib.collections import Collection
    from matplotlib.patches import Patch

    if isinstance(artist, Patch):
        return artist.get_facecolor()
    if isinstance(artist, Collection):
        colours = artist.get_facecolor() if len(artist.get_facecolor()) else artist.get_edgecolor()
        return colours[0]
    return artist.get_color()


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_one_colour_per_optimizer_across_figures_and_legible_with_ten_runs(tmp_path):
    from matplotlib.colors import to_hex

    from discrete.validation.plots import figures
    from discrete.validation.report import load_run

    runs = [load_run(d) for d in _ten_runs(tmp_path)]
    figs = figures(runs)
    colours: dict[str, set] = {}
    for fig in figs.values():
        fig.canvas.draw()
        for artist in fig.findobj(lambda a: (a.get_gid() or "").startswith("optimizer=")):
            opt = artist.get_gid().split("=", 1)[1]
            colours.setdefault(opt, set()).add(to_hex(_colour(artist), keep_alpha=False))
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:  # labels of bars / ticks must not overlap each other
            for axis in (ax.xaxis, ax.yaxis):
                boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
                assert not any(_overlap(a, b) for a, b in itertools.combinations(boxes, 2)), (fig, axis)
            legend = ax.get_legend()
            if legend is not None and ax.get_lines():
                assert len(legend.get_texts()) == 10  # every run named
    assert set(colours) == {"adamw", "galore", "osd", "rso", "lion_like"}
    assert all(len(c) == 1 for c in colours.values()), colours  # one colour per optimizer in every figure
    assert len({next(iter(c)) for c in colours.values()}) == 5  # and a different one for each


def test_report_groups_seeds_with_a_student_t_interval(tmp_path, capsys):
    dirs = [fake_run(tmp_path, f"g{s}", seed=s, ppl=p, tok_s=t, mem=m)
            for s, p, t, m in ((0, 10.0, 100.0, 1.0), (1, 11.0, 110.0, 1.0), (2, 12.0, 120.0, 1.0))]
    dirs.append(fake_run(tmp_path, "other_lr", lr=0.02, ppl=20.0))
    assert cli_main(["report", *map(str, dirs)]) == 0
    out = capsys.readouterr().out
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n), s = 1
    assert f"11.00 ± {half:.2f}" in out and f"110 ± {10 * half:.0f}" in out and "1.00 ± 0.00" in out
    assert "Student-t 95%" in out
    lines = out.splitlines()
    assert sum(" 3 " in ln for ln in lines) == 1 and any(ln.split()[0] == "other_lr" for ln in lines)
    assert cli_main(["report", *map(str, dirs), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["group_n"] == 3 and rows[0]["val_ppl_mean"] == pytest.approx(11.0)
    assert rows[0]["val_ppl_ci95"] == pytest.approx(half) and rows[3]["val_ppl_ci95"] is None


def test_report_labels_repeats_of_a_seed_as_runs_not_seeds(tmp_path):
    """Two runs of seed 0 and one of seed 1 are three runs of two seeds; three distinct seeds stay '3 seeds'."""
    from discrete.validation.report import group_rows, load_run, summarize

    rep = [fake_run(tmp_path, n, seed=s, ppl=p) for n, s, p in (("a", 0, 10.0), ("b", 0, 10.5), ("c", 1, 11.0))]
    fresh = [fake_run(tmp_path, f"d{s}", seed=s, lr=0.02) for s in range(3)]
    groups = group_rows([summarize(load_run(d)) for d in rep + fresh])
    by_first = {g["rows"][0]["run"]: g["label"] for g in groups}
    assert by_first["a"].endswith("(3 runs, 2 seeds)") and by_first["d0"].endswith("(3 seeds)")
    one = group_rows([summarize(load_run(d)) for d in rep[:2]])
    assert one[0]["label"].endswith("(2 runs, 1 seed)")


@pytest.mark.parametrize("optimizer, default, other", [("galore", "hf", "torch"), ("osd", "torch", "hf")])
def test_report_groups_an_unset_eps_placement_with_the_optimizers_default(tmp_path, optimizer, default, other):
    """Runs from before --eps-placement (no key in config.json) used the class default: one group with
    runs that name it, another with runs that name the other placement."""
    from discrete.validation.report import group_rows, load_run, summarize

    old = fake_run(tmp_path, "old", optimizer=optimizer, seed=0)
    cfg = json.loads((old / "config.json").read_text())
    cfg.pop("eps_placement")
    (old / "config.json").write_text(json.dumps(cfg))
    same = fake_run(tmp_path, "same", optimizer=optimizer, seed=1, eps_placement=default)
    diff = fake_run(tmp_path, "diff", optimizer=optimizer, seed=2, eps_placement=other)
    groups = group_rows([summarize(load_run(d)) for d in (old, same, diff)])
    assert sorted(g["n"] for g in groups) == [1, 2]
    two = next(g for g in groups if g["n"] == 2)
    assert {r["run"] for r in two["rows"]} == {"old", "same"} and f"eps_placement={default}" in two["label"]


def test_report_shows_the_final_coverage_metrics_with_seed_intervals_and_plots_them(tmp_path, capsys):
    seeds = [fake_run(tmp_path, f"osd{s}", optimizer="osd", seed=s, visited=v, eff_rank=e)
             for s, v, e in ((0, 10.0, 20.0), (1, 11.0, 21.0), (2, 12.0, 22.0))]
    plain = fake_run(tmp_path, "galore_plain")
    assert cli_main(["report", *map(str, seeds), str(plain), "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    head, *lines = out.splitlines()
    assert head.split()[-2:] == ["visited_dim", "upd_eff_rank"]
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n), s = 1
    osd = next(ln for ln in lines if ln.split()[0] == "osd")
    assert osd.split()[-6:] == ["11.0", "±", f"{half:.1f}", "21.0", "±", f"{half:.1f}"]  # the last values
    galore = next(ln for ln in lines if ln.split()[0] == "galore_plain")
    assert galore.split()[-2:] == ["-", "-"]
    assert {"coverage_vs_steps.png", "update_rank_vs_tokens.png"} <= {p.name for p in (tmp_path / "plots").iterdir()}

    assert cli_main(["report", *map(str, seeds), str(plain), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["visited_dim"] for r in rows] == [10.0, 11.0, 12.0, None]
    assert [r["update_eff_rank"] for r in rows] == [20.0, 21.0, 22.0, None]
    assert rows[0]["visited_dim_mean"] == pytest.approx(11.0) and rows[0]["visited_dim_ci95"] == pytest.approx(half)
    assert rows[0]["update_eff_rank_ci95"] == pytest.approx(half) and rows[3]["update_eff_rank_mean"] is None


def test_coverage_figures_draw_each_run_in_its_optimizers_colour_and_only_when_logged(tmp_path):
    from matplotlib.colors import to_hex

    from discrete.validation.plots import figures, optimizer_colours
    from discrete.validation.report import load_run

    import matplotlib.pyplot as plt

    plain = [load_run(fake_run(tmp_path, "plain"))]
    assert not {"coverage_vs_steps.png", "update_rank_vs_tokens.png"} & set(figures(plain))
    plt.close("all")
    runs = [load_run(fake_run(tmp_path, opt, optimizer=opt, visited=v, eff_rank=v))
            for opt, v in (("galore", 30.0), ("osd", 9.0), ("adamw", None))]
    figs = figures(runs)
    colour = optimizer_colours(["galore", "osd", "adamw"])
    for name, ys in (("coverage_vs_steps.png", {"galore": [1.5, 15, 30], "osd": [0.45, 4.5, 9]}),
                     ("update_rank_vs_tokens.png", {"galore": [15, 30], "osd": [4.5, 9]})):
        lines = [ln for ln in figs[name].axes[0].get_lines() if ln.get_label() in ys]
        assert sorted(ln.get_label() for ln in lines) == sorted(ys)
        assert all(list(ln.get_ydata()) == pytest.approx(ys[ln.get_label()]) for ln in lines)
        assert all(to_hex(ln.get_color()) == to_hex(colour[ln.get_label()]) for ln in lines)
        assert "adamw" not in {ln.get_label() for ln in figs[name].axes[0].get_lines()}
    plt.close("all")


# ---------------------------------------------------------------- issue 21, items 5 and 6


def test_two_seeds_get_no_interval_but_their_points(tmp_path, capsys):
    """n = 2: t_{0.975,1} = 12.7 made a residual band of -1.3..2.6 and negative tokens/s bars; now no interval,
    the per-seed values instead, and the table says why."""
    from discrete.validation.plots import figures
    from discrete.validation.report import load_run

    dirs = [fake_run(tmp_path, f"s{s}", seed=s, ppl=p, tok_s=t, residual=r)
            for s, p, t, r in ((0, 10.0, 100.0, 0.1), (1, 30.0, 900.0, 0.9))]
    assert cli_main(["report", *map(str, dirs), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["group_n"] == 2 and r["val_ppl_ci95"] is None and r["tokens_per_s_ci95"] is None for r in rows)
    assert cli_main(["report", *map(str, dirs)]) == 0
    out = capsys.readouterr().out
    assert "n < 3: no interval" in out and "±" not in out.splitlines()[1]
    assert "val_ppl per seed 10.00, 30.00" in out
    figs = figures([load_run(d) for d in dirs])
    ax = figs["summary_ci.png"].axes[0]
    seeds = [ln for ln in ax.lines if str(ln.get_gid()).startswith("seeds=")]
    assert len(seeds) == 1 and sorted(seeds[0].get_xdata()) == [10.0, 30.0]  # both seeds on the bar
    res = figs["residual_vs_steps.png"].axes[0]
    assert not res.collections  # no band from two seeds
    assert sorted({y for ln in res.lines for y in ln.get_ydata()}) == [0.1, 0.5, 0.9]  # mean and both seeds


def test_intervals_are_clipped_to_the_metrics_range(tmp_path, capsys):
    from discrete.validation.plots import figures
    from discrete.validation.report import load_run

    dirs = [fake_run(tmp_path, f"s{s}", seed=s, residual=r, tok_s=t)
            for s, r, t in ((0, 0.02, 10.0), (1, 0.5, 1000.0), (2, 0.98, 5000.0))]
    assert cli_main(["report", *map(str, dirs)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "2,003 [0, " in line  # tokens/s: mean 2003, the interval would go below 0: shown clipped
    figs = figures([load_run(d) for d in dirs])
    band = figs["residual_vs_steps.png"].axes[0].collections[0]
    ys = [y for path in band.get_paths() for _, y in path.vertices]
    assert min(ys) >= 0.0 and max(ys) <= 1.0  # unclipped: 0.5 ± 1.2
    bars = figs["summary_ci.png"].axes[1]
    lows = [seg[0][0] for coll in bars.collections for seg in coll.get_segments()]
    assert lows and min(lows) >= 0.0


def test_report_without_plots_says_where_they_would_go(tmp_path, capsys):
    a = fake_run(tmp_path / "runs", "a")
    assert cli_main(["report", str(a)]) == 0
    assert f"pass --plots DIR to draw them (e.g. --plots {tmp_path / 'runs' / 'plots'})" in capsys.readouterr().out


@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "config.json").write_text("[1, 2]"), "malformed config.json"),
    (lambda d: (d / "config.json").write_text(json.dumps({"model": "tiny"})), "malformed config.json"),
    (lambda d: (d / "config.json").write_bytes(b'{"optimizer": "\xff"}'), "unreadable config.json"),
])
def test_malformed_run_files_are_one_line_errors(tmp_path, capsys, damage, needle):
    a = fake_run(tmp_path, "a")
    damage(a)
    assert cli_main(["report", str(a)]) == 2  # old code: tracebacks
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err


def test_bad_log_fields_and_bytes_are_skipped(tmp_path, capsys):
    a = fake_run(tmp_path, "a", tok_s=100.0)
    with open(a / "log.jsonl", "ab") as f:
        f.write(b'{"kind": "train", "step": 21, "tokens_per_s": "fast", "loss": 1.0}\n')  # a field of the wrong type
        f.write(b'{"kind": "train", "step": 22, "note": "\xff\xfe"}\n')                     # not UTF-8
    assert cli_main(["report", str(a), "--json"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unparsable line" in captured.err
    assert json.loads(captured.out)[0]["tokens_per_s"] == 100.0


def test_plots_onto_a_file_is_a_one_line_error(tmp_path, capsys):
    a = fake_run(tmp_path, "a")
    target = tmp_path / "plots.png"
    target.write_text("x")
    assert cli_main(["report", str(a), "--plots", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--plots" in err and "not a directory" in err
    assert cli_main(["report", str(a), "--plots", str(target / "sub")]) == 2
    assert "not a directory" in capsys.readouterr().err
