"""Check a webhook a proofmarket node sent: its signature, signer and age, before trusting its body.

    from proofmarket.sdk.webhooks import verify_webhook
    event = verify_webhook(request.headers, await request.body(), node="0x...")   # the node's signer address
    if seen(event["id"]): return 200                                             # deduplicate on the delivery id

The node signs (EIP-191) ``proofmarket-webhook:{delivery id}:{timestamp}:{sha256 of the body}`` with its key and
names itself in ``X-Proofmarket-Signer``; the address to expect is the node's (``address_signature.node`` in its
``/.well-known/ai-service.json``), never the one a request names. A subscription's deliveries are also signed the
Standard Webhooks way with the secret shown when it was made (``verify_webhook(..., secret="whsec_...")``, or any
Standard Webhooks library).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from proofmarket.core.errors import Unauthorized

MAX_AGE_S = 300


def verify_webhook(headers: Mapping[str, str], body: bytes, node: str, *, max_age_s: int = MAX_AGE_S,
                   now: float | None = None, secret: str | None = None) -> dict[str, Any]:
    """The delivery's JSON body, once its signature is the node's and it is recent; ``Unauthorized`` otherwise.
    With the subscription's ``secret`` (``whsec_...``), its Standard Webhooks signature must hold too."""
    if secret is not None:
        from standardwebhooks import Webhook
        from standardwebhooks.webhooks import WebhookVerificationError

        try:
            Webhook(secret).verify(body, dict(headers))
        except WebhookVerificationError as exc:
            raise Unauthorized(f"the webhook's Standard Webhooks signature does not hold: {exc}") from None
    from eth_account import Account
    from eth_account.messages import encode_defunct

    get = {k.lower(): v for k, v in headers.items()}.get
    delivery, stamp, signature = (get("x-proofmarket-delivery"), get("x-proofmarket-timestamp"),
                                  get("x-proofmarket-signature"))
    if not (delivery and stamp and signature) or not stamp.isdigit():
        raise Unauthorized("not a signed proofmarket webhook (X-Proofmarket-Delivery, -Timestamp, -Signature)")
    if abs((time.time() if now is None else now) - int(stamp)) > max_age_s:
        raise Unauthorized(f"the webhook is older than {max_age_s} s (or from the future): refused as a replay")
    message = f"proofmarket-webhook:{delivery}:{stamp}:{hashlib.sha256(body).hexdigest()}"
    try:
        signer = str(Account.recover_message(encode_defunct(text=message), signature=signature))
    except Exception:
        raise Unauthorized("the webhook signature is malformed") from None
    if signer.lower() != node.lower():
        raise Unauthorized(f"the webhook was signed by {signer}, not by the node {node}")
    doc = json.loads(body)
    if not isinstance(doc, dict) or doc.get("id") != delivery:
        raise Unauthorized("the webhook body is not the delivery its headers name")
    return doc
