"""URLs: the kiosk API under ``/api/v1/`` and django-ca's public CA endpoints under ``/ca/``."""

from __future__ import annotations

from django.urls import include, path

from central.orders import api, audit_chain, feeds, inbox, kiosk_config, kiosk_identity, pending, verify
from central.orders.agreements import agreements as agreement_upload
from central.orders.pds import document as pds_document

urlpatterns = [
    path("api/v1/health", api.health, name="health"),
    path("api/v1/config", kiosk_config.config, name="config"),
    path("api/v1/orders", api.orders, name="orders"),
    path("api/v1/orders/<str:order_id>/enrollments", api.enrollments, name="enrollments"),
    path("api/v1/enrollments/<str:idempotency_key>/void", api.void_enrollment, name="void-enrollment"),
    path("api/v1/escrow-key", api.escrow_key, name="escrow-key"),
    path("api/v1/certificates", api.certificate_list, name="certificates"),
    path("api/v1/certificates/<str:serial>", api.certificate, name="certificate"),
    path("api/v1/certificates/<str:serial>/revocation", api.revocation, name="revocation"),
    path("api/v1/certificates/<str:serial>/renewal", api.renewal_terms, name="renewal-terms"),
    path("api/v1/certificates/<str:serial>/renewals", api.renewals, name="renewals"),
    path("api/v1/tokens/<str:token_serial>/so-pin", api.so_pin, name="so-pin"),
    path("api/v1/tokens/<str:token_serial>/certificate", pending.kiosk_token_certificate, name="token-certificate"),
    path("api/v1/tokens/<str:token_serial>/refused-keys", pending.kiosk_token_refused_keys, name="token-refused-keys"),
    path("api/v1/feeds/orders", feeds.orders, name="feed-orders"),
    path("api/v1/feeds/certificates", feeds.certificates, name="feed-certificates"),
    path("api/v1/feeds/trust", feeds.trust, name="feed-trust"),
    # The holder's own client fetches a pending certificate (no kiosk credential, rate-limited).
    path("api/v1/holder/tokens/<str:token_serial>/certificate", pending.holder_token_certificate,
         name="holder-token-certificate"),
    path("api/v1/events", inbox.events, name="events"),
    path("api/v1/audit", audit_chain.audit, name="audit"),
    path("api/v1/audit/rejoin", audit_chain.rejoin, name="audit-rejoin"),
    path("api/v1/agreements", agreement_upload, name="agreements"),
    # A kiosk's identity: the enrollment needs no client certificate (the one-time code stands for it).
    path("api/v1/kiosks/enroll", kiosk_identity.enroll_view, name="kiosk-enroll"),
    path("api/v1/kiosks/renew", kiosk_identity.renew_view, name="kiosk-renew"),
    # The page behind the receipt's QR code (HTML, no authentication, rate-limited).
    path("verify/<str:serial>", verify.page, name="verify"),
    path("verify/<str:serial>/agreement", verify.agreement, name="verify-agreement"),
    # The PKI disclosure statements the certificates' QcPDS point to (per profile and language).
    path("pds/<str:country>/<str:language>.pdf", pds_document, name="pds"),
    # Issuer certificates, CRLs and OCSP (unauthenticated, as relying parties need them).
    path("ca/", include("django_ca.urls")),
]

handler400 = api.bad_request
handler403 = api.permission_denied
handler404 = api.not_found
handler500 = api.server_error
