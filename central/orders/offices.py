"""Registration offices: a kiosk sees and enrolls only its own office's orders and certificates.

Another office's order or certificate is answered exactly as an unknown one (404), so a kiosk
learns nothing of what other offices hold.  A credential without an office sees nothing.
"""

from __future__ import annotations

import re

from django.db import transaction

from central.orders.errors import ApiError
from central.orders.models import DEFAULT_OFFICE, Enrollment, KioskCredential, Office

NO_OFFICE = 0
"""The office id of a kiosk without an office: no row has it, so every scoped query finds nothing."""

_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


class OfficeError(ValueError):
    """An office code is malformed or unknown; the message says which."""


def check_code(code: str) -> str:
    if not _CODE.match(code):
        raise OfficeError(f"{code!r}: an office code is 1 to 32 of a-z, 0-9 and '-', starting with a letter or digit")
    return code


def add(code: str, name: str) -> tuple[Office, bool]:
    """Create the office ``code`` (or rename it); return it and whether it is new."""
    if not name.strip() or len(name) > 200:
        raise OfficeError("an office name is 1 to 200 characters")
    office, created = Office.objects.update_or_create(code=check_code(code), defaults={"name": name.strip()})
    return office, created


def by_code(code: str) -> Office:
    office = Office.objects.filter(code=check_code(code)).first()
    if office is None:
        raise OfficeError(f"{code}: no such office (python -m central add-office {code} NAME)")
    return office


def assign_kiosk(kiosk_id: str, code: str = DEFAULT_OFFICE) -> None:
    """Put the kiosk's credential (created by ``central.orders.auth``) into office ``code``."""
    office = by_code(code)
    with transaction.atomic():
        if not KioskCredential.objects.filter(kiosk_id=kiosk_id).update(office=office):
            raise OfficeError(f"{kiosk_id}: no such kiosk")


def office_id_of(kiosk_id: str) -> int:
    """The kiosk's office id, or :data:`NO_OFFICE`."""
    office_id = KioskCredential.objects.filter(kiosk_id=kiosk_id).values_list("office_id", flat=True).first()
    return int(office_id) if office_id is not None else NO_OFFICE


def require_certificate(serial: str, office_id: int) -> None:
    """404 ``certificate_not_found`` unless the certificate ``serial`` was issued for an order of the office."""
    from central.orders.certificates import normalise_serial

    if not isinstance(serial, str) or not Enrollment.objects.filter(
            certificate_serial=normalise_serial(serial), order__office_id=office_id).exists():
        raise ApiError(404, "certificate_not_found", "no such certificate")


def certificate_serials(office_id: int, serials: list[str]) -> set[str]:
    """Which of ``serials`` (as django-ca writes them) belong to the office."""
    return set(Enrollment.objects.filter(certificate_serial__in=serials, order__office_id=office_id)
               .values_list("certificate_serial", flat=True))
