"""Contacts, their subscriptions, lists and segments in the REST API (scopes ``contacts:read`` / ``contacts:write``).

The views translate HTTP and nothing more: the contact services check every
value (the same rules as the dashboard's), and their ``ContactError`` becomes a
400 problem with an ``errors`` map, or a 409 when the address is taken. Every
POST honours ``Idempotency-Key`` (``accounts.idempotency``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from functools import partial
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.idempotency import IdempotentMixin
from accounts.rest import TenantAPIView
from contacts import services
from contacts.consent import ConsentError, subscribe_contact, unsubscribe_contact
from contacts.models import Contact, MailingList, Segment, Subscription, Suppression
from contacts.segments import SegmentError, account_is_small, count_for_display
from contacts.selectors import (
    ContactFilter,
    access_contact,
    access_mailing_list,
    access_segment,
    api_contact_page,
    api_contact_page_available,
    contact_list,
    contact_values,
    mailing_list_with_id,
    open_contact_values,
    segment_with_id,
    sensitive_field_keys_of_contact,
    subscription_on_list,
    tag_with_name,
    tags_of_contact,
)
from contacts.services import MAX_BULK_ITEMS, WRITABLE_STATUSES, ContactError, ContactExists

#: How a sensitive custom field's value shows in a contact's detail: that it is set, never what it is.
MASKED_VALUE = "***"


class ContactConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "contact_exists"
    default_detail = (
        "A contact with this email address already exists. POST /api/v1/contacts/upsert/ creates or updates by address."
    )


def refused(error: ContactError) -> exceptions.APIException:
    """The problem a refused contact change answers with."""
    if isinstance(error, ContactExists):
        return ContactConflict()
    return exceptions.ValidationError(error.errors or {"non_field_errors": [error.message]})


# --- representations --------------------------------------------------------------------
# The serializers document the shapes in the schema; the list builds the same
# dicts from plain values (DESIGN §10: lean serializers on hot lists).


class ContactSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The contact's id (con_…).")
    email = serializers.EmailField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    status = serializers.ChoiceField(choices=Contact.Status.choices)
    source = serializers.ChoiceField(choices=Contact.Source.choices, help_text="How the contact was first added.")
    tags = serializers.ListField(child=serializers.CharField())
    attributes = serializers.DictField(help_text="Values of the account's custom fields that are not sensitive.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    sensitive_attributes = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text=(
            f"Only in one contact's answers, not in lists: the sensitive custom fields that have a value, "
            f"each shown as {MASKED_VALUE!r}, never the value."
        ),
    )


class ContactWriteSerializer(serializers.Serializer):
    email = serializers.EmailField(help_text="Compared case- and Unicode-insensitively. Required, except in a PATCH.")
    first_name = serializers.CharField(required=False, max_length=services.MAX_NAME_LENGTH)
    last_name = serializers.CharField(required=False, max_length=services.MAX_NAME_LENGTH)
    status = serializers.ChoiceField(choices=list(WRITABLE_STATUSES), required=False)
    attributes = serializers.DictField(
        required=False,
        help_text="Custom field values by key (sensitive ones too); merged into the contact's; null clears one.",
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=services.MAX_TAG_LENGTH),
        required=False,
        help_text="The contact's tags, replacing the ones it has; new names are created.",
    )


class ContactBulkSerializer(serializers.Serializer):
    contacts = ContactWriteSerializer(many=True, max_length=MAX_BULK_ITEMS)


class ContactBulkItemSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The item's position in the request, from 0.")
    status = serializers.ChoiceField(choices=["created", "updated", "error"])
    id = serializers.CharField(required=False, help_text="The contact's id, unless the item failed.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False, help_text="Why the item failed."
    )


class ContactBulkResultSerializer(serializers.Serializer):
    results = ContactBulkItemSerializer(many=True)
    summary = inline_serializer(
        "ContactBulkSummary",
        {
            "created": serializers.IntegerField(),
            "updated": serializers.IntegerField(),
            "failed": serializers.IntegerField(),
        },
    )


def json_timestamp(moment: datetime) -> str:
    """A time as DRF's JSON encoder writes one (ISO 8601, UTC as ``Z``), written here for it.

    Left to the encoder, each of a page's 100 timestamps is a call back into
    Python from the C encoder: that doubled the time a page took to render.
    """
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def contact_representation(values: Mapping[str, Any]) -> dict[str, Any]:
    """The API's contact, from a contact's decrypted values (``open_contact_values`` or ``contact_detail``)."""
    return {
        "id": values["public_id"],
        "email": values["email"],
        "first_name": values["first_name"],
        "last_name": values["last_name"],
        "status": values["status"],
        "source": values["source"],
        "tags": values["tags"],
        "attributes": values["attributes"] or {},
        "created_at": json_timestamp(values["created_at"]),
        "updated_at": json_timestamp(values["updated_at"]),
    }


def contact_detail(account: Any, contact: Contact) -> dict[str, Any]:
    values = {name: getattr(contact, name) for name in ("public_id", "email", "first_name", "last_name", "status")}
    values |= {"source": contact.source, "attributes": contact.attributes, "tags": tags_of_contact(account, contact)}
    values |= {"created_at": contact.created_at, "updated_at": contact.updated_at}
    masked = {key: MASKED_VALUE for key in sensitive_field_keys_of_contact(account, contact)}
    return {**contact_representation(values), "sensitive_attributes": masked}


# --- contacts ----------------------------------------------------------------------------


class ContactFilters(serializers.Serializer):
    email = serializers.CharField(required=False, max_length=services.MAX_EMAIL_LENGTH)
    status = serializers.ChoiceField(choices=Contact.Status.choices, required=False)
    list = serializers.CharField(required=False, max_length=40)
    tag = serializers.CharField(required=False, max_length=services.MAX_TAG_LENGTH)
    segment = serializers.CharField(required=False, max_length=40)


FILTER_NAMES = frozenset(ContactFilters().fields)


@extend_schema_view(
    get=extend_schema(
        parameters=[
            OpenApiParameter("email", str, description="An exact address (case and Unicode form do not matter)."),
            OpenApiParameter("status", str, enum=Contact.Status.values),
            OpenApiParameter("list", str, description="Contacts subscribed to this list (lst_…)."),
            OpenApiParameter("tag", str, description="Contacts with this tag (its name)."),
            OpenApiParameter("segment", str, description="Contacts matching this segment (seg_…)."),
        ],
        responses=ContactSerializer(many=True),
    )
)
class ContactListAPI(IdempotentMixin, TenantAPIView, ListAPIView):
    """The account's contacts, newest first (GET); add one (POST)."""

    model = Contact
    scope_resource = "contacts"
    serializer_class = ContactSerializer

    def filter_queryset(self, queryset: QuerySet[Contact]) -> QuerySet[Contact]:
        # contact_list narrows the same account-scoped rows (self.account, from the key) by the filters.
        if FILTER_NAMES.isdisjoint(self.request.query_params):
            # No filter asked for (the common page): the scoped rows as they are, which is what
            # contact_list(self.account) would build again; the cursor pagination orders them.
            return queryset
        filters = ContactFilters(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        mailing_list = segment = tag = None
        if "list" in values and (mailing_list := mailing_list_with_id(self.account, values["list"])) is None:
            raise exceptions.ValidationError({"list": ["No list with this id."]})
        if "segment" in values and (segment := segment_with_id(self.account, values["segment"])) is None:
            raise exceptions.ValidationError({"segment": ["No segment with this id."]})
        if "tag" in values and (tag := tag_with_name(self.account, values["tag"])) is None:
            return queryset.none()
        chosen = ContactFilter(
            email=values.get("email", ""),
            status=values.get("status", ""),
            mailing_list=mailing_list,
            tag=tag,
            segment=segment,
        )
        try:
            return contact_list(self.account, chosen)
        except SegmentError as error:
            raise exceptions.ValidationError({"segment": [str(error)]}) from None

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if FILTER_NAMES.isdisjoint(request.query_params) and api_contact_page_available():
            # The common page, every contact of the key's account: one fixed statement (api_contact_page).
            page = self.paginator.paginate_rows(partial(api_contact_page, self.account), request)
        else:
            page = self.paginate_queryset(contact_values(self.filter_queryset(self.get_queryset())))
        rows = open_contact_values(self.account, page or [])
        return self.get_paginated_response([contact_representation(row) for row in rows])

    @extend_schema(
        request=ContactWriteSerializer,
        responses={
            201: ContactSerializer,
            400: OpenApiResponse(description="Invalid fields, or a suppressed address as subscribed."),
            409: OpenApiResponse(description="A contact with this address exists."),
        },
    )
    def post(self, request: Request) -> Response:
        """Add a contact (source ``api``). 409 when the address is already a contact: use upsert to update it."""
        fields = _contact_input(request.data, require_email=True)
        try:
            contact = services.create_contact(self.account, **fields, source=Contact.Source.API)
        except ContactError as error:
            raise refused(error) from None
        return Response(contact_detail(self.account, contact), status=status.HTTP_201_CREATED)


class ContactDetailAPI(TenantAPIView):
    """One contact: read (GET), change (PATCH), delete (DELETE)."""

    model = Contact
    scope_resource = "contacts"
    serializer_class = ContactSerializer

    def get(self, request: Request, public_id: str) -> Response:
        contact = access_contact(self.account, public_id)
        return Response(contact_detail(self.account, contact))

    @extend_schema(request=ContactWriteSerializer, responses={200: ContactSerializer})
    def patch(self, request: Request, public_id: str) -> Response:
        """Change the fields sent; attributes merge (null clears one); tags replace the contact's tags."""
        contact = access_contact(self.account, public_id)
        fields = _contact_input(request.data, require_email=False)
        try:
            services.update_contact(self.account, contact, **fields)
        except ContactError as error:
            raise refused(error) from None
        return Response(contact_detail(self.account, contact))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, public_id: str) -> Response:
        """Delete the contact and its subscriptions. Its address is not suppressed: erasure does that."""
        services.delete_contact(self.account, access_contact(self.account, public_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ContactUpsertAPI(IdempotentMixin, TenantAPIView):
    """Create or update the contact with an address (POST: see docs/api.md for why not PUT)."""

    model = Contact
    scope_resource = "contacts"
    serializer_class = ContactSerializer

    @extend_schema(
        request=ContactWriteSerializer,
        responses={
            200: OpenApiResponse(ContactSerializer, description="Updated."),
            201: OpenApiResponse(ContactSerializer, description="Created."),
        },
    )
    def post(self, request: Request) -> Response:
        fields = _contact_input(request.data, require_email=True)
        try:
            contact, created = services.upsert_contact(self.account, **fields, source=Contact.Source.API)
        except ContactError as error:
            raise refused(error) from None
        answer = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(contact_detail(self.account, contact), status=answer)


class ContactBulkAPI(IdempotentMixin, TenantAPIView):
    """Create or update up to 1,000 contacts by address, with one result per item, in order."""

    model = Contact
    scope_resource = "contacts"
    serializer_class = ContactBulkResultSerializer

    @extend_schema(request=ContactBulkSerializer, responses={200: ContactBulkResultSerializer})
    def post(self, request: Request) -> Response:
        data = request.data
        _refuse_other_keys(data, allowed={"contacts"})
        items = data.get("contacts") if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            raise exceptions.ValidationError({"contacts": ["Send a list of contacts."]})
        if not items:
            raise exceptions.ValidationError({"contacts": ["Send at least one contact."]})
        try:
            results = services.bulk_upsert(self.account, items, source=Contact.Source.API)
        except ContactError as error:
            raise refused(error) from None
        body = [_bulk_item(result) for result in results]
        summary = {"created": 0, "updated": 0, "failed": 0}
        for result in results:
            summary["failed" if result.status == "error" else result.status] += 1
        return Response({"results": body, "summary": summary})


def _bulk_item(result: services.ItemResult) -> dict[str, Any]:
    if result.status == "error":
        return {"index": result.index, "status": "error", "errors": result.errors}
    assert result.contact is not None
    return {"index": result.index, "status": result.status, "id": result.contact.public_id}


def _refuse_other_keys(data: Any, *, allowed: Collection[str], read_only: Collection[str] = ()) -> None:
    """A 400 naming every key of the body that the endpoint does not take, as a contact write does.

    Dropping one silently would let a client believe it had set what only the
    server decides: the account, a status, the time or source of consent.
    """
    if not isinstance(data, Mapping):
        return
    errors = {
        str(key): ["This field is read-only."] if key in read_only else ["Unknown field."]
        for key in data
        if key not in allowed
    }
    if errors:
        raise exceptions.ValidationError(errors)


def _contact_input(data: Any, *, require_email: bool) -> dict[str, Any]:
    try:
        fields = services.parse_contact_input(data)
    except ContactError as error:
        raise refused(error) from None
    if require_email and "email" not in fields:
        raise exceptions.ValidationError({"email": ["This field is required."]})
    return fields


# --- subscriptions ---------------------------------------------------------------------


class SubscriptionSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    list = serializers.CharField(source="mailing_list.public_id", read_only=True, help_text="The list's id (lst_…).")
    # "source", as on a contact: how the person consented (the subscription's consent_source).
    source = serializers.ChoiceField(choices=Contact.Source.choices, source="consent_source", read_only=True)

    class Meta:
        model = Subscription
        fields = [
            "id",
            "list",
            "status",
            "source",
            "consent_at",
            "confirmed_at",
            "unsubscribed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SubscribeSerializer(serializers.Serializer):
    list = serializers.CharField(max_length=40, help_text="The list's id (lst_…).")
    consent_text = serializers.CharField(
        required=False, max_length=5000, help_text="What the person agreed to; the list's own consent text if left out."
    )
    consent_ip = serializers.IPAddressField(
        required=False, help_text="The address the person consented from (evidence), when you know it."
    )


#: What a subscribe request may send. The rest of the evidence (when, how, whether the person
#: confirmed) is the server's to record, so a body naming it is refused, not silently trimmed.
SUBSCRIBE_FIELDS = frozenset(SubscribeSerializer().fields)
SUBSCRIPTION_READ_ONLY = frozenset(SubscriptionSerializer.Meta.fields) - SUBSCRIBE_FIELDS


class ContactSubscriptionListAPI(IdempotentMixin, TenantAPIView, ListAPIView):
    """The contact's subscriptions (GET); subscribe it to a list with the evidence of consent (POST)."""

    model = Subscription
    scope_resource = "contacts"
    serializer_class = SubscriptionSerializer

    def filter_queryset(self, queryset: QuerySet[Subscription]) -> QuerySet[Subscription]:
        contact = access_contact(self.account, self.kwargs["public_id"])
        return queryset.filter(contact=contact).select_related("mailing_list")

    @extend_schema(
        request=SubscribeSerializer,
        responses={
            201: SubscriptionSerializer,
            400: OpenApiResponse(description="The person left this list or is suppressed; or a bad field."),
        },
    )
    def post(self, request: Request, public_id: str) -> Response:
        """Subscribe (source ``api``): ``pending`` on a double opt-in list until the person confirms by email."""
        contact = access_contact(self.account, public_id)
        _refuse_other_keys(request.data, allowed=SUBSCRIBE_FIELDS, read_only=SUBSCRIPTION_READ_ONLY)
        form = SubscribeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        values = form.validated_data
        mailing_list = mailing_list_with_id(self.account, values["list"])
        if mailing_list is None:
            raise exceptions.ValidationError({"list": ["No list with this id."]})
        try:
            subscription = subscribe_contact(
                self.account,
                contact,
                mailing_list,
                source=Contact.Source.API,
                ip=values.get("consent_ip"),
                consent_text=values.get("consent_text"),
            )
        except ConsentError as error:
            raise exceptions.ValidationError({"non_field_errors": [str(error)]}) from None
        return Response(SubscriptionSerializer(subscription).data, status=status.HTTP_201_CREATED)


class ContactSubscriptionDetailAPI(TenantAPIView):
    """Unsubscribe the contact from one list (DELETE); the subscription stays, ``unsubscribed``, as evidence."""

    model = Subscription
    scope_resource = "contacts"
    serializer_class = SubscriptionSerializer

    @extend_schema(responses={200: SubscriptionSerializer})
    def delete(self, request: Request, public_id: str, list_id: str) -> Response:
        contact = access_contact(self.account, public_id)
        mailing_list = access_mailing_list(self.account, list_id)
        subscription_on_list(self.account, contact, mailing_list)  # 404 for a list the contact was never on
        subscription = unsubscribe_contact(self.account, contact, mailing_list, reason=Suppression.Reason.UNSUBSCRIBED)
        return Response(SubscriptionSerializer(subscription).data)


# --- lists and segments ------------------------------------------------------------------


class MailingListSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = MailingList
        fields = ["id", "name", "description", "opt_in", "form_enabled", "created_at", "updated_at"]
        read_only_fields = fields


class MailingListListAPI(TenantAPIView, ListAPIView):
    """The account's lists, newest first."""

    model = MailingList
    scope_resource = "contacts"
    serializer_class = MailingListSerializer


class MailingListDetailAPI(TenantAPIView):
    """One list of the account."""

    model = MailingList
    scope_resource = "contacts"
    serializer_class = MailingListSerializer

    def get(self, request: Request, public_id: str) -> Response:
        return Response(MailingListSerializer(access_mailing_list(self.account, public_id)).data)


class SegmentSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    definition = serializers.JSONField(
        read_only=True, help_text="The filter (docs: segments). Addresses and sensitive values appear as blind indexes."
    )
    cached_count = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The last count made in the background; /count/ counts now."
    )

    class Meta:
        model = Segment
        fields = ["id", "name", "definition", "cached_count", "counted_at", "created_at", "updated_at"]
        read_only_fields = fields


class SegmentListAPI(TenantAPIView, ListAPIView):
    """The account's saved segments, newest first."""

    model = Segment
    scope_resource = "contacts"
    serializer_class = SegmentSerializer


class SegmentDetailAPI(TenantAPIView):
    """One segment of the account."""

    model = Segment
    scope_resource = "contacts"
    serializer_class = SegmentSerializer

    def get(self, request: Request, public_id: str) -> Response:
        return Response(SegmentSerializer(access_segment(self.account, public_id)).data)


class SegmentCountSerializer(serializers.Serializer):
    count = serializers.IntegerField(
        allow_null=True,
        help_text="How many of the account's contacts match: counted now for accounts of up to 100,000 contacts, "
        "else the last background count (null before the first).",
    )
    counted_at = serializers.DateTimeField(allow_null=True, help_text="When that count was made.")
    refreshing = serializers.BooleanField(
        help_text="True when the figure is older than the segment, or than 10 minutes, and a new count is running: "
        "ask again in a few seconds."
    )


class SegmentCountAPI(TenantAPIView):
    """How many contacts match a segment (counted now in small accounts, in the background in large ones)."""

    model = Segment
    scope_resource = "contacts"
    serializer_class = SegmentCountSerializer

    @extend_schema(responses={200: SegmentCountSerializer, 400: OpenApiResponse(description="The segment cannot run.")})
    def get(self, request: Request, public_id: str) -> Response:
        segment = access_segment(self.account, public_id)
        started = timezone.now()
        try:
            matching, refreshing = count_for_display(self.account, segment)
        except SegmentError as error:
            raise exceptions.ValidationError({"definition": [str(error)]}) from None
        # A small account was counted just now (the size probe is cached, so asking again costs no query).
        counted_at = started if account_is_small(self.account) else segment.counted_at
        answer = {"count": matching, "counted_at": counted_at, "refreshing": refreshing}
        return Response(SegmentCountSerializer(answer).data)
