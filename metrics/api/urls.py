from django.urls import path, re_path

from metrics.api import exposition, views

# With or without a trailing slash: scripts written for the original sampler use neither.
urlpatterns = [
    re_path(r"^health/?$", views.health, name="health"),
    re_path(r"^api/metrics/realtime/?$", views.RealtimeView.as_view(), name="realtime"),
    re_path(r"^api/stats/summary/?$", views.SummaryView.as_view(), name="summary"),
    re_path(r"^api/metrics/history/?$", views.HistoryView.as_view(), name="history"),
    re_path(r"^api/interfaces/?$", views.InterfacesView.as_view(), name="interfaces"),
    re_path(r"^api/hosts/?$", views.HostsView.as_view(), name="hosts"),
    re_path(r"^api/flows/top/?$", views.FlowsTopView.as_view(), name="flows-top"),
    re_path(r"^api/flows/live/?$", views.FlowsLiveView.as_view(), name="flows-live"),
    path("metrics", exposition.metrics_view, name="metrics"),
]
