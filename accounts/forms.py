from __future__ import annotations

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm

from accounts.models import User
from security.identifiers import canonical_email


class LoginForm(AuthenticationForm):
    """Email and password; one message for every failure, so accounts cannot be enumerated."""

    error_messages = {
        "invalid_login": "The email or password is not right, or the account is not active yet.",
        "inactive": "The email or password is not right, or the account is not active yet.",
    }

    username = forms.EmailField(
        label="Email", max_length=254, widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )

    def clean_username(self) -> str:
        return canonical_email(self.cleaned_data["username"])


class SignUpForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    full_name = forms.CharField(label="Your name", max_length=200, required=False)
    account_name = forms.CharField(label="Company or team name", max_length=200)
    password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )

    def clean_email(self) -> str:
        return canonical_email(self.cleaned_data["email"])

    def clean(self) -> dict:
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            probe = User(email=cleaned.get("email", ""), full_name=cleaned.get("full_name", ""))
            try:
                password_validation.validate_password(password, probe)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class PasswordResetRequestForm(forms.Form):
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )

    def clean_email(self) -> str:
        return canonical_email(self.cleaned_data["email"])


class NewPasswordForm(forms.Form):
    """A new password typed twice, checked against the validators with the user it is for."""

    new_password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    new_password_confirmation = forms.CharField(
        label="New password again", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def __init__(self, user: User, *args: object, **kwargs: object) -> None:
        self.user = user
        super().__init__(*args, **kwargs)

    def clean(self) -> dict:
        cleaned = super().clean()
        password = cleaned.get("new_password")
        confirmation = cleaned.get("new_password_confirmation")
        if password and confirmation and password != confirmation:
            self.add_error("new_password_confirmation", "The two passwords do not match.")
        elif password:
            try:
                password_validation.validate_password(password, self.user)
            except forms.ValidationError as error:
                self.add_error("new_password", error)
        return cleaned


class PasswordChangeForm(NewPasswordForm):
    current_password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True})
    )

    field_order = ["current_password", "new_password", "new_password_confirmation"]
