from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0007_authentication_certificate'),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditFork',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kiosk_id', models.CharField(max_length=64)),
                ('parent', models.PositiveIntegerField(help_text="The branch the kiosk's entries left.")),
                ('seq', models.PositiveBigIntegerField(help_text='The first entry differing from, or not following, the held one.')),
                ('base_hash', models.CharField(help_text='The held hash of entry seq - 1, which both chains share.', max_length=64)),
                ('held_hash', models.CharField(blank=True, default='', help_text='The held entry seq, if any.', max_length=64)),
                ('offered_hash', models.CharField(max_length=64)),
                ('detected_at', models.DateTimeField(auto_now_add=True)),
                ('refusals', models.PositiveIntegerField(default=1)),
                ('branch', models.PositiveIntegerField(blank=True, null=True)),
                ('head_seq', models.PositiveBigIntegerField(blank=True, help_text="The parent's head at the rejoin.", null=True)),
                ('head_hash', models.CharField(blank=True, default='', max_length=64)),
                ('reason', models.TextField(blank=True, default='')),
                ('technician', models.CharField(blank=True, default='', max_length=100)),
                ('rejoin_seq', models.PositiveBigIntegerField(blank=True, null=True)),
                ('rejoin_hash', models.CharField(blank=True, default='', max_length=64)),
                ('rejoined_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.RemoveConstraint(
            model_name='auditlink',
            name='audit_link_once',
        ),
        migrations.AddField(
            model_name='auditlink',
            name='branch',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddConstraint(
            model_name='auditlink',
            constraint=models.UniqueConstraint(fields=('kiosk_id', 'branch', 'seq'), name='audit_link_once'),
        ),
    ]
