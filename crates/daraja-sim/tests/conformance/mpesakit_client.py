"""Drives the Daraja simulator with PyPI's `mpesakit` (pinned in scripts/requirements-test.txt),
one operation per run:

    python3 mpesakit_client.py <operation> [arguments...]

Settings come from the environment (DARAJA_BASE_URL, RECEIVER_URL, CONSUMER_KEY,
CONSUMER_SECRET, INITIATOR_PASSWORD, PASSKEY). Prints one JSON line: what the library returned
(`ok`, `data`) or what it raised. `parse KIND` reads a callback body on standard input and
validates it with mpesakit's own callback models (stk, c2b, b2c, status, balance, reversal).
"""

import json
import os
import sys

from mpesakit import MpesaClient
from mpesakit.b2c.schemas import B2CCommandIDType
from mpesakit.c2b.schemas import C2BResponseType, C2BValidationRequest
from mpesakit.security.get_credential import generate_security_credential


def env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set")
    return value


def hook(name):
    return f"{env('RECEIVER_URL')}/hooks/{name}"


def client():
    mpesa = MpesaClient(env("CONSUMER_KEY"), env("CONSUMER_SECRET"), environment="sandbox")
    # The library builds its base URL from the environment; point it at the simulator.
    mpesa.http_client.base_url = env("DARAJA_BASE_URL")
    return mpesa


def credential():
    # mpesakit's own generator, with Safaricom's sandbox certificate it ships.
    return generate_security_credential(env("INITIATOR_PASSWORD"), environment="sandbox")


def dump(model):
    return model.model_dump(mode="json", by_alias=True)


def oauth():
    return {"access_token_length": len(client().token_manager.get_token())}


def push(phone, amount):
    return dump(client().express.push(
        business_short_code=174379, transaction_type="CustomerPayBillOnline",
        amount=int(amount), party_a=phone, party_b="174379", phone_number=phone,
        callback_url=hook("stk"), account_reference="INV42", transaction_desc="Order 42",
        passkey=env("PASSKEY")))


def query(checkout_request_id):
    return dump(client().express.query(
        business_short_code=174379, checkout_request_id=checkout_request_id,
        passkey=env("PASSKEY")))


def c2b_register():
    return dump(client().c2b.register_url(
        short_code=600000, response_type=C2BResponseType.COMPLETED,
        confirmation_url=hook("confirm"), validation_url=hook("validate")))


def b2c(originator_id, phone, amount):
    return dump(client().b2c.send_payment(
        originator_conversation_id=originator_id, initiator_name="testapi",
        security_credential=credential(), command_id=B2CCommandIDType.BusinessPayment, amount=int(amount),
        party_a="600000", party_b=phone, remarks="payout", queue_timeout_url=hook("timeout"),
        result_url=hook("result"), occasion="conformance"))


def status(receipt):
    return dump(client().transactions.query_status(
        initiator="testapi", security_credential=credential(), transaction_id=receipt,
        party_a=600000, identifier_type=4, result_url=hook("result"),
        queue_timeout_url=hook("timeout"), remarks="status check", occasion="conformance"))


def balance():
    return dump(client().balance.query(
        initiator="testapi", security_credential=credential(), command_id="AccountBalance",
        party_a=600000, identifier_type=4, remarks="balance", result_url=hook("result"),
        queue_timeout_url=hook("timeout")))


def reversal(receipt, amount):
    return dump(client().reversal.reverse(
        initiator="testapi", security_credential=credential(), transaction_id=receipt,
        amount=int(amount), receiver_party=600000, result_url=hook("result"),
        queue_timeout_url=hook("timeout"), remarks="refund", occasion="conformance"))


def parse(kind):
    payload = json.load(sys.stdin)
    mpesa = MpesaClient("unused", "unused", environment="sandbox")
    parsers = {
        "stk": mpesa.process_stk_callback,
        "c2b": C2BValidationRequest.model_validate,
        "b2c": mpesa.process_b2c_callback,
        "status": mpesa.process_transactions_callback,
        "balance": mpesa.process_account_balance_callback,
        "reversal": mpesa.process_reversal_callback,
    }
    return dump(parsers[kind](payload))


OPERATIONS = {
    "oauth": oauth, "push": push, "query": query, "c2bRegister": c2b_register, "b2c": b2c,
    "status": status, "balance": balance, "reversal": reversal, "parse": parse,
}

if __name__ == "__main__":
    operation, *args = sys.argv[1:]
    try:
        print(json.dumps({"ok": True, "data": OPERATIONS[operation](*args)}))
    except Exception as error:  # what the library raised is the answer
        print(json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"}))
