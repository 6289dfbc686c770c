"""fit/evaluate parameters: the allowed keys are real keywords of the installed frameworks."""

from __future__ import annotations

import inspect

import pytest

from shared.frameworks import KERAS_EVALUATE, KERAS_FIT, TORCH_ENGINE, TORCH_LOADER, check_training_params


def test_keras_keys_are_keywords_of_the_installed_keras() -> None:
    keras = pytest.importorskip("keras")
    fit = inspect.signature(keras.Model.fit).parameters
    evaluate = inspect.signature(keras.Model.evaluate).parameters
    assert set(KERAS_FIT) <= set(fit)
    assert set(KERAS_EVALUATE) <= set(evaluate)


def test_torch_keys_are_keywords_of_ignite_and_the_dataloader() -> None:
    engine = pytest.importorskip("ignite.engine")
    loader = pytest.importorskip("torch.utils.data")
    run = inspect.signature(engine.Engine.run).parameters
    assert set(TORCH_ENGINE) - {"epochs"} <= set(run)  # "epochs" is accepted as an alias of max_epochs
    assert set(TORCH_LOADER) <= set(inspect.signature(loader.DataLoader).parameters)


@pytest.mark.parametrize(
    ("framework", "section", "params", "field"),
    [
        ("tensorflow", "fit", {"epochs": 10, "shuffle": True}, None),
        ("tensorflow", "fit", {"epochz": 10}, "fit.epochz"),
        ("tensorflow", "fit", {"callbacks": "__import__('os')"}, "fit.callbacks"),
        ("tensorflow", "fit", {"epochs": "10"}, "fit.epochs"),
        ("tensorflow", "fit", {"epochs": True}, "fit.epochs"),
        ("tensorflow", "fit", {"epochs": 0}, "fit.epochs"),
        ("tensorflow", "fit", {"validation_split": 0}, None),
        ("tensorflow", "evaluate", {"steps": 2}, None),
        ("pytorch", "fit", {"max_epochs": 3, "shuffle": True}, None),
        ("pytorch", "fit", {"epochs": 3}, None),
        ("pytorch", "fit", {"validation_split": 0.1}, "fit.validation_split"),
        ("pytorch", "evaluate", {"verbose": 1}, "evaluate.verbose"),
    ],
)
def test_check_training_params(framework: str, section: str, params: dict[str, object], field: str | None) -> None:
    problem = check_training_params(framework, section, params)
    assert (problem[0] if problem else None) == field
