"""The alerts app in the admin."""

from alerts import admin_notifications  # noqa: F401  (alerts and their notifications)
