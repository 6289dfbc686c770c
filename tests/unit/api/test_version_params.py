"""The new request fields refuse bad values naming the field (the API's 422 names the path of the
first error: ``incremental``, ``incremental.window_samples``, ``model_version``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.api.routes.inferences import VersionChoice
from shared.events.inference import InferenceParams
from shared.events.training import TrainingParams


def first_field(error: ValidationError) -> str:
    return ".".join(str(p) for p in error.errors()[0]["loc"])


@pytest.mark.parametrize(
    ("incremental", "field"),
    [
        ({}, "incremental"),
        ({"window_samples": 0}, "incremental.window_samples"),
        ({"window_s": -1}, "incremental.window_s"),
    ],
)
def test_an_incremental_deployment_without_a_window_is_refused_naming_it(
    incremental: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingParams.model_validate({"configuration_id": 1, "incremental": incremental})
    assert first_field(caught.value) == field


def test_a_version_is_a_positive_number_or_latest() -> None:
    assert VersionChoice.model_validate({"model_version": "latest"}).model_version == "latest"
    assert VersionChoice.model_validate({"model_version": 3}).model_version == 3
    for bad in (0, "newest", 2**31):
        with pytest.raises(ValidationError) as caught:
            VersionChoice.model_validate({"model_version": bad})
        assert first_field(caught.value).startswith("model_version")
    with pytest.raises(ValidationError) as caught:
        InferenceParams.model_validate({"result_id": 1, "input_topic": "i", "output_topic": "o", "model_version": 0})
    assert first_field(caught.value).startswith("model_version")
