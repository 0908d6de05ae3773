from django.urls import re_path

from usage import views

# With or without a trailing slash, as metrics.api.urls.
urlpatterns = [
    re_path(r"^api/stats/usage/?$", views.UsageView.as_view(), name="usage"),
    re_path(r"^api/stats/percentile/?$", views.PercentileView.as_view(), name="percentile"),
]
