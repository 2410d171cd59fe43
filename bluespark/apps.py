from django.apps import AppConfig


class BluesparkConfig(AppConfig):
    name = "bluespark"
    verbose_name = "Bluespark"
