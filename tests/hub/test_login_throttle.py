"""Sign-in throttling on the console's and the admin's login pages: after the failure limit, per account and per
address, the right password is refused too for the cool-off, with a clear 429 page, and each step is audit-logged.
"""

import logging

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db

PAGES = ["/console/login/", "/admin/login/"]


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="right-password", is_staff=True)


def sign_in(client: Client, page: str, username: str, password: str):
    return client.post(page, {"username": username, "password": password})


def signed_in(response) -> bool:
    return response.status_code == 302 and "login" not in response.headers["location"]


@pytest.mark.parametrize("page", PAGES)
def test_thirty_wrong_passwords_then_the_right_one_is_refused(alice, page, caplog):
    client = Client(REMOTE_ADDR="203.0.113.7")
    caplog.set_level(logging.INFO, logger="hub.audit")
    statuses = [sign_in(client, page, "alice", f"wrong-{i}").status_code for i in range(30)]
    assert statuses[: settings.AXES_FAILURE_LIMIT - 1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)  # the form again
    assert statuses[-1] == 429
    answer = sign_in(client, page, "alice", "right-password")
    assert answer.status_code == 429 and not signed_in(answer)
    assert "Too many sign-in attempts" in answer.content.decode()
    assert "sign-in failed: username='alice' address=203.0.113.7" in caplog.text
    assert "sign-in locked out: username='alice'" in caplog.text


def test_the_lock_is_per_account_and_per_address(alice):
    get_user_model().objects.create_user("bob", password="bobs-password")
    attacker = Client(REMOTE_ADDR="198.51.100.1")
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(attacker, PAGES[0], "alice", f"wrong-{i}")
    # the account: alice from a fresh address is refused too
    assert sign_in(Client(REMOTE_ADDR="198.51.100.2"), PAGES[0], "alice", "right-password").status_code == 429
    # the address: another account from the attacker's address is refused
    assert sign_in(attacker, PAGES[0], "bob", "bobs-password").status_code == 429
    # others are not affected
    assert signed_in(sign_in(Client(REMOTE_ADDR="198.51.100.3"), PAGES[0], "bob", "bobs-password"))


def test_a_few_mistakes_do_not_lock_and_success_resets(alice):
    client = Client(REMOTE_ADDR="192.0.2.10")
    for round_ in range(3):  # 3 x (limit - 1) failures in all, each run ended by the right password
        for i in range(settings.AXES_FAILURE_LIMIT - 1):
            assert sign_in(client, PAGES[0], "alice", f"wrong-{round_}-{i}").status_code == 200
        assert signed_in(sign_in(client, PAGES[0], "alice", "right-password"))
        client.logout()
