"""The Flowroute client sorts every answer by what is safe next, against the local simulator."""

from __future__ import annotations

import base64
import re
import socket
import traceback
from collections.abc import Callable, Iterator

import pytest
from pydantic import SecretStr

from jobs.errors import (
    AccountError,
    NoProviderIdError,
    OptedOutError,
    PermanentError,
    ProviderError,
    RetryableError,
    ThrottledError,
    UnknownOutcomeError,
)
from jobs.flowroute import FlowrouteClient, is_account_refusal
from jobs.simulator.server import FlowrouteSimulator

ACCESS = "ak-7f3c9e21d4"
SECRET = "sk-b81a55e0c6f2"
WRONG_SECRET = "sk-0000deadbeef"
SENDER = "12065550100"
RECIPIENT = "13125550199"
OTHER_RECIPIENT = "13125550142"
MDR2_ID = re.compile(r"mdr2-[0-9a-f]{32}")
SECRETS = (
    ACCESS,
    SECRET,
    WRONG_SECRET,
    base64.b64encode(f"{ACCESS}:{SECRET}".encode()).decode(),
    base64.b64encode(f"{ACCESS}:{WRONG_SECRET}".encode()).decode(),
)


@pytest.fixture
def sim() -> Iterator[FlowrouteSimulator]:
    with FlowrouteSimulator(ACCESS, SECRET, rate_per_second=None) as simulator:
        yield simulator


MakeClient = Callable[..., FlowrouteClient]


@pytest.fixture
def client_for() -> Iterator[MakeClient]:
    """Build clients with the simulator's access key; each is closed after the test."""
    made: list[FlowrouteClient] = []

    def build(url: str, *, secret: str = SECRET, timeout: float = 2.0) -> FlowrouteClient:
        made.append(FlowrouteClient(url, SecretStr(ACCESS), SecretStr(secret), timeout))
        return made[-1]

    yield build
    for flowroute in made:
        flowroute.close()


@pytest.fixture
def client(sim: FlowrouteSimulator, client_for: MakeClient) -> FlowrouteClient:
    return client_for(sim.url)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_no_secret(error: BaseException) -> None:
    texts = [str(error), repr(error), repr(getattr(error, "detail", None))]
    texts.append("".join(traceback.format_exception(error)))
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_accepted_message_returns_its_mdr2_id(
    sim: FlowrouteSimulator, client: FlowrouteClient
) -> None:
    message_id = client.send(RECIPIENT, SENDER, "hello")

    assert MDR2_ID.fullmatch(message_id)
    [message] = sim.messages()
    assert (message.id, message.to, message.from_, message.body) == (
        message_id,
        RECIPIENT,
        SENDER,
        "hello",
    )
    assert message.content_type == "application/vnd.api+json"
    assert message.dlr_callback is None


def test_delivery_receipt_url_is_sent_when_configured(sim: FlowrouteSimulator) -> None:
    flowroute = FlowrouteClient(
        sim.url + "/", SecretStr(ACCESS), SecretStr(SECRET), 2.0, dlr_callback="https://x/dlr"
    )

    try:
        flowroute.send(RECIPIENT, SENDER, "hello")
    finally:
        flowroute.close()

    assert [m.dlr_callback for m in sim.messages()] == ["https://x/dlr"]


def test_wrong_credentials_are_an_account_error_with_detail(
    sim: FlowrouteSimulator, client_for: MakeClient
) -> None:
    with pytest.raises(AccountError) as refused:
        client_for(sim.url, secret=WRONG_SECRET).send(RECIPIENT, SENDER, "hello")

    assert (refused.value.code, refused.value.status) == ("401", 401)
    assert "credentials" in str(refused.value.detail)
    assert not isinstance(refused.value, OptedOutError)
    assert sim.messages() == []


def test_number_the_account_does_not_own_is_an_account_error_403(client_for: MakeClient) -> None:
    owner = FlowrouteSimulator(ACCESS, SECRET, rate_per_second=None, owned_numbers=[SENDER])
    with owner as sim, pytest.raises(AccountError) as refused:
        client_for(sim.url).send(RECIPIENT, "12065550101", "hello")

    assert (refused.value.code, refused.value.status) == ("403", 403)
    assert "12065550101" in str(refused.value.detail)


def test_invalid_value_is_permanent_422_with_detail(
    sim: FlowrouteSimulator, client: FlowrouteClient
) -> None:
    with pytest.raises(PermanentError) as refused:
        client.send("3125550199", SENDER, "hello")

    assert (refused.value.code, refused.value.status) == ("422", 422)
    assert "'to'" in str(refused.value.detail)
    assert str(refused.value).startswith("422: Unprocessable Entity")


def test_429_is_throttled(sim: FlowrouteSimulator, client: FlowrouteClient) -> None:
    sim.fail_next(429)

    with pytest.raises(ThrottledError) as refused:
        client.send(RECIPIENT, SENDER, "hello")

    assert (refused.value.code, refused.value.status) == ("429", 429)
    assert isinstance(refused.value, RetryableError)
    assert sim.messages() == []


def test_sending_past_the_rate_limit_is_throttled(client_for: MakeClient) -> None:
    with FlowrouteSimulator(ACCESS, SECRET, rate_per_second=5) as sim:
        flowroute = client_for(sim.url)
        for _ in range(5):
            flowroute.send(RECIPIENT, SENDER, "hello")

        with pytest.raises(ThrottledError):
            flowroute.send(RECIPIENT, SENDER, "hello")

    assert len(sim.messages()) == 5


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retryable(
    sim: FlowrouteSimulator, client: FlowrouteClient, status: int
) -> None:
    sim.fail_next(status, detail="try again later")

    with pytest.raises(RetryableError) as refused:
        client.send(RECIPIENT, SENDER, "hello")

    assert not isinstance(refused.value, ThrottledError)
    assert (refused.value.code, refused.value.status) == (str(status), status)
    assert "try again later" in str(refused.value.detail)


def test_answer_lost_to_timeout_is_unknown_although_the_message_was_accepted(
    sim: FlowrouteSimulator, client_for: MakeClient
) -> None:
    sim.delay_next(10.0)

    with pytest.raises(UnknownOutcomeError) as lost:
        client_for(sim.url, timeout=0.3).send(RECIPIENT, SENDER, "hello")

    assert lost.value.code == "timeout"
    assert [m.body for m in sim.messages()] == ["hello"]


def test_connection_refused_is_retryable(client_for: MakeClient) -> None:
    with pytest.raises(RetryableError) as refused:
        client_for(closed_port_url()).send(RECIPIENT, SENDER, "hello")

    assert refused.value.code == "connect_error"
    assert not isinstance(refused.value, ThrottledError)


def test_1110_is_opted_out(sim: FlowrouteSimulator, client: FlowrouteClient) -> None:
    sim.opt_out(SENDER, RECIPIENT)

    with pytest.raises(OptedOutError) as refused:
        client.send(RECIPIENT, SENDER, "hello")

    assert (refused.value.code, refused.value.status) == ("1110", 400)
    assert "opted out" in str(refused.value.detail)
    assert isinstance(refused.value, PermanentError)
    assert client.send(OTHER_RECIPIENT, SENDER, "hi").startswith("mdr2-")
    assert [m.to for m in sim.messages()] == [OTHER_RECIPIENT]


def test_secrets_never_appear_in_repr_or_in_errors(
    sim: FlowrouteSimulator, client_for: MakeClient
) -> None:
    good, bad = client_for(sim.url), client_for(sim.url, secret=WRONG_SECRET)
    # Only the request Flowroute holds for ten seconds may time out, however loaded the machine.
    impatient = client_for(sim.url, timeout=1.0)
    sim.opt_out(SENDER, OTHER_RECIPIENT)
    errors: list[ProviderError] = []

    def collect(flowroute: FlowrouteClient, to: str = RECIPIENT) -> None:
        with pytest.raises(ProviderError) as caught:
            flowroute.send(to, SENDER, "hello")
        errors.append(caught.value)

    collect(bad)
    sim.fail_next(500)
    collect(good)
    sim.fail_next(429)
    collect(good)
    collect(good, "3125550199")
    collect(good, OTHER_RECIPIENT)
    sim.delay_next(10.0)
    collect(impatient)
    collect(client_for(closed_port_url()))

    assert [type(error) for error in errors] == [
        AccountError,
        RetryableError,
        ThrottledError,
        PermanentError,
        OptedOutError,
        UnknownOutcomeError,
        RetryableError,
    ]
    for error in errors:
        assert_no_secret(error)
    for flowroute in (good, bad):
        for text in (repr(flowroute), str(flowroute)):
            assert all(secret not in text for secret in SECRETS)
            assert sim.url in text


def test_202_without_a_usable_id_is_its_own_unknown_outcome(
    sim: FlowrouteSimulator, client: FlowrouteClient
) -> None:
    sim.fail_next(202)

    with pytest.raises(NoProviderIdError) as accepted:
        client.send(RECIPIENT, SENDER, "hello")

    assert isinstance(accepted.value, UnknownOutcomeError)
    assert accepted.value.code == "202"


def test_a_403_that_names_no_account_or_number_fails_only_the_message(
    sim: FlowrouteSimulator, client: FlowrouteClient
) -> None:
    sim.fail_next(403, detail="recipient is on a carrier block list")

    with pytest.raises(PermanentError) as refused:
        client.send(RECIPIENT, SENDER, "hello")

    assert not isinstance(refused.value, AccountError)


@pytest.mark.parametrize(
    ("detail", "account"),
    [
        ("the account does not own the 'from' number 12065550101", True),
        ("Forbidden: account suspended", True),
        ("sending number is not registered to a 10DLC campaign", True),
        ("source number not provisioned for messaging", True),
        ("Unauthorized API key", True),
        ("invalid credentials", True),
        ("recipient is on a carrier block list", False),
        ("Forbidden", False),
        ("message content refused", False),
    ],
)
def test_which_403s_are_the_accounts_fault(detail: str, account: bool) -> None:
    assert is_account_refusal(detail) is account
