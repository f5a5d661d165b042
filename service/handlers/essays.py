"""What /score-essay does, as a plain function of the registry and a validated request."""

from __future__ import annotations

from edurank.essays.data import TRAITS, round_scores
from edurank.essays.scorer import EssayScorer
from edurank.service.errors import RequestError
from edurank.service.handlers.checks import check_text
from edurank.service.registry import Registry
from edurank.service.schemas.essays import EssayScores, ScoreEssayRequest, ScoreEssayResponse
from edurank.timing import Timer, no_timer

NOT_TRAINED = ("no essay scorer is loaded: train one with `edurank train essays --data CSV --out <artifacts>/essays` "
               "or point EDURANK_ESSAYS at one")


def score_essays(registry: Registry, request: ScoreEssayRequest, timer: Timer = no_timer) -> ScoreEssayResponse:
    settings = registry.settings
    if request.text is not None:
        check_text(("text",), request.text, settings.max_essay_chars)
        ids, texts = [None], [request.text]
    else:
        assert request.essays is not None
        if not request.essays:
            raise RequestError(("essays",), "must hold at least one essay")
        if len(request.essays) > settings.max_essays:
            raise RequestError(("essays",), f"{len(request.essays)} essays; the limit is {settings.max_essays}")
        for i, essay in enumerate(request.essays):
            check_text(("essays", i, "text"), essay.text, settings.max_essay_chars)
        ids, texts = [e.id for e in request.essays], [e.text for e in request.essays]
    scorer, batched = registry.essays, registry.score_essays
    if scorer is None or batched is None:
        raise RequestError((), registry.missing(EssayScorer.KIND, NOT_TRAINED), 503)
    with timer("batch"):  # the essay scorer's shared batch, waiting for it included (its stages: per batch)
        scores = batched(texts)
    rounded = round_scores(scores)
    results = [EssayScores(id=essay_id, scores=dict(zip(TRAITS, map(float, row), strict=True)),
                           rounded=dict(zip(TRAITS, map(float, halves), strict=True)))
               for essay_id, row, halves in zip(ids, scores, rounded, strict=True)]
    return ScoreEssayResponse(results=results, model_version=scorer.version)
