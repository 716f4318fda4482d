"""Reconciliation against the Daraja simulator over real sockets: what M-Pesa has and
the gateway lacks is recovered by the pull, exactly once; receipts and the balance are
checked with Transaction Status and Account Balance."""

import asyncio
from collections import Counter

import pytest
import pytest_asyncio

from server.kernel.clock import Clock
from server.mpesa.client import DarajaClient
from server.mpesa.registration import register_callback_urls, register_pull
from server.mpesa.settings import DarajaSettings
from server.startup.listen import listen
from simulators.daraja import (
    QUEUE_TIMEOUT_RECEIPT,
    SANDBOX_CERTIFICATE_PATH,
    SANDBOX_INITIATOR,
    SANDBOX_INITIATOR_PASSWORD,
)

from support import (
    BASIC_KES,
    INBOX,
    PAYMENTS,
    PREMIUMS,
    headers_for_role,
    idle_policy,
    make_settings,
    request_json,
    sim_control,
    wait_until,
)

PAYMENTS_MADE = 200
NEVER_DELIVERED = 20
PAYER = "254708374149"
DROPPED = "254700000103"  # the simulator never delivers this payer's confirmation


class Reconciling:
    """A gateway with the pull and the initiator configured, registered with a running
    Daraja simulator."""

    def __init__(self, http, gateway, sim, settings, store) -> None:
        self.http, self.gateway, self.sim = http, gateway, sim
        self.settings, self.store = settings, store
        self._admin: dict[str, str] | None = None
        self.client = DarajaClient(
            http,
            DarajaSettings(
                base_url=sim.base_url, consumer_key="sandbox-key", consumer_secret="sandbox-secret"
            ),
            Clock(),
        )

    async def pay(self, account: str, msisdn: str, amount: str = "1500.00") -> str:
        return await self.client.simulate_payment("600984", amount, msisdn, account)

    async def control(self, method: str, path: str, body: dict | None = None) -> dict:
        return await sim_control(self.http, self.sim.base_url, method, path, body)

    async def admin(self) -> dict[str, str]:
        if self._admin is None:
            self._admin = await headers_for_role(self.http, self.gateway, "ada", "admin")
        return self._admin

    async def run_job(self, name: str) -> dict:
        status, body = await request_json(
            self.http,
            "POST",
            f"{self.gateway.url}/api/v1/jobs/{name}/run",
            headers=await self.admin(),
        )
        assert status == 200, body
        return body


async def start(start_gateway_with, sim, **daraja: object):
    """A gateway whose callback URLs (results included) point at its own socket."""
    sockets = listen("127.0.0.1", 0)
    settings = make_settings(
        server={"public_url": f"http://127.0.0.1:{sockets[0].getsockname()[1]}"},
        daraja={
            "base_url": sim.base_url,
            "initiator": SANDBOX_INITIATOR,
            "initiator_password": SANDBOX_INITIATOR_PASSWORD,
            "certificate_path": str(SANDBOX_CERTIFICATE_PATH),
            **daraja,
        },
        c2b={"currency": "KES"},
        jobs={"enabled": False},
    )
    return settings, await start_gateway_with(settings, sockets=sockets)


@pytest_asyncio.fixture
async def reconciling(http, start_gateway_with, daraja_sim, store) -> Reconciling:
    settings, gateway = await start(
        start_gateway_with,
        daraja_sim,
        pull_enabled=True,
        pull_nominated_number="254722000000",
    )
    system = Reconciling(http, gateway, daraja_sim, settings, store)
    await register_callback_urls(
        settings.server.public_url, settings.daraja, settings.c2b, system.client
    )
    registered = await register_pull(
        settings.server.public_url, settings.daraja, settings.c2b, system.client
    )
    assert registered.status == "1000"
    return system


def account(number: int) -> str:
    return f"{number:09d}"


async def pay_many(reconciling: Reconciling) -> list[dict]:
    """PAYMENTS_MADE paybill payments, each for its own insuree's idle policy; the
    simulator never delivers NEVER_DELIVERED of the confirmations. Returns the policies
    once every delivered confirmation has settled."""
    services = reconciling.gateway.services
    policies = [
        await idle_policy(services, account(number), BASIC_KES)
        for number in range(1, PAYMENTS_MADE + 1)
    ]
    payers = [DROPPED if number % 10 == 0 else PAYER for number in range(1, PAYMENTS_MADE + 1)]
    for batch in range(0, PAYMENTS_MADE, 25):
        await asyncio.gather(
            *(
                reconciling.pay(account(number + 1), payers[number])
                for number in range(batch, batch + 25)
            )
        )

    async def delivered() -> int | None:
        settled = {"status": "settled"}
        count = await reconciling.store.collection(PAYMENTS).count_documents(settled)
        return count if count == PAYMENTS_MADE - NEVER_DELIVERED else None

    await wait_until(delivered, "the delivered confirmations to settle", within=60, every=0.2)
    return policies


async def assert_every_payment_stored_and_applied_once(
    reconciling: Reconciling, policies: list[dict], source: str
) -> None:
    """Every payment the simulator completed is stored once (counted against its own
    record), settled, and made exactly one premium for its policy."""
    store = reconciling.store
    simulated = await reconciling.control("GET", "transactions")
    completed = {txn["trans_id"] for txn in simulated["items"] if txn["status"] == "completed"}
    assert len(completed) == PAYMENTS_MADE
    stored = await store.collection(PAYMENTS).find({}).to_list(None)
    assert Counter(payment["trans_id"] for payment in stored) == Counter(completed)
    assert {payment["status"] for payment in stored} == {"settled"}
    recovered = [payment for payment in stored if payment.get("recovered")]
    assert len(recovered) == NEVER_DELIVERED
    assert {payment["recovered"]["source"] for payment in recovered} == {source}
    premiums = await store.collection(PREMIUMS).find({}).to_list(None)
    per_policy = Counter(premium["policy_uuid"] for premium in premiums)
    assert per_policy == Counter({policy["_id"]: 1 for policy in policies})
    assert await store.collection(INBOX).count_documents({"source": source}) == NEVER_DELIVERED


@pytest.mark.asyncio
async def test_one_pull_recovers_every_confirmation_that_never_came_exactly_once(
    reconciling,
) -> None:
    policies = await pay_many(reconciling)

    summary = await reconciling.run_job("mpesa-pull")
    assert summary["outcome"] == "ok", summary
    assert (summary["fetched"], summary["recovered"], summary["matched"]) == (
        PAYMENTS_MADE,
        NEVER_DELIVERED,
        PAYMENTS_MADE - NEVER_DELIVERED,
    )
    assert summary["differing"] == 0
    await assert_every_payment_stored_and_applied_once(reconciling, policies, "daraja_pull")

    # A second pull over the same window finds everything and changes nothing.
    again = await reconciling.run_job("mpesa-pull")
    assert (again["recovered"], again["matched"], again["differing"]) == (0, PAYMENTS_MADE, 0)
    await assert_every_payment_stored_and_applied_once(reconciling, policies, "daraja_pull")

    # The reconciliation view shows what the pull recovered.
    status, view = await request_json(
        reconciling.http,
        "GET",
        f"{reconciling.gateway.url}/api/v1/reconciliation",
        headers=await reconciling.admin(),
    )
    assert status == 200, view
    [totals] = [row for row in view["totals"] if row["channel"] == "mpesa_c2b"]
    assert totals["recovered"] == {"count": NEVER_DELIVERED, "total": "30000.00"}
    assert totals["matched"]["count"] == PAYMENTS_MADE - NEVER_DELIVERED
    assert view["open_items"]["count"] == 0
    assert view["runs"]["pull"]["last_summary"]["recovered"] == 0  # the second run's


@pytest.mark.asyncio
async def test_a_statement_import_recovers_every_confirmation_that_never_came_exactly_once(
    reconciling,
) -> None:
    policies = await pay_many(reconciling)
    async with reconciling.http.get(f"{reconciling.sim.base_url}/_sim/statement") as answer:
        assert answer.status == 200
        statement = await answer.read()
    url = f"{reconciling.gateway.url}/api/v1/reconciliation/statements?kind=mpesa"
    headers = {**await reconciling.admin(), "Content-Type": "text/csv"}

    async with reconciling.http.post(url, data=statement, headers=headers) as answer:
        assert answer.status == 201, await answer.text()
        imported = await answer.json()
    summary = imported["summary"]
    assert (summary["recovered"], summary["matched"], summary["differing"]) == (
        NEVER_DELIVERED,
        PAYMENTS_MADE - NEVER_DELIVERED,
        0,
    )
    assert summary["missing_at_provider"] == 0
    await assert_every_payment_stored_and_applied_once(reconciling, policies, "statement")

    # The same file again changes nothing.
    async with reconciling.http.post(url, data=statement, headers=headers) as answer:
        assert answer.status == 200
        again = await answer.json()
    assert again["already_imported"] is True and again["summary"] == summary
    await assert_every_payment_stored_and_applied_once(reconciling, policies, "statement")


@pytest.mark.asyncio
async def test_a_pulled_row_that_differs_is_flagged_and_its_receipt_checked(reconciling) -> None:
    services = reconciling.gateway.services
    await idle_policy(services, account(1), BASIC_KES)
    await reconciling.pay(account(1), PAYER)
    store = reconciling.store

    async def stored() -> dict | None:
        return await store.collection(PAYMENTS).find_one({"status": "settled"})

    payment = await wait_until(stored, "the payment to settle")
    # What the gateway holds no longer agrees with M-Pesa.
    await store.collection(PAYMENTS).update_one(
        {"trans_id": payment["trans_id"]}, {"$set": {"amount": 140000}}
    )
    summary = await reconciling.run_job("mpesa-pull")
    assert (summary["differing"], summary["recovered"]) == (1, 0)
    flagged = await store.collection(PAYMENTS).find_one({"trans_id": payment["trans_id"]})
    assert [flag["reason"] for flag in flagged["review"]] == ["differs_from_daraja_pull"]
    assert flagged["amount"] == 140000  # never overwritten by a provider's record

    async def checked() -> list | None:
        checks = await services.initiator.checks_of(payment["trans_id"])
        return checks if checks and checks[0]["status"] == "answered" else None

    [check] = await wait_until(checked, "M-Pesa's Transaction Status result")
    assert check["requested_by"] == "mpesa-pull"
    assert check["finding"] == "amount_differs"
    assert check["result"]["amount"] == 150000 and check["result"]["status"] == "Completed"


@pytest.mark.asyncio
async def test_an_operator_checks_a_receipt_and_sees_m_pesas_answer(reconciling, http) -> None:
    services = reconciling.gateway.services
    await idle_policy(services, account(1), BASIC_KES)
    await reconciling.pay(account(1), PAYER)

    async def stored() -> dict | None:
        return await reconciling.store.collection(PAYMENTS).find_one({"status": "settled"})

    payment = await wait_until(stored, "the payment to settle")
    base = f"{reconciling.gateway.url}/api/v1/c2b/payments"
    headers = await headers_for_role(http, reconciling.gateway, "olga", "operator")

    async def check(receipt: str) -> dict:
        status, body = await request_json(http, "POST", f"{base}/{receipt}/check", headers=headers)
        assert status == 202, body
        assert body["status"] == "requested"

        async def answered() -> dict | None:
            _, listed = await request_json(http, "GET", f"{base}/{receipt}/checks", headers=headers)
            latest = listed["items"][0]
            return latest if latest["status"] != "requested" else None

        return await wait_until(answered, f"the result for {receipt}")

    agrees = await check(payment["trans_id"])
    assert (agrees["status"], agrees["finding"]) == ("answered", "agrees")
    assert agrees["result"]["amount"] == "1500.00" and agrees["result"]["receipt"]
    unknown = await check("ZZZ9999999")
    assert unknown["status"] == "refused" and unknown["result"] is None
    timed_out = await check(QUEUE_TIMEOUT_RECEIPT)
    assert timed_out["status"] == "timed_out"
    inbox = (
        await reconciling.store.collection(INBOX).find({"source": "daraja_result"}).to_list(None)
    )
    assert sorted(entry["kind"] for entry in inbox) == ["queue_timeout", "result", "result"]
    assert {entry["status"] for entry in inbox} == {"processed"}


@pytest.mark.asyncio
async def test_a_wrong_initiator_password_is_refused_by_m_pesa(
    http, start_gateway_with, daraja_sim
) -> None:
    _, gateway = await start(start_gateway_with, daraja_sim, initiator_password="wrong")
    initiator = gateway.services.initiator
    request = await initiator.check_balance("operator")

    async def answered() -> dict | None:
        [latest] = await initiator.requests.collection.find({"_id": request["_id"]}).to_list(None)
        return latest if latest["status"] != "requested" else None

    refused = await wait_until(answered, "M-Pesa's answer")
    assert (refused["status"], refused["result_code"]) == ("refused", "2001")


@pytest.mark.asyncio
async def test_the_account_balance_is_kept_beside_the_payments(reconciling) -> None:
    services = reconciling.gateway.services
    await idle_policy(services, account(1), BASIC_KES)
    await reconciling.pay(account(1), PAYER)
    await reconciling.pay(account(2), DROPPED, "250.00")
    await services.initiator.check_balance("operator")

    async def balance() -> dict | None:
        return await services.initiator.latest_balance()

    answered = await wait_until(balance, "the Account Balance result")
    accounts = {item["name"]: item for item in answered["result"]["accounts"]}
    utility = accounts["Utility Account"]
    assert (utility["currency"], utility["available"]) == ("KES", 175000)


@pytest.mark.asyncio
async def test_a_statement_row_that_differs_is_flagged_and_its_receipt_checked(
    reconciling,
) -> None:
    services = reconciling.gateway.services
    await idle_policy(services, account(1), BASIC_KES)
    await reconciling.pay(account(1), PAYER)
    store = reconciling.store

    async def stored() -> dict | None:
        return await store.collection(PAYMENTS).find_one({"status": "settled"})

    payment = await wait_until(stored, "the payment to settle")
    await store.collection(PAYMENTS).update_one(
        {"trans_id": payment["trans_id"]}, {"$set": {"amount": 140000}}
    )
    async with reconciling.http.get(f"{reconciling.sim.base_url}/_sim/statement") as answer:
        statement = await answer.read()
    url = f"{reconciling.gateway.url}/api/v1/reconciliation/statements?kind=mpesa"
    headers = {**await reconciling.admin(), "Content-Type": "text/csv"}
    async with reconciling.http.post(url, data=statement, headers=headers) as answer:
        assert answer.status == 201, await answer.text()
        summary = (await answer.json())["summary"]
    assert (summary["differing"], summary["matched"], summary["recovered"]) == (1, 0, 0)
    flagged = await store.collection(PAYMENTS).find_one({"trans_id": payment["trans_id"]})
    assert [flag["reason"] for flag in flagged["review"]] == ["differs_from_statement"]

    async def checked() -> list | None:
        checks = await services.initiator.checks_of(payment["trans_id"])
        return checks if checks and checks[0]["status"] == "answered" else None

    [check] = await wait_until(checked, "M-Pesa's Transaction Status result")
    assert (check["requested_by"], check["finding"]) == ("statement", "amount_differs")
