import pytest

pytestmark = pytest.mark.django_db


def test_recommendations_for_a_known_user(served):
    response = served.client().get("/api/v1/recommendations?user=user-3&k=20&explain=true")
    assert response.status_code == 200, response.json()
    body = response.json()
    print(body["rules"], body["filtered"], body["items"][:3])
    assert len(body["items"]) == 20
    assert body["model_version"]["id"] == served.version.pk
    assert body["personalised"] is True
    assert all(i["source"] == "mf" for i in body["items"])
    assert all(i["reason"].startswith("because you interacted with") for i in body["items"])
