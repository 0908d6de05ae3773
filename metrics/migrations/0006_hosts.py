"""Hosts: every run, sample, rollup and flow minute is tagged with the host that wrote it.

Before this, a database held the rows of one machine only (a fleet's central database is new),
so every existing row goes to one host: this machine's id (settings.NETMETRICS_HOST_ID), named
as its latest run was.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TAGGED = ("samplerrun", "sample", "minuterollup", "hourrollup", "flowminute")


def tag_existing_rows(apps, schema_editor):
    SamplerRun = apps.get_model("metrics", "SamplerRun")
    latest = SamplerRun.objects.order_by("-started_at").first()
    if latest is None:
        return
    Host = apps.get_model("metrics", "Host")
    host, _ = Host.objects.get_or_create(
        id=settings.NETMETRICS_HOST_ID, defaults={"name": latest.hostname}
    )
    for name in TAGGED:
        apps.get_model("metrics", name).objects.update(host=host)


def host_field(null: bool, related_name: str = "+") -> models.ForeignKey:
    return models.ForeignKey(
        null=null,
        on_delete=django.db.models.deletion.CASCADE,
        related_name=related_name,
        to="metrics.host",
        db_index=related_name != "+",
    )


class Migration(migrations.Migration):
    dependencies = [("metrics", "0005_run_kernel_token")]

    operations = [
        migrations.CreateModel(
            name="Host",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                (
                    "name",
                    models.CharField(
                        help_text="NETMETRICS_HOST_NAME, else its hostname", max_length=255
                    ),
                ),
                ("first_seen", models.DateTimeField(auto_now_add=True)),
                (
                    "backlog",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="ticks its sampler spooled while this database did not "
                        "answer and has yet to write: catching up while not 0",
                    ),
                ),
            ],
            options={"ordering": ["name"]},
        ),
        *(
            migrations.AddField(
                model_name=name,
                name="host",
                field=host_field(True, "runs" if name == "samplerrun" else "+"),
            )
            for name in TAGGED
        ),
        migrations.RunPython(tag_existing_rows, migrations.RunPython.noop),
        *(
            migrations.AlterField(
                model_name=name,
                name="host",
                field=host_field(False, "runs" if name == "samplerrun" else "+"),
            )
            for name in TAGGED
        ),
        migrations.RemoveField(model_name="samplerrun", name="hostname"),
        migrations.RemoveIndex(model_name="sample", name="metrics_sam_interfa_6801b1_idx"),
        migrations.AddIndex(
            model_name="sample",
            index=models.Index(fields=["host", "interface", "start"], name="sample_series"),
        ),
        migrations.RemoveIndex(model_name="flowminute", name="metrics_flo_interfa_cef98c_idx"),
        migrations.AddIndex(
            model_name="flowminute",
            index=models.Index(fields=["host", "interface", "start"], name="flowminute_series"),
        ),
        migrations.RemoveConstraint(model_name="minuterollup", name="minute_bucket"),
        migrations.AddConstraint(
            model_name="minuterollup",
            constraint=models.UniqueConstraint(
                fields=("host", "interface", "start"), name="minute_bucket"
            ),
        ),
        migrations.RemoveConstraint(model_name="hourrollup", name="hour_bucket"),
        migrations.AddConstraint(
            model_name="hourrollup",
            constraint=models.UniqueConstraint(
                fields=("host", "interface", "start"), name="hour_bucket"
            ),
        ),
    ]
