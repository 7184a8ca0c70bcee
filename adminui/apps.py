from django.apps import AppConfig


class AdminUIConfig(AppConfig):
    name = "adminui"
    verbose_name = "Proxy administration"
