from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django import forms

from accounts.models import Account
from contacts.models import Contact, CustomField, MailingList
from contacts.selectors import custom_field_list, mailing_list_list, segment_list, tag_list

EMAIL_SEARCH_HELP = (
    "Finds a contact by their full email address (any capitalisation). Part of an address finds nothing: "
    "addresses are stored encrypted and matched only whole."
)


class MailingListForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class MailingListSettingsForm(MailingListForm):
    """A list with how people join it: the opt-in, the public form, and the words they agree to."""

    opt_in = forms.ChoiceField(
        label="Opt-in",
        required=False,
        choices=MailingList.OptIn.choices,
        initial=MailingList.OptIn.SINGLE,
        help_text="Double opt-in sends a confirmation email; the person is subscribed once they confirm.",
    )
    form_enabled = forms.BooleanField(
        label="Public subscribe form", required=False, help_text="Lets people subscribe through a form on your site."
    )
    consent_text = forms.CharField(
        label="Consent text",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What a person agrees to when they subscribe; kept with each subscription as evidence.",
    )

    def clean_opt_in(self) -> str:
        # A form without the choice (an older page, a script) gets the model's default, single opt-in.
        return self.cleaned_data["opt_in"] or MailingList.OptIn.SINGLE


class ContactFilterForm(forms.Form):
    """The contacts list's search and filters, from the query string. Ids are resolved by the view first."""

    email = forms.CharField(
        required=False, max_length=320, label="Email address", help_text=EMAIL_SEARCH_HELP, strip=True
    )
    list = forms.ChoiceField(required=False, label="Subscribed to")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Contact.Status.choices])
    tag = forms.ChoiceField(required=False)
    segment = forms.ChoiceField(required=False)

    FILTER_NAMES = ("email", "list", "status", "tag", "segment")

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].widget.attrs.update(
            {"type": "search", "autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}
        )
        self.fields["list"].choices = [("", "Any list")] + [
            (item.public_id, item.name) for item in mailing_list_list(account)
        ]
        self.fields["tag"].choices = [("", "Any tag")] + [(tag.name, tag.name) for tag in tag_list(account)]
        self.fields["segment"].choices = [("", "No segment")] + [
            (segment.public_id, segment.name) for segment in segment_list(account)
        ]


class ContactForm(forms.Form):
    """A contact's own fields, its tags, and the account's non-sensitive custom fields."""

    email = forms.EmailField(max_length=320)
    first_name = forms.CharField(max_length=200, required=False)
    last_name = forms.CharField(max_length=200, required=False)
    tags = forms.CharField(
        required=False, max_length=2000, help_text="Separated by commas, for example: customer, newsletter."
    )

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.custom_fields = list(custom_field_list(account, sensitive=False))
        for field in self.custom_fields:
            self.fields[f"attribute_{field.key}"] = _custom_form_field(field)

    def clean_tags(self) -> list[str]:
        names = [name.strip() for name in self.cleaned_data["tags"].split(",")]
        unique = list(dict.fromkeys(name for name in names if name))
        if any(len(name) > 100 for name in unique):
            raise forms.ValidationError("A tag is at most 100 characters.")
        return unique

    def attributes(self) -> dict[str, Any]:
        """Every non-sensitive custom field's value by key, as ``Contact.attributes`` keeps it; None for a blank one.

        ``services.update_contact`` clears a field given None, so emptying a box on the form clears the value.
        """
        values: dict[str, Any] = {}
        for field in self.custom_fields:
            value = self.cleaned_data.get(f"attribute_{field.key}")
            if value in (None, ""):
                values[field.key] = None
            else:
                values[field.key] = _json_value(value)
        return values

    @staticmethod
    def initial_for(contact: Contact, tags: list[str]) -> dict[str, Any]:
        initial: dict[str, Any] = {
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "tags": ", ".join(tags),
        }
        for key, value in (contact.attributes or {}).items():
            initial[f"attribute_{key}"] = value
        return initial


def _json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _custom_form_field(field: CustomField) -> forms.Field:
    label = field.label or field.key
    if field.type == CustomField.Type.NUMBER:
        return forms.FloatField(label=label, required=False)
    if field.type == CustomField.Type.DATE:
        return forms.DateField(label=label, required=False, widget=forms.DateInput(attrs={"type": "date"}))
    if field.type == CustomField.Type.BOOLEAN:
        return forms.TypedChoiceField(
            label=label,
            required=False,
            choices=[("", "Not set"), ("true", "Yes"), ("false", "No")],
            coerce=lambda value: value == "true",
            empty_value=None,
        )
    if field.type == CustomField.Type.CHOICE:
        values = [choice.get("value") if isinstance(choice, dict) else choice for choice in field.choices or []]
        return forms.ChoiceField(
            label=label, required=False, choices=[("", "Not set")] + [(str(v), str(v)) for v in values if v is not None]
        )
    return forms.CharField(label=label, required=False, max_length=1000)


class ConfirmDeleteForm(forms.Form):
    """Typing the name back, so a delete is never one stray click."""

    confirm = forms.CharField(max_length=320, label="Type the name to confirm")

    def __init__(self, *args: Any, expected: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip()
        if value != self.expected.strip():
            raise forms.ValidationError("That is not the name.")
        return value


class SegmentForm(forms.Form):
    name = forms.CharField(max_length=200)


# --- the segment builder ---------------------------------------------------------------

MAX_CONDITIONS = 30
# The operators the builder offers, as ``contacts.segments`` names them, with what the page says.
CONDITION_OPS = (
    ("eq", "is"),
    ("neq", "is not"),
    ("in", "is one of (comma-separated)"),
    ("contains", "contains"),
    ("starts_with", "starts with"),
    ("is_set", "has a value"),
    ("is_not_set", "has no value"),
    ("gt", "is more than"),
    ("gte", "is at least"),
    ("lt", "is less than"),
    ("lte", "is at most"),
    ("before", "is before (YYYY-MM-DD)"),
    ("after", "is after (YYYY-MM-DD)"),
    ("within_days", "is within the last … days"),
    ("is_true", "is yes"),
    ("is_false", "is no"),
    ("has", "has the tag"),
    ("has_not", "does not have the tag"),
    ("subscribed", "is subscribed to the list (id)"),
    ("pending", "waits to confirm the list (id)"),
    ("unsubscribed", "left the list (id)"),
    ("not_subscribed", "is not subscribed to the list (id)"),
    ("opened_within_days", "opened an email in the last … days"),
    ("clicked_within_days", "clicked a link in the last … days"),
)
_VALUELESS_OPS = {"is_set", "is_not_set", "is_true", "is_false"}
_BUILT_IN_FIELDS = (
    ("status", "Status"),
    ("source", "Source"),
    ("email", "Email address (exact)"),
    ("email_domain", "Email domain"),
    ("created_at", "Added"),
    ("updated_at", "Last changed"),
    ("tag", "Tag"),
    ("list", "List"),
    ("engagement", "Opens and clicks"),
)


def condition_fields(account: Account) -> list[tuple[str, str]]:
    """The fields a builder row can name: the built-in ones, then the account's custom fields."""
    fields = list(_BUILT_IN_FIELDS)
    for custom in custom_field_list(account):
        prefix = "sensitive" if custom.sensitive else "attributes"
        suffix = " (sensitive, exact)" if custom.sensitive else ""
        fields.append((f"{prefix}.{custom.key}", f"{custom.label or custom.key}{suffix}"))
    return fields


class SegmentBuilder:
    """A segment's definition as the builder shows it: rows of field, operator, value under an all/any switch.

    The page posts parallel ``field``/``op``/``value``/``value_index`` lists.
    ``definition()`` writes the JSON language of ``contacts.segments``
    (``{"all": [...]}`` or ``{"any": [...]}``), typing each value as the
    operator wants it; ``segments.validate`` judges the result. A saved
    definition with nested groups cannot be shown as rows: ``is_flat`` is then
    False and the page keeps it as it is.
    """

    MATCHES = (("all", "all of these"), ("any", "any of these"))

    def __init__(
        self, match: str, rows: list[dict[str, str]], error: str | None = None, *, is_flat: bool = True
    ) -> None:
        self.match = match if match in dict(self.MATCHES) else "all"
        self.rows = rows
        self.error = error
        self.is_flat = is_flat

    @classmethod
    def from_definition(cls, definition: dict[str, Any] | None) -> SegmentBuilder:
        definition = definition or {}
        if "field" in definition:
            definition = {"all": [definition]}
        if not definition:
            return cls("all", [cls.blank_row()])
        ((match, children),) = definition.items() if len(definition) == 1 else ((None, None),)
        if match not in ("all", "any") or not isinstance(children, list):
            return cls("all", [], is_flat=False)
        if any(not isinstance(child, dict) or "field" not in child for child in children):
            return cls(match, [], is_flat=False)
        rows = [
            {
                "field": str(child.get("field", "")),
                "op": str(child.get("op", "")),
                "value": _shown(child.get("value")),
                "value_index": str(child.get("value_index", "")),
            }
            for child in children
        ]
        return cls(match, rows or [cls.blank_row()])

    @classmethod
    def from_post(cls, data: Any) -> SegmentBuilder:
        match = data.get("match", "all")
        columns = [data.getlist(name) for name in ("field", "op", "value", "value_index")]
        if len({len(column) for column in columns}) != 1:
            return cls(match, [cls.blank_row()], "The conditions arrived incomplete; try again.")
        if len(columns[0]) > MAX_CONDITIONS:
            return cls(match, [cls.blank_row()], f"A segment has at most {MAX_CONDITIONS} conditions here.")
        rows = [
            {"field": field.strip(), "op": op.strip(), "value": value.strip(), "value_index": index.strip()}
            for field, op, value, index in zip(*columns, strict=True)
        ]
        return cls(match, rows or [cls.blank_row()])

    @staticmethod
    def blank_row() -> dict[str, str]:
        return {"field": "", "op": "", "value": "", "value_index": ""}

    def add_row(self) -> None:
        if len(self.rows) < MAX_CONDITIONS:
            self.rows.append(self.blank_row())

    def remove_row(self, position: str) -> None:
        if position.isdigit() and int(position) < len(self.rows):
            del self.rows[int(position)]
        if not self.rows:
            self.rows.append(self.blank_row())

    def definition(self, *, number_fields: Collection[str] = ()) -> dict[str, Any]:
        """The rows as a definition; ``number_fields`` names the custom fields whose values are numbers."""
        conditions = []
        for row in self.rows:
            if not (row["field"] or row["op"] or row["value"]):
                continue
            condition: dict[str, Any] = {"field": row["field"], "op": row["op"]}
            if row["value_index"] and not row["value"]:
                # A saved address or sensitive value comes back as its blind index only.
                condition["value_index"] = row["value_index"]
            elif row["op"] not in _VALUELESS_OPS:
                condition["value"] = _typed(row["value"], row["op"], is_number=row["field"] in number_fields)
            conditions.append(condition)
        return {self.match: conditions}


def _typed(text: str, op: str, *, is_number: bool) -> Any:
    """A row's text as the language wants it: a list for ``in``, whole days, numbers for number fields."""
    if op == "in":
        return [item.strip() for item in text.split(",") if item.strip()]
    if op.endswith("within_days") and text.isdigit():
        return int(text)
    if is_number:
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() and "." not in text else number
    return text


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)
