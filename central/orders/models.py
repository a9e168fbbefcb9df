"""Orders as the MonPass-style ordering guide describes them (shared seed 000), enrollments, kiosk keys.

An order moves «Баталгаажуулах» (awaiting_confirmation) → «Шинэ» (new) once the holder confirms
it by e-mail, → paid when its invoice is paid in full, → issued when a kiosk enrolled a key.
Amounts are whole tögrög (MNT).
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.db import models, transaction

from kiosk import order as kiosk_order

INVOICE_VALIDATOR = RegexValidator(r"^\d{12}$", "An invoice number is 12 digits.")


class OrderStatus(models.TextChoices):
    """The same values as :class:`kiosk.order.OrderStatus`."""

    AWAITING_CONFIRMATION = "awaiting_confirmation", "Баталгаажуулах"
    NEW = "new", "Шинэ"
    PAID = "paid", "Төлсөн"
    ISSUED = "issued", "Олгосон"
    CANCELLED = "cancelled", "Цуцалсан"


OPEN_STATUSES = (OrderStatus.AWAITING_CONFIRMATION, OrderStatus.NEW, OrderStatus.PAID)


class Gender(models.TextChoices):
    MALE = "male", "Эр"
    FEMALE = "female", "Эм"


DEFAULT_OFFICE = "main"
"""The office the migration creates; orders and kiosks that name none belong to it."""


class Office(models.Model):
    """A registration office: its kiosks see its orders and certificates, nothing of another office's."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class ChangeCounter(models.Model):
    """The single counter behind the feeds' change sequence (``central.orders.feeds``).

    A writer bumps it with an UPDATE inside its own transaction, which holds the row's write lock
    until commit: change numbers are therefore committed in increasing order, and a feed reader
    never sees number n+1 while n is still uncommitted.
    """

    name = models.CharField(max_length=32, unique=True)
    value = models.PositiveBigIntegerField(default=0)


FEED_COUNTER = "feeds"


def next_change() -> int:
    """The next feed change number, taken inside the caller's transaction (see :class:`ChangeCounter`).

    Call it inside ``transaction.atomic()``: the bump's row lock must last until the change commits.
    """
    ChangeCounter.objects.filter(name=FEED_COUNTER).update(value=models.F("value") + 1)
    return int(ChangeCounter.objects.values_list("value", flat=True).get(name=FEED_COUNTER))


class FeedStamped(models.Model):
    """A row whose every save moves it to the end of its feed (``change_seq``)."""

    change_seq = models.PositiveBigIntegerField(
        default=0, db_index=True, help_text="Feed position of the row's last change (central.orders.feeds).")

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "change_seq"}
        with transaction.atomic():
            self.change_seq = next_change()
            super().save(*args, **kwargs)


class Order(FeedStamped):
    """One holder's certificate order (seed 000, section 3 «Шинэ захиалга үүсгэх»)."""

    office = models.ForeignKey(Office, on_delete=models.PROTECT, related_name="orders")
    invoice = models.CharField(max_length=12, unique=True, validators=[INVOICE_VALIDATOR])
    status = models.CharField(max_length=32, choices=OrderStatus.choices,
                              default=OrderStatus.AWAITING_CONFIRMATION)
    # ЭЗЭМШИГЧИЙН МЭДЭЭЛЭЛ
    surname = models.CharField("ургийн овог", max_length=100, blank=True)
    father_name = models.CharField("эцэг/эхийн нэр", max_length=100)
    given_name = models.CharField("өөрийн нэр", max_length=100)
    register_number = models.CharField("регистрийн дугаар", max_length=20, db_index=True,
                                       help_text="Canonical form (kiosk.register.canonical).")
    gender = models.CharField("хүйс", max_length=6, choices=Gender.choices, blank=True)
    foreign = models.BooleanField("гадаад иргэн эсэх", default=False)
    # БАЙГУУЛЛАГЫН МЭДЭЭЛЭЛ
    organisation_name = models.CharField("компани нэр", max_length=200, blank=True)
    organisation_register = models.CharField("байгууллагын регистр", max_length=20, blank=True)
    department = models.CharField("салбар / хэлтэс", max_length=200, blank=True)
    position = models.CharField("албан тушаал", max_length=200, blank=True)
    # ТООН ГАРЫН ҮСГИЙН МЭДЭЭЛЭЛ
    term_years = models.PositiveSmallIntegerField(choices=[(1, "1 жил"), (2, "2 жил")], default=1)
    validity_days = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="Pilot/test orders only: the certificate is valid this many days instead of term_years.")
    etoken = models.BooleanField("тээгч төхөөрөмж (eToken)", default=True)
    # НЭМЭЛТ МЭДЭЭЛЭЛ
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=20, blank=True)
    consent_accepted = models.BooleanField("гэрээний нөхцөлийг зөвшөөрсөн", default=False)

    confirmed_at = models.DateTimeField(null=True, blank=True)
    paid_mnt = models.PositiveIntegerField(default=0)
    issued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = (models.Index(fields=["office", "change_seq"], name="order_office_feed"),)

    def __str__(self) -> str:
        return f"{self.invoice} {self.father_name[:1]}.{self.given_name} ({self.status})"

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None

    @property
    def fees(self) -> kiosk_order.Fees:
        return kiosk_order.compute_fees(self.term_years, self.etoken)

    def to_kiosk(self) -> kiosk_order.Order:
        """The order as the kiosk core sees it (and checks it: ``kiosk.order.check_may_proceed``)."""
        from central.orders import profiles

        separate = profiles.profile_for(self.register_number).separate_authentication
        return kiosk_order.Order(
            id=str(self.pk), invoice=self.invoice, status=kiosk_order.OrderStatus(self.status),
            holder=kiosk_order.Holder(self.surname, self.father_name, self.given_name, self.register_number,
                                      self.email, self.phone),
            organisation=self.organisation_name, organisation_register=self.organisation_register,
            department=self.department, position=self.position, term_years=self.term_years,
            etoken=self.etoken, confirmed=self.confirmed, paid_mnt=self.paid_mnt,
            authentication_certificate=separate,
        )

    def to_api(self) -> dict[str, Any]:
        """The ``Order`` schema of ``central/openapi.yaml`` without ``fees``: the kiosk's own wire form."""
        return self.to_kiosk().to_dict()


class Enrollment(FeedStamped):
    """One certificate issued for an order, found again by the kiosk's idempotency key."""

    idempotency_key = models.CharField(max_length=128, unique=True)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="enrollments")
    public_key_sha256 = models.CharField(
        max_length=64, unique=True,
        help_text="SHA-256 (hex) of the CSR's SubjectPublicKeyInfo, DER; a key gets one certificate.")
    csr_sha256 = models.CharField(max_length=64, help_text="SHA-256 (hex) of the CSR as received, DER.")
    certificate = models.OneToOneField("django_ca.Certificate", on_delete=models.PROTECT,
                                       related_name="tamga_enrollment")
    certificate_serial = models.CharField(max_length=64, unique=True, help_text="Upper-case hex.")
    kiosk_id = models.CharField(max_length=64)
    token_serial = models.CharField(max_length=64, blank=True, default="", db_index=True,
                                    help_text="The eToken that holds the certificate's key; empty if unknown.")
    renewal_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="renewals")
    fee_mnt = models.PositiveIntegerField(default=0, help_text="Renewal fee taken from the organisation.")
    voided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expiry_noticed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the certificate entered its renewal window (feed event).")

    def __str__(self) -> str:
        return f"{self.order.invoice} → {self.certificate_serial}"


class AuthenticationCertificate(models.Model):
    """The authentication certificate issued with an enrollment's signing certificate for a second key
    on the same token, where the holder's profile wants one (``CertificateProfile.separate_authentication``)."""

    enrollment = models.OneToOneField(Enrollment, on_delete=models.PROTECT, related_name="authentication")
    public_key_sha256 = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 (hex) of the second CSR's SubjectPublicKeyInfo, DER.")
    csr_sha256 = models.CharField(max_length=64, help_text="SHA-256 (hex) of the second CSR as received, DER.")
    certificate = models.OneToOneField("django_ca.Certificate", on_delete=models.PROTECT,
                                       related_name="tamga_authentication")
    certificate_serial = models.CharField(max_length=64, unique=True, help_text="Upper-case hex.")

    def __str__(self) -> str:
        return f"{self.enrollment.certificate_serial} + authentication {self.certificate_serial}"


class KioskCredential(models.Model):
    """A kiosk known to the central; it proves who it is with a :class:`KioskCertificate` (mutual TLS)."""

    kiosk_id = models.CharField(max_length=64, unique=True)
    office = models.ForeignKey(Office, null=True, blank=True, on_delete=models.PROTECT, related_name="kiosks",
                               help_text="The only office whose orders the kiosk sees; none: it sees nothing.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.kiosk_id


class EnrollmentCode(models.Model):
    """A one-time code a technician types into a new kiosk; only its SHA-256 is stored."""

    kiosk = models.ForeignKey(KioskCredential, on_delete=models.CASCADE, related_name="enrollment_codes")
    office = models.ForeignKey(Office, on_delete=models.PROTECT, related_name="+",
                               help_text="The office the technician named; the kiosk must name the same.")
    code_sha256 = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.kiosk.kiosk_id} code until {self.expires_at:%Y-%m-%d %H:%M}"


class KioskCertificate(models.Model):
    """A client certificate issued to a kiosk; each API request is checked against this row."""

    kiosk = models.ForeignKey(KioskCredential, on_delete=models.CASCADE, related_name="certificates")
    serial = models.CharField(max_length=64, unique=True)
    fingerprint_sha256 = models.CharField(max_length=64, unique=True)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.kiosk.kiosk_id} {self.serial}"


class Organisation(models.Model):
    """A customer organisation's account: its balance pays remote renewals (seed 003)."""

    register = models.CharField("регистр / татварын дугаар", max_length=20, unique=True)
    name = models.CharField(max_length=200)
    balance_mnt = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.register}): {self.balance_mnt} MNT"


class VoidedKey(models.Model):
    """An enrollment idempotency key a kiosk gave up; a later request with it is refused."""

    idempotency_key = models.CharField(max_length=128, unique=True)
    revoked_serial = models.CharField(max_length=64, blank=True, help_text="What was revoked, or empty.")
    kiosk_id = models.CharField(max_length=64)
    voided_at = models.DateTimeField(auto_now_add=True)


class TokenEscrow(models.Model):
    """A token's SO PIN, encrypted to the central's escrow key (RSA-OAEP-SHA256); never in clear."""

    token_serial = models.CharField(max_length=64, unique=True)
    ciphertext = models.BinaryField()
    escrow_key_id = models.CharField(max_length=64, help_text="SHA-256 (hex) of the escrow public key.")
    enrollment = models.ForeignKey(Enrollment, null=True, on_delete=models.SET_NULL, related_name="+")
    kiosk_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)


class SoPinRelease(models.Model):
    """One release of an escrowed SO PIN: which kiosk asked, for which token and certificate, when."""

    token_serial = models.CharField(max_length=64, db_index=True)
    certificate_serial = models.CharField(max_length=64)
    kiosk_id = models.CharField(max_length=64)
    released_at = models.DateTimeField(auto_now_add=True)


class RevocationRequest(models.Model):
    """A holder's revocation at a kiosk, found again by its idempotency key."""

    idempotency_key = models.CharField(max_length=128, unique=True)
    certificate_serial = models.CharField(max_length=64)
    reason = models.CharField(max_length=32)
    kiosk_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)


class InboxEvent(models.Model):
    """One journal event a kiosk pushed, applied once per (kiosk, key): a replayed batch adds nothing."""

    kiosk_id = models.CharField(max_length=64)
    key = models.CharField(max_length=160, help_text="The kiosk's idempotency key, <kiosk id>/<outbox id>.")
    session_id = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.CharField(max_length=40, help_text="When the kiosk wrote it (ISO 8601).")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = (models.UniqueConstraint(fields=["kiosk_id", "key"], name="inbox_event_once"),)

    def __str__(self) -> str:
        return f"{self.kiosk_id} {self.key} {self.kind}"


class AuditLink(models.Model):
    """One entry of a kiosk's hash-chained audit trail (``kiosk.audit``), kept per kiosk and branch without gaps.

    Branch 0 is the kiosk's chain from its first entry; branch n (n > 0) is the chain of a store restored
    from an old backup, which left branch n − 1 at :attr:`AuditFork.seq` (see ``audit_chain``)."""

    kiosk_id = models.CharField(max_length=64)
    branch = models.PositiveIntegerField(default=0)
    seq = models.PositiveBigIntegerField()
    at = models.CharField(max_length=40)
    kind = models.CharField(max_length=64)
    session_id = models.CharField(max_length=64, blank=True, default="")
    fields = models.JSONField()
    prev = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = (models.UniqueConstraint(fields=["kiosk_id", "branch", "seq"], name="audit_link_once"),)

    def __str__(self) -> str:
        return f"{self.kiosk_id} #{self.seq} {self.kind}" + (f" (branch {self.branch})" if self.branch else "")


class AuditFork(models.Model):
    """A kiosk chain that left the one the central holds, as first refused; never deleted.

    Open while ``branch`` is null.  The technician's rejoin (``tamga-provision audit-rejoin``) closes it:
    the kiosk's ``audit.rejoined`` entry (reason, technician, the central's last acknowledged link) is
    recorded here and the kiosk's chain is kept from ``seq`` on as ``branch``; the branch it left stays whole.
    """

    kiosk_id = models.CharField(max_length=64)
    parent = models.PositiveIntegerField(help_text="The branch the kiosk's entries left.")
    seq = models.PositiveBigIntegerField(help_text="The first entry differing from, or not following, the held one.")
    base_hash = models.CharField(max_length=64, help_text="The held hash of entry seq - 1, which both chains share.")
    held_hash = models.CharField(max_length=64, blank=True, default="", help_text="The held entry seq, if any.")
    offered_hash = models.CharField(max_length=64)
    detected_at = models.DateTimeField(auto_now_add=True)
    refusals = models.PositiveIntegerField(default=1)
    branch = models.PositiveIntegerField(null=True, blank=True)
    head_seq = models.PositiveBigIntegerField(null=True, blank=True, help_text="The parent's head at the rejoin.")
    head_hash = models.CharField(max_length=64, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    technician = models.CharField(max_length=100, blank=True, default="")
    rejoin_seq = models.PositiveBigIntegerField(null=True, blank=True)
    rejoin_hash = models.CharField(max_length=64, blank=True, default="")
    rejoined_at = models.DateTimeField(null=True, blank=True)
    signature = models.TextField(blank=True, default="",
                                 help_text="The kiosk key's signature of the rejoin entry (base64 DER ECDSA over "
                                           "kiosk.audit.rejoin_message).")
    signer_certificate = models.TextField(blank=True, default="", help_text="The kiosk certificate (PEM) verifying it.")

    def __str__(self) -> str:
        state = f"branch {self.branch}" if self.branch is not None else "open"
        return f"{self.kiosk_id} fork at #{self.seq} of branch {self.parent} ({state})"


class TrustAnchor(FeedStamped):
    """A national ID authority's CA certificate the kiosks trust for ID cards (``feeds/trust``).

    ``office`` None: every office's kiosks; else only that office's.  Withdrawing keeps the row (its
    feed event tells the kiosks to drop it); adding the same certificate again brings it back.
    """

    country = models.CharField(max_length=2, help_text="The ID card country profile: MN, KZ or KG.")
    role = models.CharField(max_length=12, choices=[("anchor", "anchor"), ("intermediate", "intermediate")])
    certificate_pem = models.TextField()
    sha256 = models.CharField(max_length=64, unique=True, help_text="SHA-256 (hex) of the certificate's DER.")
    subject = models.CharField(max_length=500)
    office = models.ForeignKey(Office, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.country} {self.role} {self.subject}"
