"""The review page over HTTP (TestClient), with the ranker the service trains at first start on the sample catalog:
the pages render, the decisions' JSON calls validate and store what the page showed, and with an API key the
pages sit behind the login's cookie."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from fastapi.testclient import TestClient

from edurank.retriever.readable import UNTITLED
from edurank.service.app import create_app
from edurank.service.handlers.review import Channel, TreeNode, item_titles, text_topic_id
from edurank.service.middleware import REVIEW_COOKIE, REVIEW_SECONDS
from edurank.service.routes.review import templates
from edurank.service.settings import Settings

KEY = "review-key-0123456789abcdef"
HTML = {"Accept": "text/html"}
SAME_ORIGIN = {"Origin": "http://testserver"}  # what a browser sends with the page's own writes
TOPIC = "t_en_004"  # Equivalent fractions


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def client(artifacts: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(artifacts=artifacts, background_load=False))) as client:
        yield client


@pytest.fixture(scope="module")
def keyed(artifacts: Path, client: TestClient) -> Iterator[TestClient]:
    """The same artifacts (the ranker trained once) behind a key that the inference routes need too."""
    settings = Settings(artifacts=artifacts, background_load=False, api_key=KEY, require_key=True,
                        feedback_db=str(artifacts / "keyed.sqlite"))
    with TestClient(create_app(settings)) as keyed:
        yield keyed


def items_of(page: str) -> list[str]:
    """The item rows' opening tags of a topic page, in order."""
    return re.findall(r'<li class="item[^>]*>', page)


def test_the_home_page_lists_the_catalog_by_channel(client: TestClient) -> None:
    response = client.get("/review")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    for channel in ("ch_en_math", "ch_de_mathe", "ch_fr_histgeo", "ch_es_ciencias"):
        assert channel in page
    assert f'href="/review/topic/{TOPIC}"' in page and "Equivalent fractions" in page
    assert 'id="filter"' in page and 'action="/review/topic"' in page
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page loads something from elsewhere"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    for asset in ("review.js", "review.css"):
        assert client.get(f"/static/review/{asset}").status_code == 200
    assert "/review" not in client.get("/openapi.json").json()["paths"]  # the HTML pages stay out of the API


def test_a_topic_shows_its_ten_best_candidates_and_marks_the_cut(client: TestClient) -> None:
    page = client.get(f"/review/topic/{TOPIC}").text
    rows = items_of(page)
    assert len(rows) == 10
    returned = client.post("/recommend", json={"topic_id": TOPIC}).json()["items"]
    kept = [row for row in rows if "below" not in row.split('"')[1]]
    assert len(kept) == len(returned) < 10  # the same cut as /recommend, and some candidates below it
    shown_ids = [re.search(r'data-content-id="([^"]+)"', row).group(1) for row in rows]
    assert shown_ids[:len(returned)] == [item["id"] for item in returned]
    assert page.count('class="reasons"') == 10 and "below the cut" in page
    assert re.search(r'class="probability">\d+\.\d%<', page)
    assert 'data-verdict="accepted"' in page and 'id="history"' in page and "No decisions yet." in page


def test_a_typed_topic_gets_a_stable_text_id_and_is_escaped(client: TestClient) -> None:
    title = '<script>alert("x")</script> Fractions \\(\\frac{1}{2}\\) & "quotes"'
    response = client.get("/review/topic", params={"title": title, "language": "en"})
    assert response.status_code == 200
    page = response.text
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    topic_id = text_topic_id(title, "en")
    assert re.fullmatch(r"text:[0-9a-f]{16}", topic_id) and f'data-topic-id="{topic_id}"' in page
    assert topic_id == text_topic_id(title + " ", "en") != text_topic_id(title, "de")
    assert len(items_of(page)) == 10


@pytest.mark.parametrize(("url", "status", "says"), [
    ("/review/topic/no-such-topic", 404, "not in the loaded catalog"),
    ("/review/topic?title=%20%20", 422, "type the topic"),
    ("/review/topic?title=Fractions&language=xx", 422, "unknown language"),
])
def test_a_refused_page_is_an_html_page_with_its_status(client: TestClient, url: str, status: int, says: str) -> None:
    response = client.get(url)
    assert response.status_code == status and response.headers["content-type"].startswith("text/html")
    assert says in response.text and 'href="/review"' in response.text


def decision(content_id: str, verdict: str = "accepted", **fields: object) -> dict[str, object]:
    return {"topic_id": TOPIC, "content_id": content_id, "decision": verdict, "rank": 2, "probability": 0.42,
            "who": "Ada", **fields}


def test_decisions_are_stored_with_what_was_shown_and_can_be_undone(client: TestClient) -> None:
    versions = client.get("/ready").json()["registry"]["versions"]
    first = client.post("/review/decisions", json=decision("c_en_0030"))
    assert first.status_code == 201
    second = client.post("/review/decisions", json=decision("c_en_0030", "rejected", who="  "))
    state = client.get("/review/decisions", params={"topic_id": TOPIC}).json()
    (current,) = state["current"]
    (first_id,), (second_id,) = first.json()["ids"], second.json()["ids"]
    assert current["id"] == second_id and current["decision"] == "rejected" and current["who"] is None
    assert [d["id"] for d in state["history"]] == [second_id, first_id]
    stored = state["history"][1]
    assert (stored["who"], stored["rank"], stored["probability"], stored["source"]) == ("Ada", 2, 0.42, "review")
    assert stored["versions"] == versions and stored["at"] and stored["undone_at"] is None

    undone = client.post(f"/review/decisions/{second_id}/undo", json={"who": "Ada"})
    assert undone.json() == {"id": second_id, "undone": True}
    state = client.get("/review/decisions", params={"topic_id": TOPIC}).json()
    assert [d["id"] for d in state["current"]] == [first_id]  # undoing brings back the decision before it
    assert state["history"][0]["undone_by"] == "Ada"
    again = client.post(f"/review/decisions/{second_id}/undo")
    assert again.status_code == 404 and again.json()["detail"][0]["loc"] == ["body", "decision_id"]

    page = client.get(f"/review/topic/{TOPIC}").text
    assert 'class="undone"' in page and 'data-undo-id="' in page and "Ada" in page


def test_a_typed_topics_decisions_are_kept_under_its_text_id(client: TestClient) -> None:
    topic_id = text_topic_id("Adding fractions", "en")
    recorded = client.post("/review/decisions", json=decision("c_en_0014", topic_id=topic_id))
    assert recorded.status_code == 201
    page = client.get("/review/topic", params={"title": "Adding fractions", "language": "en"}).text
    assert f'<tr data-id="{recorded.json()["ids"][0]}">' in page and "No decisions yet." not in page


@pytest.mark.parametrize(("change", "status", "loc"), [
    ({"decision": "maybe"}, 422, ["body", "decision"]),
    ({"decision": "imported"}, 422, ["body", "decision"]),  # Studio's verdicts go through POST /feedback
    ({"rank": 0}, 422, ["body", "rank"]),
    ({"rank": "1"}, 422, ["body", "rank"]),
    ({"probability": 1.5}, 422, ["body", "probability"]),
    ({"who": "x" * 513}, 422, ["body", "who"]),
    ({"topic_id": "no-such-topic"}, 404, ["body", "topic_id"]),
    ({"topic_id": "text:not-a-digest"}, 404, ["body", "topic_id"]),
    ({"content_id": "no-such-item"}, 404, ["body", "content_id"]),
    ({"content_id": "bad\nid"}, 422, ["body", "content_id"]),
    ({"extra": 1}, 422, ["body", "extra"]),
    ({"content_id": "c_en 0030"}, 422, ["body", "content_id"]),  # ids hold no whitespace
    ({"topic_id": f"{TOPIC} "}, 422, ["body", "topic_id"]),
    ({"versions": {str(i): "v" for i in range(17)}}, 422, ["body", "versions"]),  # as POST /feedback's
    ({"probability": "0.5"}, 422, ["body", "probability"]),
])
def test_a_bad_decision_is_refused_naming_the_field(client: TestClient, change: dict[str, object], status: int,
                                                     loc: list[str]) -> None:
    response = client.post("/review/decisions", json={**decision("c_en_0016"), **change})
    assert response.status_code == status and response.json()["detail"][0]["loc"] == loc


def test_undo_refuses_an_unknown_or_impossible_id(client: TestClient) -> None:
    assert client.post("/review/decisions/999999/undo").status_code == 404
    assert client.post(f"/review/decisions/{2**63}/undo").status_code == 422
    assert client.get("/review/decisions", params={"topic_id": "no-such-topic"}).status_code == 404


def test_without_a_key_the_pages_are_open_and_the_login_says_so(client: TestClient) -> None:
    assert client.get("/review", headers=HTML).status_code == 200
    assert "no api key is set" in client.get("/review/login").text.lower()
    refused = client.post("/review/login", data={"key": KEY})
    assert refused.status_code == 401 and REVIEW_COOKIE not in refused.cookies


def test_with_a_key_the_pages_need_the_login_cookie(keyed: TestClient) -> None:
    opened = keyed.get(f"/review/topic/{TOPIC}", headers=HTML, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == f"/review/login?next=%2Freview%2Ftopic%2F{TOPIC}"
    refused = keyed.post("/review/decisions", json=decision("c_en_0030"), headers=SAME_ORIGIN)
    assert refused.status_code == 401 and refused.json()["detail"][0]["loc"] == ["header", "authorization"]
    assert keyed.get("/review/decisions", params={"topic_id": TOPIC}).status_code == 401  # a script: no redirect
    assert keyed.get("/static/review/review.js").status_code == 200  # the page's own files are public
    form = keyed.get("/review/login?next=/review/topic/t_en_004")
    assert form.status_code == 200 and 'type="password"' in form.text

    wrong = keyed.post("/review/login", data={"key": KEY[::-1], "next": f"/review/topic/{TOPIC}"},
                       follow_redirects=False)
    assert wrong.status_code == 401 and "not the key" in wrong.text and REVIEW_COOKIE not in wrong.cookies
    right = keyed.post("/review/login", data={"key": KEY, "next": f"/review/topic/{TOPIC}"}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == f"/review/topic/{TOPIC}"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/review" in cookie and KEY not in cookie
    assert f"Max-Age={REVIEW_SECONDS}" in cookie

    assert keyed.get(f"/review/topic/{TOPIC}", headers=HTML).status_code == 200  # the client keeps the cookie
    assert keyed.post("/review/decisions", json=decision("c_en_0030"), headers=SAME_ORIGIN).status_code == 201
    [recorded] = keyed.get("/review/decisions", params={"topic_id": TOPIC}).json()["current"]
    other_port = keyed.post(f"/review/decisions/{recorded['id']}/undo", content=b"",
                            headers={"Origin": "http://testserver:8080", "Content-Type": "text/plain"})
    assert other_port.status_code == 403 and other_port.json()["detail"][0]["loc"] == ["header", "origin"]
    assert keyed.get("/review/decisions", params={"topic_id": TOPIC}).json()["current"] == [recorded]  # not undone
    assert keyed.post("/recommend", json={"topic_id": TOPIC}).status_code == 401  # the cookie is for /review only
    out = keyed.post("/review/logout", headers=SAME_ORIGIN, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/review/login"
    assert keyed.get("/review", headers=HTML, follow_redirects=False).status_code == 303  # the cookie is gone
    assert keyed.get("/review/decisions", params={"topic_id": TOPIC},
                     headers={"Authorization": f"Bearer {KEY}"}).status_code == 200  # or the usual header
    forged = keyed.get("/review", headers=HTML, cookies={REVIEW_COOKIE: "0" * 64}, follow_redirects=False)
    assert forged.status_code == 303


def test_the_login_never_sends_a_browser_to_another_site(keyed: TestClient) -> None:
    for target in ("https://example.org/", "//example.org/review", "/reviewer", "/docs"):
        response = keyed.post("/review/login", data={"key": KEY, "next": target}, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/review"
    keyed.cookies.clear()


def test_tree_links_keep_an_id_one_path_segment(client: TestClient) -> None:
    """An id's "/" is encoded (%2F), so its "." and ".." parts are no path segments a browser would resolve, and
    the page's `{topic_id:path}` route gets the id back whole."""
    odd = "a/../b c/./d"
    page = templates.get_template("review/index.html").render(
        base="", static="", status=200, keyed=False, languages=[],
        channels=[Channel("ch", ["en"], [TreeNode(odd, "Odd", "en", True, [])])])
    assert 'href="/review/topic/a%2F..%2Fb%20c%2F.%2Fd"' in page
    answer = client.get("/review/topic/a%2F..%2Fb%20c%2F.%2Fd")
    assert answer.status_code == 404 and "topic &#39;a/../b c/./d&#39; is not in the loaded catalog" in answer.text


def test_history_rows_of_items_not_listed_get_readable_titles() -> None:
    content = pl.DataFrame({"id": ["c1", "c2", "c3"], "title": ["\\[", "Fractions", "\\("],
                            "description": [None, None, None], "text": ["\\[ x \\]\nWhat is half of 8?", None, None]})
    registry = SimpleNamespace(recommender=SimpleNamespace(content=content))
    assert item_titles(registry, {"c1", "c2", "c3"}, []) == {"c1": "What is half of 8?", "c2": "Fractions",
                                                             "c3": UNTITLED}


def test_before_the_models_load_a_page_says_why(tmp_path: Path) -> None:
    app = create_app(Settings(catalog=tmp_path / "missing", artifacts=tmp_path / "artifacts", background_load=False))
    with TestClient(app) as client:
        response = client.get("/review")
    assert response.status_code == 503 and response.headers["content-type"].startswith("text/html")
    assert "not ready" in response.text and str(tmp_path) not in response.text
