"""Chapter 6's free cuts: the result file's loader refuses what is broken, and the page's verdicts."""

import json

import pytest

from cspnet_lab import bench, costs
from cspnet_lab.lab import plots

# per cut, one [ratio, low, high] per process (3 processes, 20 rounds)
INFERENCE = {
    "pool_first": [[0.90, 0.88, 0.93], [0.92, 0.89, 0.95], [0.91, 0.87, 0.96]],     # all faster
    "fold_bn": [[0.95, 0.92, 0.98], [0.97, 0.93, 1.01], [0.94, 0.91, 0.97]],        # one spans 1
    "concat_buffer": [[1.05, 1.01, 1.09], [1.06, 1.02, 1.10], [1.04, 1.01, 1.08]],  # all slower
    "channels_last": [[0.95, 0.92, 0.98], [1.04, 1.01, 1.07], [0.96, 0.93, 0.99]],  # disagree
    "all": [[0.84, 0.82, 0.89], [0.85, 0.83, 0.88], [0.83, 0.80, 0.86]],            # goal met
    "pool_fold_cl": [[0.84, 0.82, 0.89], [0.85, 0.83, 0.91], [0.83, 0.80, 0.86]],   # end 0.91
}
TRAIN = {"pool_first": [[0.94, 0.92, 0.97], [0.95, 0.93, 0.99], [0.93, 0.90, 0.96]]}


def synthetic(rounds=20):
    """A free-cuts file as benchmarks/free_cuts.py writes one, with the intervals above."""
    def worker(i, load):
        return {"inference": {c: list(v[i]) for c, v in INFERENCE.items()},
                "train": {c: list(v[i]) for c, v in TRAIN.items()}, "load": [load, 1.7]}

    runs = {}
    for arch in ("densenet121", "cspdensenet121"):
        procs = [worker(i, 1.0 + 0.1 * i) for i in range(3)]
        summary = {}
        for mode in ("inference", "train"):
            for cut in procs[0][mode]:
                ests = [p[mode][cut][0] for p in procs]
                summary[f"{mode}/{cut}"] = {
                    "per_process": [list(p[mode][cut]) for p in procs],
                    "between_process": [min(ests), max(ests)],
                    "verdicts": [bench.verdict(p[mode][cut][1], p[mode][cut][2], rounds)
                                 for p in procs]}
        runs[arch] = {"processes": procs, "summary": summary}
    return {"settings": {"rounds": rounds, "processes": 3, "batch": 8, "size": 128,
                         "baseline": "torchvision"},
            "provenance": {"device": "test CPU", "torch": "2.x", "date": "2026-12-04",
                           "command": "free_cuts.py"},
            "max_load": 1.5, "quiet": True, "runs": runs}


def write(tmp_path, data, name="fc.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))       # json.dumps writes NaN and Infinity as they are
    return path


@pytest.fixture
def rows(tmp_path):
    return {(r["arch"], r["mode"], r["cut"]): r
            for r in bench.free_cut_verdicts(bench.load_free_cuts(write(tmp_path, synthetic())))}


def test_a_valid_file_loads_unchanged(tmp_path):
    data = synthetic()
    assert bench.load_free_cuts(write(tmp_path, data)) == data


def _set(path, value):
    """An edit that puts ``value`` at ``path`` (a list of keys and indices) in the file."""
    def edit(d):
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


def _drop(*path):
    def edit(d):
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return edit


P1 = ["runs", "densenet121", "processes", 1]


@pytest.mark.parametrize("edit, message", [
    (_set(P1 + ["inference", "fold_bn", 0], float("nan")),
     r"runs\.densenet121\.processes\[1\]\.inference\.fold_bn\[0\] must be a finite number > 0 "
     r"\(got nan\)"),
    (_set(P1 + ["train", "pool_first", 2], float("inf")),
     r"processes\[1\]\.train\.pool_first\[2\] must be a finite number"),
    (_set(P1 + ["inference", "all", 1], -0.5), r"inference\.all\[1\] must be a finite number > 0"),
    (_set(P1 + ["inference", "all"], [0.8, 0.85, 0.9]), r"inference\.all must hold its ratio"),
    (_set(P1 + ["inference", "all"], [0.8, 0.9]), r"inference\.all must be \[ratio, low, high\]"),
    (_set(P1 + ["load", 0], float("nan")), r"processes\[1\]\.load\[0\] must be a finite number"),
    (_drop("quiet"), r"fc\.json: quiet is missing"),
    (_drop("provenance", "date"), r"provenance\.date is missing"),
    (_drop("runs", "cspdensenet121", "summary"), r"runs\.cspdensenet121\.summary is missing"),
    (_drop(*P1, "train"), r"runs\.densenet121\.processes\[1\]\.train is missing"),
    (_set(["settings", "processes"], 4), r"runs\.densenet121\.processes must be a list of "
                                         r"settings\.processes = 4"),
    (_set(["settings", "baseline"], "timm"), r"settings\.baseline must be one of"),
    (_set(["settings", "rounds"], 0), r"settings\.rounds must be a positive integer"),
    (_set(["max_load"], float("nan")), r"max_load must be a finite number"),
    (_set(["quiet"], "yes"), r"quiet must be true or false"),
    (_set(P1 + ["load", 0], 2.0), r"quiet is true, but runs\.densenet121\.processes\[1\] started "
                                  r"at load 2\.0 > max_load 1\.5"),
    (_set(["runs", "densenet121", "summary", "inference/all", "between_process"], [0.8, 0.9]),
     r"summary\.inference/all\.between_process must be \[min, max\] of the processes' ratios"),
    (_set(["runs", "densenet121", "summary", "train/pool_first", "per_process", 0],
          [0.5, 0.4, 0.6]), r"summary\.train/pool_first\.per_process does not match"),
    (_drop("runs", "densenet121", "summary", "inference/fold_bn"),
     r"runs\.densenet121\.summary must have one entry per mode/cut"),
    (_set(["runs"], {}), r"runs must be a non-empty object"),
])
def test_a_corrupted_file_is_refused_naming_the_file_and_the_field(tmp_path, edit, message):
    data = synthetic()
    edit(data)
    with pytest.raises(ValueError, match=message):
        bench.load_free_cuts(write(tmp_path, data))


def test_a_missing_or_truncated_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"nothere\.json: no such free-cuts result file"):
        bench.load_free_cuts(tmp_path / "nothere.json")
    path = write(tmp_path, synthetic())
    path.write_text(path.read_text()[:300])
    with pytest.raises(ValueError, match=r"fc\.json: not valid JSON"):
        bench.load_free_cuts(path)


def test_faster_only_when_every_process_says_so(rows):
    verdicts = {cut: rows["densenet121", "inference", cut]["verdict"] for cut in INFERENCE}
    assert verdicts == {"pool_first": "faster", "fold_bn": "not distinguishable",
                        "concat_buffer": "slower", "channels_last": "not distinguishable",
                        "all": "faster", "pool_fold_cl": "faster"}
    assert rows["densenet121", "inference", "channels_last"]["process_verdicts"] == [
        "faster", "slower", "faster"]
    assert rows["densenet121", "train", "pool_first"]["verdict"] == "faster"


def test_too_few_rounds_is_said_rather_than_a_verdict(tmp_path):
    rows = bench.free_cut_verdicts(bench.load_free_cuts(write(tmp_path, synthetic(rounds=5))))
    assert {r["verdict"] for r in rows} == {f"too few rounds (< {bench.MIN_ROUNDS})"}


def test_the_goal_needs_every_process_at_or_under_its_ratio_and_its_upper_end_below(rows):
    inf = {cut: rows["densenet121", "inference", cut]["meets_goal"] for cut in INFERENCE}
    # "all": 0.83-0.85 with upper ends 0.86-0.89; pool_fold_cl: one upper end 0.91 >= 0.9
    assert inf == dict.fromkeys(INFERENCE, False) | {"all": True}
    assert rows["densenet121", "train", "pool_first"]["meets_goal"] is True   # <= 0.95, ends < 1
    assert rows["densenet121", "train", "pool_first"]["goal"] == (0.95, 1.0)
    csp = rows["cspdensenet121", "inference", "all"]     # against our own CSPDenseNet: no goal
    assert csp["baseline"] == "ours" and csp["goal"] is None and csp["meets_goal"] is None


def test_realised_fraction_divides_by_pool_firsts_own_multiply_add_cut_and_nothing_else(rows):
    for arch in ("densenet121", "cspdensenet121"):
        m = (costs.analyze(arch, 128, pool_first=True).macs / costs.analyze(arch, 128).macs)
        assert 0.85 < m < 1                        # a quarter of the pooling transitions
        pf = rows[arch, "inference", "pool_first"]
        assert pf["mac_ratio"] == m and pf["between"] == (0.90, 0.92)
        assert pf["realised"] == pytest.approx(((1 - 0.92) / (1 - m), (1 - 0.90) / (1 - m)))
        assert rows[arch, "inference", "all"]["mac_ratio"] == m           # all includes it
        for cut in ("fold_bn", "concat_buffer", "channels_last"):
            r = rows[arch, "inference", cut]
            assert r["mac_ratio"] == 1.0 and r["realised"] is None


def test_an_unknown_cut_is_refused_by_name(tmp_path):
    data = synthetic()
    for arch in data["runs"].values():
        for p in arch["processes"]:
            p["inference"]["magic"] = [0.5, 0.4, 0.6]
        arch["summary"]["inference/magic"] = {"per_process": [[0.5, 0.4, 0.6]] * 3,
                                              "between_process": [0.5, 0.5],
                                              "verdicts": ["faster"] * 3}
    with pytest.raises(ValueError, match=r"unknown cut\(s\) \['magic'\]"):
        bench.free_cut_verdicts(bench.load_free_cuts(write(tmp_path, data)))


def test_the_figure_draws_every_process_interval_coloured_by_the_verdict(rows):
    dn = [r for (arch, *_), r in rows.items() if arch == "densenet121"]
    fig = plots.free_cut_intervals(dn)
    ax = fig.axes[0]
    bars = ax.containers
    assert len(bars) == 3 * len(dn)                       # one interval per process and cut
    colours = {f"{r['cut']}/{r['mode']}": {c.lines[0].get_color() for c in bars[3 * i:3 * i + 3]}
               for i, r in enumerate(dn)}             # the three processes of a row share a colour
    assert colours["pool_first/inference"] == {plots.VERDICT_COLORS["faster"]}
    assert colours["concat_buffer/inference"] == {plots.VERDICT_COLORS["slower"]}
    assert colours["fold_bn/inference"] == {plots.VERDICT_COLORS["not distinguishable"]}
    goal_rows = {}                                        # goal -> rows (y) it is drawn across
    for line in ax.get_lines():
        x, y = line.get_xdata(), line.get_ydata()
        if len(x) == 2 and x[0] == x[1] and line.get_linestyle() == ":":
            goal_rows.setdefault(x[0], []).append(round(sum(y) / 2))
    assert goal_rows == {0.85: list(range(6)), 0.95: [6]}  # each mode's goal on its own rows
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "pool_first (train)"


@pytest.mark.parametrize("rows, error, message", [
    ([], ValueError, "rows must be a non-empty list"),
    ([{"cut": "fold_bn"}], ValueError, r"rows\[0\] lacks \['mode', 'verdict'"),
    ([{"cut": "a", "mode": "inference", "verdict": "faster", "mac_ratio": 1.0,
       "per_process": [(0.9, float("nan"), 1.0)]}], ValueError,
     r"rows\[0\]\.per_process\[0\] must be a finite number"),
])
def test_the_figure_refuses_rows_that_are_not_verdict_rows(rows, error, message):
    with pytest.raises(error, match=message):
        plots.free_cut_intervals(rows)


def test_the_committed_file_loads_and_times_every_cut_against_torchvision():
    data = bench.load_free_cuts()
    assert data["settings"]["baseline"] == "torchvision"
    assert data["settings"]["processes"] >= 3           # issue 24: at least 3 processes
    cuts = set(data["runs"]["densenet121"]["processes"][0]["inference"])
    assert cuts == set(bench.FREE_CUT_OPTIONS)
