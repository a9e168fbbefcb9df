from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0003_inbox'),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditLink',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kiosk_id', models.CharField(max_length=64)),
                ('seq', models.PositiveBigIntegerField()),
                ('at', models.CharField(max_length=40)),
                ('kind', models.CharField(max_length=64)),
                ('session_id', models.CharField(blank=True, default='', max_length=64)),
                ('fields', models.JSONField()),
                ('prev', models.CharField(max_length=64)),
                ('hash', models.CharField(max_length=64)),
                ('received_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('kiosk_id', 'seq'), name='audit_link_once')],
            },
        ),
    ]
