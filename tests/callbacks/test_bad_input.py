"""Issue 14, the callbacks: a setting the chosen mode does not use is refused, naming it and what to do,
instead of being silently ignored."""

from __future__ import annotations

import pytest

from lit_automl.callbacks import DartsPlusEarlyStopping, HessianEigenvalueMonitor, TemperatureAnnealing


@pytest.mark.parametrize("kwargs, message", [
    (dict(schedule="linear", decay=0.5),
     r"^decay is the exponential schedule's: schedule='linear' does not use it \(leave it at 0.97 or set "
     r"schedule='exponential'\), got decay=0.5$"),
    (dict(schedule="exponential", epochs=10),
     r"^epochs is the length of the linear schedule: schedule='exponential' does not use it \(leave it None or set "
     r"schedule='linear'\), got epochs=10$"),
])
def test_temperature_annealing_refuses_the_other_schedules_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TemperatureAnnealing(**kwargs)


@pytest.mark.parametrize("kwargs, name, value", [
    (dict(criterion="skip", patience=3), "patience", "3"),
    (dict(criterion="skip", learnable_ops=["sep_conv_3x3"]), "learnable_ops", r"\['sep_conv_3x3'\]"),
    (dict(criterion="stable", max_skip_connects=3), "max_skip_connects", "3"),
])
def test_darts_plus_refuses_settings_of_the_criterion_it_does_not_run(kwargs, name, value):
    criterion = kwargs["criterion"]
    with pytest.raises(ValueError, match=rf"^criterion='{criterion}' does not use {name} \(leave it at its default or "
                                         rf"use criterion='both'\), got {name}={value}$"):
        DartsPlusEarlyStopping(**kwargs)


@pytest.mark.parametrize("name, value, default", [("window", 3, 5), ("k", 2, 5), ("threshold", 0.5, 0.75)])
def test_hessian_monitor_refuses_darts_es_settings_without_early_stopping(name, value, default):
    with pytest.raises(ValueError, match=rf"^{name} belongs to the DARTS-ES rule, which early_stop=False does not run "
                                         rf"\(leave it at {default} or set early_stop=True\), got {name}={value}$"):
        HessianEigenvalueMonitor(**{name: value})
    assert getattr(HessianEigenvalueMonitor(early_stop=True, **{name: value}), name) == value  # used there
