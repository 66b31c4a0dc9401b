"""AutoscalingSettings: Vast's names and defaults, merge semantics, and the exact error texts."""

from __future__ import annotations

import dataclasses
import math

import pytest

from vastnb.autoscaling import EFFECTIVE_DEFAULTS, PARAMETERS, AutoscalingSettings
from vastnb.errors import ConfigurationError

VALID = (
    "Valid parameters: cold_workers, max_workers, min_load, min_cold_load, target_util, cold_mult, "
    "max_queue_time, target_queue_time, inactivity_timeout."
)


def test_exactly_vasts_nine_parameters_with_vasts_defaults() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(AutoscalingSettings)}
    assert defaults == {
        "cold_workers": 5,
        "max_workers": 16,
        "min_load": 1.0,
        "min_cold_load": 0.0,
        "target_util": 0.9,
        "cold_mult": 3.0,
        "max_queue_time": None,
        "target_queue_time": None,
        "inactivity_timeout": None,
    }
    assert PARAMETERS == tuple(defaults)


def test_effective_defaults_live_in_one_place() -> None:
    s = AutoscalingSettings()
    assert dict(EFFECTIVE_DEFAULTS) == {"max_queue_time": 30.0, "target_queue_time": 10.0, "inactivity_timeout": -1.0}
    assert s.effective_max_queue_time == 30.0
    assert s.effective_target_queue_time == 10.0
    assert s.effective_inactivity_timeout is None  # never


def test_merged_updates_and_never_replaces() -> None:
    base = AutoscalingSettings()
    first = base.merged(cold_workers=1, min_load=100)
    second = first.merged(max_workers=4)
    assert (second.cold_workers, second.min_load, second.max_workers) == (1, 100.0, 4)
    assert base == AutoscalingSettings()  # untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        second.max_workers = 8  # type: ignore[misc]


def test_values_are_normalised() -> None:
    s = AutoscalingSettings().merged(min_load=2, target_util=1, inactivity_timeout=300)
    assert s.min_load == 2.0 and isinstance(s.min_load, float)
    assert s.target_util == 1.0
    assert s.inactivity_timeout == 300.0


def test_numpy_scalars_are_accepted() -> None:
    import numpy as np
    s = AutoscalingSettings().merged(max_workers=np.int64(4), cold_workers=np.int32(2), min_load=np.float32(1.5))
    assert s.max_workers == 4 and type(s.max_workers) is int
    assert s.min_load == 1.5


def test_unknown_parameter_suggests_the_close_one() -> None:
    with pytest.raises(ConfigurationError) as info:
        AutoscalingSettings().merged(max_worker=4)
    assert str(info.value) == f"unknown autoscaling parameter `max_worker`; did you mean `max_workers`? {VALID}"


def test_unknown_parameter_without_a_close_one() -> None:
    with pytest.raises(ConfigurationError) as info:
        AutoscalingSettings().merged(gpus=2)
    assert str(info.value) == f"unknown autoscaling parameter `gpus`. {VALID}"


def test_unknown_parameter_is_reported_before_bad_values() -> None:
    with pytest.raises(ConfigurationError, match="unknown autoscaling parameter `targetutil`; did you mean `target_util`"):
        AutoscalingSettings().merged(target_util=5, targetutil=0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_util": 1.5}, "`target_util` must be in (0, 1]. Instead got 1.5."),
        ({"target_util": 0}, "`target_util` must be in (0, 1]. Instead got 0."),
        ({"target_util": math.nan}, "`target_util` must be in (0, 1]. Instead got nan."),
        ({"target_util": "0.9"}, "`target_util` must be in (0, 1]. Instead got '0.9' (str)."),
        ({"cold_workers": -1}, "`cold_workers` must be a non-negative integer. Instead got -1."),
        ({"max_workers": -2}, "`max_workers` must be a non-negative integer. Instead got -2."),
        ({"max_workers": True}, "`max_workers` must be a non-negative integer. Instead got True (bool)."),
        ({"max_workers": "4"}, "`max_workers` must be a non-negative integer. Instead got '4' (str)."),
        ({"cold_workers": 2.0}, "`cold_workers` must be a non-negative integer. Instead got 2.0 (float)."),
        ({"cold_workers": None}, "`cold_workers` must be a non-negative integer. Instead got None (NoneType)."),
        ({"min_load": -5}, "`min_load` must be a non-negative number. Instead got -5."),
        ({"min_load": math.inf}, "`min_load` must be a non-negative number. Instead got inf."),
        ({"min_cold_load": False}, "`min_cold_load` must be a non-negative number. Instead got False (bool)."),
        ({"cold_mult": "3"}, "`cold_mult` must be a non-negative number. Instead got '3' (str)."),
        ({"max_queue_time": 0}, "`max_queue_time` must be None or a positive number of seconds. Instead got 0."),
        ({"target_queue_time": -1.0}, "`target_queue_time` must be None or a positive number of seconds. Instead got -1.0."),
        (
            {"inactivity_timeout": "never"},
            "`inactivity_timeout` must be None or a number of seconds (0 disables it, negative means never). "
            "Instead got 'never' (str).",
        ),
        (
            {"inactivity_timeout": math.inf},
            "`inactivity_timeout` must be None or a number of seconds (0 disables it, negative means never). "
            "Instead got inf.",
        ),
    ],
)
def test_bad_values_name_the_parameter_the_value_and_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        AutoscalingSettings().merged(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigurationError) as info:
        AutoscalingSettings(target_util=2.0)
    assert str(info.value) == "`target_util` must be in (0, 1]. Instead got 2.0."


def test_cold_workers_cannot_exceed_max_workers() -> None:
    message = "`cold_workers` (6) cannot exceed `max_workers` (4): raise max_workers or lower cold_workers."
    with pytest.raises(ConfigurationError) as info:
        AutoscalingSettings().merged(cold_workers=6, max_workers=4)
    assert str(info.value) == message
    with pytest.raises(ConfigurationError) as info:  # across calls as well
        AutoscalingSettings().merged(cold_workers=6).merged(max_workers=4)
    assert str(info.value) == message


def test_explicit_default_cold_workers_must_fit_too() -> None:
    with pytest.raises(ConfigurationError) as info:
        AutoscalingSettings().merged(cold_workers=5, max_workers=2)
    assert str(info.value) == "`cold_workers` (5) cannot exceed `max_workers` (2): raise max_workers or lower cold_workers."


def test_default_cold_workers_yields_to_a_smaller_max_workers() -> None:
    s = AutoscalingSettings().merged(max_workers=2)
    assert s.cold_workers == 5
    assert s.effective_cold_workers == 2
    assert s.to_vast_dict()["cold_workers"] == 2


@pytest.mark.parametrize(("value", "effective"), [(None, None), (-1, None), (0, None), (300, 300.0), (0.5, 0.5)])
def test_inactivity_timeout_zero_and_negative_mean_never(value: float | None, effective: float | None) -> None:
    assert AutoscalingSettings().merged(inactivity_timeout=value).effective_inactivity_timeout == effective


def test_queue_times_none_means_the_effective_default() -> None:
    s = AutoscalingSettings().merged(max_queue_time=5, target_queue_time=2)
    assert (s.effective_max_queue_time, s.effective_target_queue_time) == (5.0, 2.0)
    s = s.merged(max_queue_time=None, target_queue_time=None)
    assert (s.effective_max_queue_time, s.effective_target_queue_time) == (30.0, 10.0)


def test_to_vast_dict_gives_the_non_none_fields() -> None:
    assert AutoscalingSettings().to_vast_dict() == {
        "cold_workers": 5,
        "max_workers": 16,
        "min_load": 1.0,
        "min_cold_load": 0.0,
        "target_util": 0.9,
        "cold_mult": 3.0,
    }
    s = AutoscalingSettings().merged(cold_workers=1, max_workers=4, target_queue_time=5, inactivity_timeout=-1)
    assert s.to_vast_dict() == {
        "cold_workers": 1,
        "max_workers": 4,
        "min_load": 1.0,
        "min_cold_load": 0.0,
        "target_util": 0.9,
        "cold_mult": 3.0,
        "target_queue_time": 5.0,
        "inactivity_timeout": -1.0,
    }


def test_a_failed_merge_changes_nothing() -> None:
    s = AutoscalingSettings().merged(max_workers=4, cold_workers=1)
    with pytest.raises(ConfigurationError):
        s.merged(min_load=10, target_util=3)
    assert s == AutoscalingSettings(cold_workers=1, max_workers=4)
