"""experiments: t quantiles and paired intervals against hand numbers, folds, durations, resumable runs."""

import json
import math

import pytest
import torch
from torch.utils.data import TensorDataset

from cspnet_lab import experiments as ex
from cspnet_lab.train import TrainConfig, train

TINY = "densenet_cifar:block_config=(1,1),growth_rate=4,num_init_features=8"


# Student's t table (any statistics textbook): two-sided 95 % critical values.
@pytest.mark.parametrize("df, value", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)])
def test_t_quantile_matches_the_table(df, value):
    assert ex.t_quantile(0.975, df) == pytest.approx(value, abs=1e-4)
    assert ex.t_quantile(0.025, df) == pytest.approx(-value, abs=1e-4)


def test_t_cdf_of_one_degree_of_freedom_is_the_cauchy_cdf():
    for x in (-3.0, -0.5, 0.0, 0.7, 10.0):
        assert ex.t_cdf(x, 1) == pytest.approx(0.5 + math.atan(x) / math.pi, abs=1e-12)


def test_paired_interval_by_hand():
    # differences 1, 2, 3, 4, 5: mean 3, sd sqrt(2.5), se sqrt(2.5 / 5) = 0.70711, t(0.975, 4) = 2.77645
    iv = ex.paired_interval([2, 3, 4, 5, 6], [1, 1, 1, 1, 1])
    assert (iv.mean, iv.n) == (3.0, 5)
    assert iv.sd == pytest.approx(math.sqrt(2.5))
    assert iv.low == pytest.approx(3 - 2.776445 * 0.707107, abs=1e-5)
    assert iv.high == pytest.approx(3 + 2.776445 * 0.707107, abs=1e-5)
    assert iv.verdict == "higher"


def test_paired_interval_uses_the_pairs_not_the_two_spreads():
    # b = a - 0.1 exactly: the two samples overlap wildly, the paired difference has no spread at all.
    a = [0.90, 0.95, 0.80, 0.99]
    iv = ex.paired_interval([v - 0.1 for v in a], a)
    assert iv.low == pytest.approx(-0.1) and iv.high == pytest.approx(-0.1)
    assert iv.verdict == "lower"


def test_nadeau_bengio_correction_widens_by_hand():
    # se = sd x sqrt(1/n + ratio) = sqrt(2.5) x sqrt(0.2 + 0.25) = 1.06066; half width 2.77645 x 1.06066
    iv = ex.paired_interval([1, 2, 3, 4, 5], [0] * 5, test_train_ratio=0.25)
    assert iv.high - iv.mean == pytest.approx(2.776445 * 1.060660, abs=1e-5)
    assert iv.corrected


def test_interval_containing_zero_is_not_distinguishable():
    assert ex.paired_interval([1, -1, 2, -2], [0, 0, 0, 0]).verdict == "not distinguishable"


@pytest.mark.parametrize("a, b, kw, word", [
    ([1, 2], [1], {}, "same length"), ([1], [1], {}, "at least 2"),
    ([1, 2], [1, 2], {"confidence": 1.0}, "confidence"), ([1, float("nan")], [1, 2], {}, "finite"),
    ([1, 2], [1, 2], {"test_train_ratio": -1}, "test_train_ratio")])
def test_paired_interval_refuses_bad_input(a, b, kw, word):
    with pytest.raises(ValueError, match=word):
        ex.paired_interval(a, b, **kw)


def test_kfold_partitions_and_stratifies():
    labels = torch.tensor([0] * 13 + [1] * 7 + [2] * 5)
    folds = ex.kfold_indices(labels, 4, seed=3)
    seen = torch.cat([val for _, val in folds])
    assert sorted(seen.tolist()) == list(range(25))                 # every index validated exactly once
    for tr, val in folds:
        assert set(tr.tolist()).isdisjoint(val.tolist()) and len(tr) + len(val) == 25
    sizes = [len(val) for _, val in folds]
    assert max(sizes) - min(sizes) <= 1
    for c, count in ((0, 13), (1, 7), (2, 5)):
        per_fold = [int((labels[val] == c).sum()) for _, val in folds]
        assert sum(per_fold) == count and max(per_fold) - min(per_fold) <= 1


def test_kfold_is_seeded():
    labels = torch.arange(40) % 4
    same = [v.tolist() for _, v in ex.kfold_indices(labels, 5, seed=1)]
    assert same == [v.tolist() for _, v in ex.kfold_indices(labels, 5, seed=1)]
    assert same != [v.tolist() for _, v in ex.kfold_indices(labels, 5, seed=2)]


@pytest.mark.parametrize("k", [1, 26, True, 2.0])
def test_kfold_refuses_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        ex.kfold_indices(torch.zeros(25, dtype=torch.long), k)


def test_fold_datasets_standardise_with_the_training_part_only():
    x = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    train_set, val_set = ex.fold_datasets(x, torch.zeros(10, dtype=torch.long), torch.arange(8), torch.tensor([8, 9]))
    xt = train_set.tensors[0]
    assert xt.mean().item() == pytest.approx(0.0, abs=1e-6) and xt.std().item() == pytest.approx(1.0)
    # 8 and 9 against the training part's mean 3.5 and sd 2.449
    assert val_set.tensors[0].flatten().tolist() == pytest.approx([(8 - 3.5) / 2.449490, (9 - 3.5) / 2.449490])


def test_fusion_variants_has_both_forms_and_first_once():
    v = ex.fusion_variants("block_config=(2,2)")
    assert list(v) == ["DenseNet", "csp, narrow", "csp, matched", "first", "last, narrow", "last, matched"]
    assert "widths=matched" in v["last, matched"] and "fusion=last" in v["last, matched"]


def test_run_flops_by_hand():
    # 100 images at batch 32: 96 trained (3 passes), 10 validated (1 pass), 2 FLOPs per MAC, 2 epochs
    assert ex.run_flops(1000, 100, 10, 2, 32) == 2 * 2 * 1000 * (3 * 96 + 10)


def test_estimate_with_an_assumed_throughput_by_hand():
    variants = {"a": TINY}
    macs = ex.macs_per_image(TINY, 8, 1)
    est = ex.estimate_duration(variants, (0, 1, 2), image_size=8, in_channels=1, n_train=100, n_val=10,
                               epochs=2, batch_size=32, flops_per_second=1e6)
    assert est.runs == 3
    assert est.seconds == pytest.approx(3 * ex.run_flops(macs, 100, 10, 2, 32) / 1e6)
    assert "assuming" in est.line() and "3 runs" in est.line()


def test_t4_assumption_is_stated_and_sized():
    # the default CIFAR-10 plan of chapter 7 fits about 15 minutes at the stated T4 assumption
    fps = ex.T4_PEAK_FLOPS * ex.T4_UTILISATION
    est = ex.estimate_duration(ex.fusion_variants("block_config=(4,4,4)"), (0, 1, 2), image_size=32,
                               in_channels=3, n_train=45_000, n_val=5_000, epochs=6, batch_size=64,
                               flops_per_second=fps)
    assert 8 * 60 < est.seconds < 16 * 60


def test_measured_estimate_runs_on_cpu():
    est = ex.estimate_duration({"a": TINY}, (0,), image_size=8, in_channels=1, n_train=64, n_val=16,
                               epochs=1, batch_size=16, timed_steps=1)
    assert est.seconds > 0 and "measured" in est.basis


def _tiny_data(n=96):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=gen)
    y = torch.arange(n) % 10
    return TensorDataset(x[: n - 32], y[: n - 32]), TensorDataset(x[n - 32:], y[n - 32:])


def _config(**kw):
    return TrainConfig(**{"model": TINY, "image_size": 8, "epochs": 2, "batch_size": 16, "progress": False, **kw})


def test_train_on_uses_the_given_sets():
    train_set, val_set = _tiny_data()
    history = ex.train_on(_config(epochs=1), train_set, val_set)
    assert history["epochs"][0]["steps"] == len(train_set) // 16      # 4 steps: 64 images, not digits' 1,437


def test_run_in_folder_skips_finished_and_resumes_unfinished(tmp_path):
    train_set, val_set = _tiny_data()
    # an interrupted run: epoch 1 of 2 done (max_steps stops it), as a disconnect would leave it
    ex.train_on(_config(out=str(tmp_path / "a" / "seed0"), max_steps=4), train_set, val_set)
    first = json.loads((tmp_path / "a" / "seed0" / "history.json").read_text())["epochs"]
    assert len(first) == 1
    runs = {"a/seed0": _config(), "b/seed0": _config(seed=1)}
    results = ex.run_in_folder(tmp_path, runs, train_set, val_set, progress=False)
    assert [len(results[n]["epochs"]) for n in runs] == [2, 2]
    assert results["a/seed0"]["epochs"][0] == first[0]              # resumed, epoch 1 not trained again
    mtime = (tmp_path / "b" / "seed0" / "history.json").stat().st_mtime_ns
    again = ex.run_in_folder(tmp_path, runs, train_set, val_set, progress=False)
    assert (tmp_path / "b" / "seed0" / "history.json").stat().st_mtime_ns == mtime   # finished: not rerun
    assert again["b/seed0"]["epochs"] == results["b/seed0"]["epochs"]


def test_run_in_folder_refuses_a_folder_of_another_plan(tmp_path):
    train_set, val_set = _tiny_data()
    ex.run_in_folder(tmp_path, {"a": _config(epochs=1)}, train_set, val_set, progress=False)
    with pytest.raises(ValueError, match="different plan"):
        ex.run_in_folder(tmp_path, {"a": _config(epochs=1, lr=0.01)}, train_set, val_set, progress=False)


def test_run_in_folder_refuses_unsafe_names_and_files(tmp_path):
    train_set, val_set = _tiny_data()
    with pytest.raises(ValueError, match="run name"):
        ex.run_in_folder(tmp_path, {"../x": _config()}, train_set, val_set, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        ex.run_in_folder(tmp_path / "file", {"a": _config()}, train_set, val_set, progress=False)


def test_run_name_is_folder_safe():
    assert ex.run_name("csp, matched", 2) == "csp-matched/seed2"
