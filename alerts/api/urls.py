from django.urls import re_path

from alerts.api import views

# With or without a trailing slash, as the rest of the API.
urlpatterns = [
    re_path(r"^api/alerts/?$", views.AlertsView.as_view(), name="alerts"),
    re_path(r"^api/alerts/rules/?$", views.AlertRulesView.as_view(), name="alert-rules"),
]
