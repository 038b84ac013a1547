"""The synthetic index of `make bench-dicomweb`: the plan's sizes and the binds of its set-based statements."""

from __future__ import annotations

import itertools

import pytest

from ops.index_fill import (
    STUDY_MODALITY,
    IdBase,
    extra_values,
    fill_parameters,
    fill_plan,
    fill_statements,
    study_chunks,
)

BASE = IdBase(patient=11, study=21, series=31, instance=41)


def test_a_million_instances_is_ten_thousand_studies_of_four_series() -> None:
    plan = fill_plan(instances=1_000_000)
    assert (plan.studies, plan.series, plan.instances_per_series, plan.instances) == (10_000, 40_000, 25, 1_000_000)
    assert plan.patients == 6667  # 1.5 studies per patient


def test_plan_rounds_to_whole_studies() -> None:
    assert fill_plan(instances=998_000).studies == 9_980
    assert fill_plan(instances=149).instances == 100
    assert fill_plan(instances=1).instances == 100  # at least one study


@pytest.mark.parametrize(("instances", "per_study", "series"), [(0, 100, 4), (100, 10, 4), (100, 0, 4)])
def test_plan_refuses_impossible_shapes(instances: int, per_study: int, series: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        fill_plan(instances=instances, per_study=per_study, series_per_study=series)


def test_chunks_cover_every_study_once_in_order() -> None:
    plan = fill_plan(instances=1_050_000)
    chunks = study_chunks(plan, chunk_instances=100_000)
    assert chunks[0][0] == 0
    assert chunks[-1][1] == plan.studies
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    assert all(end - start <= 1000 for start, end in chunks)


def test_statements_bind_the_plan_and_the_id_bases() -> None:
    plan = fill_plan(instances=250_000)
    steps = fill_statements(plan, BASE, run="77")
    labels = [label for label, _, _ in steps]
    assert labels[:3] == [f"{plan.patients} patients", "2500 studies", "10000 series"]
    instance_steps = [params for label, _, params in steps if label.startswith("instances")]
    assert [(p["from_study"], p["to_study"]) for p in instance_steps] == study_chunks(plan)
    params = instance_steps[0]
    assert (params["patient_base"], params["study_base"], params["series_base"], params["instance_base"]) == (
        11, 21, 31, 41,
    )  # fmt: skip
    assert (params["studies"], params["series_per_study"], params["per_series"], params["per_study"]) == (
        2500, 4, 25, 100,
    )  # fmt: skip
    assert params["uid_prefix"].endswith(".77")
    for _, statement, binds in steps:
        assert "{" not in statement.replace("'{}'", "")  # every placeholder filled
        for name in binds:
            assert name in fill_parameters(plan, BASE, run="77") or name in {"from_study", "to_study"}


def test_modality_mix_and_name_lists_are_bound_with_their_lengths() -> None:
    params = fill_parameters(fill_plan(instances=1000), BASE, run="1")
    assert params["n_modalities"] == len(STUDY_MODALITY) == 20
    assert STUDY_MODALITY.count("CT") == 7
    for key in ("heads", "tails", "given", "descriptions", "body_parts", "physicians", "institutions"):
        assert params[f"n_{key}"] == len(params[key]) > 0


def test_columns_other_features_add_get_their_default_in_the_statement() -> None:
    extras = {"pacs_study": extra_values("pacs_study", [("status", "character varying"), ("reads", "integer")])}
    assert extras["pacs_study"] == [("status", "'unread'"), ("reads", "0")]
    studies = fill_statements(fill_plan(instances=100), BASE, run="1", extras=extras)[1][1]
    assert "updated_at, status, reads)" in studies
    assert "now(), now(), 'unread', 0" in studies


def test_an_unknown_not_null_type_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match=r"pacs_series\.shape"):
        extra_values("pacs_series", [("shape", "polygon")])
