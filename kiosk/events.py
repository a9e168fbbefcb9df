"""Every event kind a session writes to its journal and the outbox: the contract with the sync daemon.

The central applies these in order, once each.  A flow can only write kinds declared here: the
engine's ``advance``/``record`` take an :class:`EventKind`, and mypy holds every flow to it.
"""

from __future__ import annotations

from enum import Enum, unique


@unique
class EventKind(Enum):
    # every flow
    CREATED = "session.created"
    CANCELLED = "session.cancelled"
    CONSENT_GIVEN = "consent.given"
    # identity (shared by issuance, revocation, unblock, renewal with changed details)
    CARD_READ = "identity.card_read"
    CARD_MISMATCH = "identity.mismatch"
    CARD_CHANGED = "identity.card_changed"
    CARD_PIN_FAILED = "identity.pin_failed"
    IDENTITY_VERIFIED = "identity.verified"
    CARD_REFUSED = "identity.card_refused"          # expired, revoked, unknown issuer, status unknown…
    IDENTITY_EVIDENCE = "identity.evidence"         # certificate, nonce, signature, OCSP/CRL, outcome
    # issuance
    ORDER_FOUND = "order.found"
    ORDER_REFUSED = "order.refused"
    APPROVAL_GIVEN = "approval.given"
    APPROVAL_REFUSED = "approval.refused"                  # the clerk rejected, with clerk_id and reason
    REJECTION_COMPLETED = "approval.rejection_completed"   # the early key is gone; the session ends
    EARLY_STARTED = "early.started"                        # token preparation began during the review
    EARLY_TOKEN_READY = "early.token_initialised"          # under a temporary PIN; the key id is chosen
    EARLY_KEY_READY = "early.key_generated"                # key pair and CSR made during the review
    EARLY_FAILED = "early.failed"                          # the usual path prepares the token after approval
    TOKEN_PIN_CHANGED = "token.pin_changed"                # C_SetPIN: the chosen PIN replaced the temporary one
    TOKEN_INITIALISING = "token.initialising"
    TOKEN_INITIALISED = "token.initialised"
    TOKEN_PIN_REFUSED = "token.pin_refused"
    TOKEN_REPREPARE = "token.reprepare"
    KEY_GENERATED = "key.generated"
    ENROLLMENT_REFUSED = "enrollment.refused"
    ENROLLMENT_DEFERRED = "enrollment.deferred"
    UNUSED_KEY_REMOVED = "enrollment.unused_key_removed"   # the key of a request the central refused, off the token
    REFUSED_KEY_FOUND = "enrollment.refused_key_found"     # another kiosk's refused key, on the inserted token
    CERTIFICATE_ISSUED = "certificate.issued"
    CERTIFICATE_FOUND = "certificate.found_for_token"    # issued on the inserted token for another kiosk's request
    CERTIFICATE_INSTALLED = "certificate.installed"
    AGREEMENT_SIGNED = "agreement.signed"                  # the holder agreement signed on the token (sent or queued)
    AGREEMENT_SENT = "agreement.sent"                      # a queued signed agreement reached the central
    # receipts (every flow that prints)
    RECEIPT_PRINTED = "receipt.printed"
    RECEIPT_PENDING = "receipt.pending"
    RECEIPT_REPRINTED = "receipt.reprinted"
    # renewal
    RENEWAL_OFFERED = "renewal.offered"
    RENEWAL_REFUSED = "renewal.refused"
    RENEWAL_CONFIRMED = "renewal.confirmed"
    RENEWAL_KEY_GENERATED = "renewal.key_generated"
    RENEWAL_ISSUED = "renewal.issued"
    RENEWAL_INSTALLED = "renewal.installed"
    OLD_CERTIFICATE_REMOVED = "renewal.old_removed"
    # revocation
    REVOCATION_CHOSEN = "revocation.chosen"
    REVOCATION_CONFIRMED = "revocation.confirmed"
    REVOKED = "revocation.done"
    # PIN unblock
    UNBLOCK_TOKEN_READ = "unblock.token_read"
    UNBLOCKED = "unblock.done"
    UNBLOCK_REFUSED = "unblock.refused"
    # token check
    CHECK_TOKEN_READ = "check.token_read"
    CHECKED = "check.done"
