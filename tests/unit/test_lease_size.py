"""reservations.lease_size: a lease takes at most a quarter of the room left, and is only taken
where that is at least two requests' worth."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from coderapi.services.reservations import LEASE_MIN_REQUESTS, LEASE_SHARE, lease_size

money = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1000"), places=6)


def test_no_lease_wanted_holds_the_request():
    assert lease_size(Decimal("0.01"), None, Decimal("100")) == Decimal("0.01")


def test_a_lease_is_what_was_wanted_when_the_room_is_ample():
    assert lease_size(Decimal("0.01"), Decimal("0.32"), Decimal("100")) == Decimal("0.32")


def test_a_lease_is_a_quarter_of_the_room_when_the_room_is_short():
    assert lease_size(Decimal("0.01"), Decimal("0.32"), Decimal("0.4")) == Decimal("0.1")


def test_under_two_requests_worth_it_is_an_exact_hold():
    assert lease_size(Decimal("0.1"), Decimal("3.2"), Decimal("0.7")) == Decimal("0.1")


@given(amount=money, want=money, room=money)
def test_a_lease_never_exceeds_a_share_of_the_room_nor_falls_below_the_request(amount, want, room):
    size = lease_size(amount, want, room)
    assert size >= amount
    if size != amount:
        assert size <= want and size <= room / LEASE_SHARE and size >= amount * LEASE_MIN_REQUESTS
