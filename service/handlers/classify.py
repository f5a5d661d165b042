"""What /classify does, as a plain function of the registry and a validated request."""

from __future__ import annotations

from edurank.classifier.data import NO_MISCONCEPTION
from edurank.classifier.predictor import MisconceptionClassifier, Response
from edurank.service.errors import RequestError
from edurank.service.handlers.checks import check_text
from edurank.service.registry import Registry
from edurank.service.schemas.classify import (
    Classification,
    ClassifyRequest,
    ClassifyResponse,
    LabelScore,
    StudentResponse,
)
from edurank.timing import Timer, no_timer

NOT_TRAINED = ("no misconception classifier is loaded: train one with `edurank train classifier --data CSV --out "
               "<artifacts>/classifier` or point EDURANK_CLASSIFIER at one")
SINGLE_FIELDS = ("id", "question_id", "question_text", "answer", "explanation")


def checked(registry: Registry, response: StudentResponse, loc: tuple[str | int, ...]) -> Response:
    """The response as the classifier takes it; RequestError naming the field when one is missing or bad."""
    settings = registry.settings
    for name in ("answer", "explanation"):
        if getattr(response, name) is None:
            raise RequestError((*loc, name), "is required")
    if response.question_id is None and response.question_text is None:
        raise RequestError((*loc, "question_id"), "give question_id or question_text")
    check_text((*loc, "question_text"), response.question_text, settings.max_text_chars)
    check_text((*loc, "answer"), response.answer, settings.max_response_chars)
    check_text((*loc, "explanation"), response.explanation, settings.max_response_chars)
    question_id = None if response.question_id is None else str(response.question_id).strip()
    return Response(question_id or None, response.question_text, str(response.answer), str(response.explanation))


def classify_responses(registry: Registry, request: ClassifyRequest, timer: Timer = no_timer) -> ClassifyResponse:
    if request.responses is not None:
        if single := [name for name in SINGLE_FIELDS if getattr(request, name) is not None]:
            raise RequestError((single[0],), "give one response as top-level fields or a batch as responses, "
                                             "not both")
        if not request.responses:
            raise RequestError(("responses",), "must hold at least one response")
        if len(request.responses) > registry.settings.max_responses:
            raise RequestError(("responses",), f"{len(request.responses)} responses; the limit is "
                                               f"{registry.settings.max_responses}")
        items = request.responses
        responses = [checked(registry, item, ("responses", i)) for i, item in enumerate(items)]
    else:
        items = [request]
        responses = [checked(registry, request, ())]
    classifier, batched = registry.classifier, registry.classify
    if classifier is None or batched is None:
        raise RequestError((), registry.missing(MisconceptionClassifier.KIND, NOT_TRAINED), 503)
    with timer("batch"):  # the classifier's shared batch, waiting for it included (its stages: per batch)
        predictions = batched(responses)
    results = []
    for item, prediction in zip(items, predictions, strict=True):
        labels = []
        for label, probability in zip(prediction.labels, prediction.probabilities, strict=True):
            category, misconception = label.split(":", 1)
            labels.append(LabelScore(label=label, category=category, probability=probability,
                                     misconception=None if misconception == NO_MISCONCEPTION else misconception))
        results.append(Classification(id=item.id, labels=labels, known_question=prediction.known_question,
                                      question_id=prediction.question_id))
    return ClassifyResponse(results=results, model_version=classifier.version)
