from dataclasses import replace

import pytest

from vidrec.features.definitions import FEATURES, TRANSFORMS
from vidrec.features.spec import FeatureSet, Transform


def test_duplicate_and_undeclared_names_are_refused() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        replace(FEATURES, batch=(*FEATURES.batch, FEATURES.batch[0]))
    bad = Transform("x", ("no_such_column",), lambda d: d["ts"], "request")
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


def test_category_codes_are_stable_and_missing_or_unknown_is_minus_one() -> None:
    import zlib

    import numpy as np

    from vidrec.features.definitions import CODE_BUCKETS, code

    values = np.array(["music", None, "unknown", float("nan"), "news", "music"], dtype=object)
    music, news = (zlib.crc32(v.encode()) % CODE_BUCKETS for v in ("music", "news"))
    assert code(values).tolist() == [music, -1, -1, -1, news, music]
    assert code(values[:0]).dtype == np.int64 and len(code(values[:0])) == 0
