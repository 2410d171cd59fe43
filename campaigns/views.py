"""Dashboard pages for campaigns."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.models import Role
from accounts.roles import require_role
from campaigns import services
from campaigns.forms import CampaignForm
from campaigns.models import Campaign
from campaigns.selectors import access_campaign, campaign_list


@require_role(Role.VIEWER)
def campaign_index(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status")
    if status not in Campaign.Status.values:
        status = None
    return render(
        request,
        "campaigns/campaign_index.html",
        {"campaigns": campaign_list(request.account, status=status), "status": status, "statuses": Campaign.Status},
    )


@require_role(Role.VIEWER)
def campaign_detail(request: HttpRequest, campaign_id: str) -> HttpResponse:
    campaign = access_campaign(request.account, campaign_id)
    return render(request, "campaigns/campaign_detail.html", {"campaign": campaign})


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def campaign_create(request: HttpRequest) -> HttpResponse:
    form = CampaignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        campaign = services.create_campaign(request.account, **form.cleaned_data)
        messages.success(request, f"Campaign “{campaign.name}” created.")
        return redirect("campaigns:detail", account_id=request.account.public_id, campaign_id=campaign.public_id)
    return render(request, "campaigns/campaign_form.html", {"form": form})


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def campaign_edit(request: HttpRequest, campaign_id: str) -> HttpResponse:
    campaign = access_campaign(request.account, campaign_id)
    form = CampaignForm(request.POST or None, initial={"name": campaign.name, "subject": campaign.subject})
    if request.method == "POST" and form.is_valid():
        try:
            services.update_campaign(request.account, campaign, **form.cleaned_data)
        except services.CampaignError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, "Campaign saved.")
            return redirect("campaigns:detail", account_id=request.account.public_id, campaign_id=campaign.public_id)
    return render(request, "campaigns/campaign_form.html", {"form": form, "campaign": campaign})
