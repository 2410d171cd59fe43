"""Audiences: contacts and the lists they subscribe to."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.tenancy import TenantModel, public_id_constraints
from security.fields import BlindIndexField, EncryptedTextField
from security.identifiers import PublicIdField


class Contact(TenantModel):
    """A person in an account's audience. Email and names are encrypted under the account's keys."""

    class Status(models.TextChoices):
        SUBSCRIBED = "subscribed", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        ERASED = "erased", "Erased"

    class Source(models.TextChoices):
        FORM = "form", "Subscribe form"
        IMPORT = "import", "Import"
        API = "api", "API"
        MANUAL = "manual", "Added by hand"

    public_id = PublicIdField(prefix="con")
    email = EncryptedTextField()
    email_index = BlindIndexField(source="email", purpose="email")
    first_name = EncryptedTextField(default="", blank=True)
    last_name = EncryptedTextField(default="", blank=True)
    # The address's domain, for segments ("gmail.com"), under its own per-account index key.
    email_domain_index = BlindIndexField(source="email", purpose="email_domain", verify_on_read=False, null=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBSCRIBED)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    # Values of the account's non-sensitive custom fields, by field key: plain JSON, filterable.
    attributes = models.JSONField(default=dict, blank=True)
    tags = models.ManyToManyField("Tag", through="ContactTag", related_name="contacts")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantModel.Meta):
        constraints = [
            *public_id_constraints("contacts_contact"),
            models.UniqueConstraint(fields=["account", "email_index"], name="contacts_contact_account_email_uniq"),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="contacts_contact_recent"),
            models.Index(fields=["account", "status", "-created_at", "-id"], name="contacts_contact_status"),
            models.Index(fields=["account", "email_domain_index"], name="contacts_contact_domain"),
            # Segment counts by status: an index-only scan (bench/bench_segments.py).
            models.Index(fields=["account", "status", "id"], name="contacts_contact_status_id"),
        ]

    def __str__(self) -> str:
        return self.public_id


class MailingList(TenantModel):
    """A list people subscribe to."""

    class OptIn(models.TextChoices):
        SINGLE = "single", "Single opt-in"
        DOUBLE = "double", "Double opt-in (confirm by email)"

    public_id = PublicIdField(prefix="lst")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    opt_in = models.CharField(max_length=8, choices=OptIn.choices, default=OptIn.SINGLE)
    # The public subscribe form for embedding on the customer's site.
    form_enabled = models.BooleanField(default=False)
    # What a person agrees to when they subscribe, kept as evidence with each subscription.
    consent_text = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantModel.Meta):
        constraints = public_id_constraints("contacts_mailinglist")
        indexes = [models.Index(fields=["account", "-created_at"], name="contacts_list_account_created")]

    def __str__(self) -> str:
        return self.name


class Subscription(TenantModel):
    """A contact on a list, with the evidence of their consent: when, how, from where, to what."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for confirmation"
        SUBSCRIBED = "subscribed", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    public_id = PublicIdField(prefix="sub")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="subscriptions", db_index=False)
    mailing_list = models.ForeignKey(MailingList, on_delete=models.CASCADE, related_name="subscriptions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBSCRIBED)
    consent_source = models.CharField(max_length=16, choices=Contact.Source.choices)
    consent_at = models.DateTimeField(default=timezone.now)
    consent_ip = models.GenericIPAddressField(null=True, blank=True)
    # The words the person agreed to; may quote personal details, so encrypted like them.
    consent_text = EncryptedTextField(blank=True, default="")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantModel.Meta):
        constraints = [
            *public_id_constraints("contacts_subscription"),
            models.UniqueConstraint(fields=["contact", "mailing_list"], name="contacts_subscription_contact_list_uniq"),
        ]
        indexes = [
            # List membership in segments and list pages: joins as an index-only scan.
            models.Index(fields=["account", "mailing_list", "status", "contact"], name="contacts_subscription_member"),
        ]

    def __str__(self) -> str:
        return self.public_id


class Tag(TenantModel):
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="contacts_tag_account_name_uniq")]

    def __str__(self) -> str:
        return self.name


class ContactTag(TenantModel):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["contact", "tag"], name="contacts_contacttag_uniq")]

    def __str__(self) -> str:
        return f"{self.contact_id}:{self.tag_id}"


class CustomField(TenantModel):
    """A field an account adds to its contacts.

    Not sensitive: the value sits in ``Contact.attributes`` (plain JSON,
    filterable in segments). Sensitive: encrypted in ``SensitiveValue`` with
    its own blind index, so it can only be matched for equality.
    """

    class Type(models.TextChoices):
        TEXT = "text", "Text"
        NUMBER = "number", "Number"
        DATE = "date", "Date"
        BOOLEAN = "boolean", "Yes or no"
        CHOICE = "choice", "Choice"

    public_id = PublicIdField(prefix="fld")
    # Letters, digits and underscores: the name in CSV headers, the API and segments.
    key = models.SlugField(max_length=64, allow_unicode=False)
    label = models.CharField(max_length=100)
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.TEXT)
    choices = models.JSONField(default=list, blank=True)
    sensitive = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta(TenantModel.Meta):
        constraints = [
            *public_id_constraints("contacts_customfield"),
            models.UniqueConstraint(fields=["account", "key"], name="contacts_customfield_account_key_uniq"),
        ]

    def __str__(self) -> str:
        return self.key


class SensitiveValue(TenantModel):
    """A contact's value of a sensitive custom field: encrypted, matched only through its blind index."""

    public_id = PublicIdField(prefix="sv")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="sensitive_values", db_index=False)
    field = models.ForeignKey(CustomField, on_delete=models.CASCADE, related_name="+")
    value = EncryptedTextField()
    value_index = BlindIndexField(source="value", purpose="text")

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["contact", "field"], name="contacts_sensitivevalue_contact_field_uniq")
        ]
        indexes = [models.Index(fields=["account", "field", "value_index"], name="contacts_sensitive_lookup")]

    def __str__(self) -> str:
        return self.public_id


class Suppression(TenantModel):
    """An address the account must never mail: by the person's choice, a bounce, a complaint, an erasure, or by hand.

    Keyed by the account's blind index of the address, never the address: an
    erased person's tombstone still stops a re-import of their address.
    """

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        ERASED = "erased", "Erased on request"
        MANUAL = "manual", "Added by hand"

    email_index = models.BinaryField(max_length=32)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["account", "email_index"], name="contacts_suppression_account_email_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.reason} ({self.pk})"


class ContactImport(TenantModel):
    """A CSV import: the uploaded file, its mapping and options, its progress and its outcome."""

    class Status(models.TextChoices):
        UPLOADED = "uploaded", "Uploaded"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    public_id = PublicIdField(prefix="imp")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADED)
    # Where the upload waits (removed when the import ends); a name, never the original file name.
    file_path = models.CharField(max_length=500, blank=True, default="")
    file_size = models.BigIntegerField(default=0)
    # What ``importing.configure`` decided, read back by the engine as one document: {"columns": {CSV column
    # position: "email" | "first_name" | "last_name" | "tags" | a custom field key | ""}, "has_header": bool,
    # "delimiter": str, "encoding": str}. Empty until configured.
    mapping = models.JSONField(default=dict, blank=True)
    update_existing = models.BooleanField(default=True)
    mailing_list = models.ForeignKey(MailingList, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    consent_source = models.CharField(max_length=16, choices=Contact.Source.choices, default=Contact.Source.IMPORT)
    rows_total = models.BigIntegerField(default=0)
    rows_done = models.BigIntegerField(default=0)
    created = models.BigIntegerField(default=0)
    updated = models.BigIntegerField(default=0)
    skipped = models.BigIntegerField(default=0)
    invalid = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    suppressed = models.BigIntegerField(default=0)
    # The per-row error report (CSV), kept until downloaded or the import is deleted.
    error_report_path = models.CharField(max_length=500, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey("accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        constraints = public_id_constraints("contacts_contactimport")
        indexes = [models.Index(fields=["account", "-created_at"], name="contacts_import_recent")]

    def __str__(self) -> str:
        return self.public_id


class Segment(TenantModel):
    """A saved filter over the account's contacts (``contacts.segments`` defines the language)."""

    public_id = PublicIdField(prefix="seg")
    name = models.CharField(max_length=200)
    definition = models.JSONField(default=dict)
    # Counted in the background for large accounts; None until first counted.
    cached_count = models.BigIntegerField(null=True, blank=True)
    counted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantModel.Meta):
        constraints = public_id_constraints("contacts_segment")
        indexes = [models.Index(fields=["account", "-created_at"], name="contacts_segment_recent")]

    def __str__(self) -> str:
        return self.name
