"""URLs: the kiosk API under ``/api/v1/`` and django-ca's public CA endpoints under ``/ca/``."""

from __future__ import annotations

from django.urls import include, path

from central.orders import api

urlpatterns = [
    path("api/v1/health", api.health, name="health"),
    path("api/v1/orders", api.orders, name="orders"),
    path("api/v1/orders/<str:order_id>/enrollments", api.enrollments, name="enrollments"),
    # Issuer certificates, CRLs and OCSP (unauthenticated, as relying parties need them).
    path("ca/", include("django_ca.urls")),
]

handler400 = api.bad_request
handler403 = api.permission_denied
handler404 = api.not_found
handler500 = api.server_error
