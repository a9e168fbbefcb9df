"""Offices (each order and kiosk credential belongs to one) and the feeds' change sequence.

Rows that exist already go to the office ``main``; every order and enrollment gets a change number
so that a kiosk reading the feeds from the start sees them.
"""

import django.db.models.deletion
from django.db import migrations, models

FEED_POSITION = "Feed position of the row's last change (central.orders.feeds)."


def existing_rows_into_main_office(apps, schema_editor):  # type: ignore[no-untyped-def]
    office_model = apps.get_model("orders", "Office")
    counter_model = apps.get_model("orders", "ChangeCounter")
    main, _ = office_model.objects.get_or_create(code="main", defaults={"name": "Төв салбар"})
    apps.get_model("orders", "Order").objects.filter(office__isnull=True).update(office=main)
    apps.get_model("orders", "KioskCredential").objects.filter(office__isnull=True).update(office=main)
    value = 0
    for model_name in ("Order", "Enrollment"):
        model = apps.get_model("orders", model_name)
        for pk in model.objects.order_by("pk").values_list("pk", flat=True):
            value += 1
            model.objects.filter(pk=pk).update(change_seq=value)
    counter_model.objects.update_or_create(name="feeds", defaults={"value": value})


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0004_audit_links'),
    ]

    operations = [
        migrations.CreateModel(
            name='ChangeCounter',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=32, unique=True)),
                ('value', models.PositiveBigIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name='Office',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('code', models.SlugField(max_length=32, unique=True)),
                ('name', models.CharField(max_length=200)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.AddField(
            model_name='enrollment',
            name='change_seq',
            field=models.PositiveBigIntegerField(db_index=True, default=0, help_text=FEED_POSITION),
        ),
        migrations.AddField(
            model_name='enrollment',
            name='expiry_noticed_at',
            field=models.DateTimeField(blank=True, null=True,
                                       help_text='When the certificate entered its renewal window (feed event).'),
        ),
        migrations.AddField(
            model_name='order',
            name='change_seq',
            field=models.PositiveBigIntegerField(db_index=True, default=0, help_text=FEED_POSITION),
        ),
        migrations.AddField(
            model_name='kioskcredential',
            name='office',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name='kiosks', to='orders.office',
                                    help_text='The only office whose orders the kiosk sees; none: it sees nothing.'),
        ),
        migrations.AddField(
            model_name='order',
            name='office',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name='orders', to='orders.office'),
        ),
        migrations.RunPython(existing_rows_into_main_office, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='order',
            name='office',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='orders',
                                    to='orders.office'),
        ),
        migrations.AddIndex(
            model_name='order',
            index=models.Index(fields=['office', 'change_seq'], name='order_office_feed'),
        ),
    ]
