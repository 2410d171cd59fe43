"""The project's URLs, plus the peer's list."""

from django.urls import path

from bench.naive_api.views import NaiveContactList
from bluespark.urls import urlpatterns as project_urlpatterns

NAIVE_PATH = "bench/naive/contacts/"

urlpatterns = [path(NAIVE_PATH, NaiveContactList.as_view(), name="bench-naive-contact-list"), *project_urlpatterns]
