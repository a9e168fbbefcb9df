from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0009_trust_anchors'),
    ]

    operations = [
        migrations.AddField(
            model_name='auditfork',
            name='signature',
            field=models.TextField(blank=True, default='', help_text="The kiosk key's signature of the rejoin entry (base64 DER ECDSA over kiosk.audit.rejoin_message)."),
        ),
        migrations.AddField(
            model_name='auditfork',
            name='signer_certificate',
            field=models.TextField(blank=True, default='', help_text='The kiosk certificate (PEM) verifying it.'),
        ),
    ]
