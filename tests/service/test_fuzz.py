"""Property-based fuzzing of every route against the service's own OpenAPI document (schemathesis), with
every model loaded: a tiny catalog and untrained cross-encoder, and an essay scorer and a classifier
trained in seconds on synthetic rows. Examples are derandomised (the same cases every run);
EDURANK_FUZZ_EXAMPLES sets how many per route (CI: 25; `bench/README.md` has the longer run).

Checked: no input gives a 5xx, every status and header is documented, bodies match their schemas, and
inputs the schema forbids are refused. That every schema-valid input is accepted is tests/service/test_schemas.py's
(schemathesis's check cannot tell the refusals a static schema cannot state: a topic's `language` must be one
of the loaded catalog's, and limits come from settings).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.testclient import TestClient

from edurank.essays.config import WindowSpec
from edurank.reranker.cross_encoder.model import PairFormat, Reranker
from edurank.reranker.decision import DecisionRule
from edurank.service.app import create_app
from edurank.service.settings import Settings
from edurank.training.classifier import train_classifier
from edurank.training.config import ClassifierConfig, EssayConfig
from edurank.training.essays import train_essays
from tests.conftest import essay_rows, response_rows, write_catalog, write_essays, write_responses

EXAMPLES = int(os.environ.get("EDURANK_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    root = tmp_path_factory.mktemp("fuzz")
    reranker = Reranker.load(None, PairFormat(16, 32))
    reranker.rule = DecisionRule(threshold=0.0, max_items=3, tuned=True)
    reranker.save(root / "reranker")
    train_essays(write_essays(root / "essays.csv", essay_rows(30)), root / "artifacts" / "essays",
                 EssayConfig(paths=("fast",), folds=2, windows=WindowSpec(max_tokens=32, stride=24)))
    train_classifier(write_responses(root / "responses.csv", response_rows(40)), root / "artifacts" / "classifier",
                     ClassifierConfig(folds=2, max_length=48, freeze_layers=5, epochs=1, batch_size=8))
    app = create_app(Settings(artifacts=root / "artifacts", catalog=write_catalog(root / "catalog"),
                              reranker=str(root / "reranker"), train_ranker=False, background_load=False,
                              max_text_chars=200, max_rerank_candidates=4, max_essay_chars=300, max_essays=3,
                              max_responses=3))
    with TestClient(app):  # runs the lifespan: the models load
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_input_breaks_the_contract(api_schema: schemathesis.BaseSchema) -> None:
    """Each route in turn (schemathesis's pytest plugin does not run under pytest 9, so the operations are
    driven here); every route's failures are collected before the test fails."""
    failures, checked, statuses = {}, [], Counter()
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case) -> None:
            statuses[case.call_and_validate(excluded_checks=[positive_data_acceptance]).status_code] += 1

        try:
            fuzz()
        except Exception as err:  # noqa: BLE001 - reported below, with every other route's
            failures[operation.label] = str(err)[:3000]
        checked.append(operation.label)
    print(f"fuzzed {len(checked)} routes with {sum(statuses.values())} requests: {dict(sorted(statuses.items()))}")
    assert {"POST /recommend", "POST /score-essay", "POST /classify", "POST /admin/reload"} <= set(checked)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
