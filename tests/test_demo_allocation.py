"""The sandbox leaves an unmatched payment an operator can allocate, and names it."""

import json

import pytest

from server.kernel.money import format_amount
from server.sandbox.environment import (
    MISTYPED_ACCOUNT,
    MISTYPED_FOR,
    allocation_walkthrough,
    start_sandbox,
    summary,
)

from support import paste


@pytest.mark.asyncio
async def test_the_demo_leaves_an_unmatched_payment_that_can_be_allocated() -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        allocatable = sandbox.allocatable
        c2b = sandbox.gateway.services.c2b
        payment = await c2b.get_payment(allocatable.trans_id)
        assert payment["status"] == "unmatched"
        assert payment["unmatched_reason"] == "unknown_account"
        assert payment["bill_ref"] == MISTYPED_ACCOUNT
        policy = allocatable.policy
        assert policy["chf_id"] == MISTYPED_FOR
        assert (payment["amount"], payment["currency"]) == (policy["value"], policy["currency"])
        settled = await c2b.allocate(
            allocatable.trans_id, policy["_id"], "operator", "the payer mistyped the account number"
        )
    finally:
        await sandbox.stop()
    assert settled["status"] == "settled" and settled["policy_uuid"] == policy["_id"]


@pytest.mark.asyncio
async def test_the_summary_names_the_payment_to_allocate_and_its_policy() -> None:
    sandbox = await start_sandbox("127.0.0.1", 0)
    try:
        text = summary(sandbox)
        commands = allocation_walkthrough(sandbox.settings, sandbox.allocatable)
        code, answer, err = await paste(commands)
        assert code == 0, err
    finally:
        await sandbox.stop()
    policy = sandbox.allocatable.policy
    amount = format_amount(policy["value"], policy["currency"])
    assert f"paybill payment {sandbox.allocatable.trans_id} ({amount} KES" in text
    assert f"insuree {MISTYPED_FOR}, {policy['_id']}" in text
    assert all(line in text for line in commands.splitlines())
    allocated = json.loads(answer.strip().splitlines()[-1])
    assert allocated["status"] == "settled" and allocated["policy_uuid"] == policy["_id"]
