from dataclasses import replace

import pytest

from vidrec.features.definitions import FEATURES, TRANSFORMS
from vidrec.features.spec import FeatureSet, Transform


def test_duplicate_and_undeclared_names_are_refused() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        replace(FEATURES, batch=(*FEATURES.batch, FEATURES.batch[0]))
    bad = Transform("x", ("no_such_column",), lambda d: d.ts, "request")
    with pytest.raises(ValueError, match="no_such_column"):
        replace(FEATURES, transforms=(*TRANSFORMS, bad))
    with pytest.raises(ValueError, match="not declared"):
        replace(FEATURES, model_inputs=("ghost",))


def test_schema_hash_identifies_the_model_input_vector() -> None:
    same = FeatureSet(
        FEATURES.name,
        FEATURES.batch,
        FEATURES.transforms,
        FEATURES.request_columns,
        FEATURES.model_inputs,
        FEATURES.derived_keys,
    )
    assert same.schema_hash() == FEATURES.schema_hash()
    fewer = replace(FEATURES, model_inputs=FEATURES.model_inputs[:-1])
    assert fewer.schema_hash() != FEATURES.schema_hash()
