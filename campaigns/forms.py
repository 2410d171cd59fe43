from django import forms


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=200)
    subject = forms.CharField(max_length=998, required=False)
