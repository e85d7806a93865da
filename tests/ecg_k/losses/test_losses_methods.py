"""The method registry the trainer consumes (methods.py)."""

from __future__ import annotations

import pytest

from ecg_k.losses.methods import DIST_HEAD, METHODS, VANILLA, Phase, get_method


def test_every_method_the_trainer_accepts() -> None:
    assert list(METHODS) == [
        "vanilla", "inv", "sqrt_inv", "lds", "fds", "bmse", "ranksim", "conr", "dist",
        "focal", "srl", "groupdir",
        "lds+dist", "fds+dist", "ranksim+dist", "conr+dist", "bmse+dist",
        "focal+dist", "srl+dist", "groupdir+dist",
    ]  # fmt: skip
    for name, spec in METHODS.items():
        assert spec.name == name and spec.summary
        assert spec.phases[0].trains == "all"
        assert all(phase.trains == "head" for phase in spec.phases[1:])


def test_dist_is_the_papers_headline() -> None:
    dist = get_method("dist")
    assert dist.phases == (VANILLA, DIST_HEAD)
    assert VANILLA == Phase("all", loss="l1", sample_weights="none")
    assert (DIST_HEAD.loss, DIST_HEAD.sample_weights, DIST_HEAD.dist_loss, DIST_HEAD.head_init) == (
        "l2", "inverse", True, "reinit",
    )  # fmt: skip


@pytest.mark.parametrize("base", ["lds", "fds", "ranksim", "conr", "bmse", "focal", "srl", "groupdir"])
def test_combinations_start_from_the_baseline(base: str) -> None:
    combo, baseline = get_method(f"{base}+dist"), get_method(base)
    assert combo.phases[:-1] == baseline.phases
    last = combo.phases[-1]
    assert last.dist_loss and last.trains == "head" and last.loss == "l2" and last.sample_weights == "inverse"
    assert last.head_init == ("keep" if base in ("bmse", "groupdir") else "reinit")


def test_baselines_use_their_component() -> None:
    assert get_method("lds").phases[0].lds and get_method("lds").phases[0].sample_weights == "sqrt_inv"
    assert get_method("bmse").phases[-1].loss == "bmse"
    for name in ("fds", "ranksim", "conr"):
        assert get_method(name).phases[0].regularizer == name
    for name in ("vanilla", "inv", "bmse"):
        assert not any(phase.dist_loss for phase in get_method(name).phases)


def test_unknown_method_and_inconsistent_phases() -> None:
    with pytest.raises(ValueError, match="choose one of vanilla"):
        get_method("focal_loss")
    with pytest.raises(ValueError, match="LDS"):
        Phase("all", lds=True)
    with pytest.raises(ValueError, match="Balanced MSE"):
        Phase("head", loss="bmse", dist_loss=True)
    with pytest.raises(ValueError, match="head_init"):
        Phase("all", head_init="reinit")


def test_the_2025_methods_use_their_component() -> None:
    assert get_method("focal").phases == (Phase("all", loss="focal"),)
    assert get_method("srl").phases == (Phase("all", regularizer="srl"),)
    assert get_method("groupdir").phases == (Phase("all", regularizer="groupdir"),)
    with pytest.raises(ValueError, match="needs trains='all'"):
        Phase("head", regularizer="groupdir")
    with pytest.raises(ValueError, match="not Focal-R"):
        Phase("head", loss="focal", dist_loss=True)
