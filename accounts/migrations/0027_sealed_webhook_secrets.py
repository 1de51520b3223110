"""Webhook endpoints' signing secrets sealed (accounts/sealed.py): room for the sealed form, and the secrets written
before sealed in place (opened again on the way back)."""

from django.db import migrations, models


def seal(apps, schema_editor):
    from accounts import sealed

    for endpoint in apps.get_model("accounts", "WebhookEndpoint").objects.all():
        endpoint.secret, endpoint.previous_secret = sealed.reseal(endpoint.secret), sealed.reseal(endpoint.previous_secret)
        endpoint.save(update_fields=["secret", "previous_secret"])


def unseal(apps, schema_editor):
    from accounts import sealed

    for endpoint in apps.get_model("accounts", "WebhookEndpoint").objects.all():
        endpoint.secret, endpoint.previous_secret = sealed.unseal(endpoint.secret), sealed.unseal(endpoint.previous_secret)
        endpoint.save(update_fields=["secret", "previous_secret"])


class Migration(migrations.Migration):
    dependencies = [("accounts", "0026_webhooks")]

    operations = [
        migrations.AlterField(model_name="webhookendpoint", name="secret", field=models.CharField(max_length=512)),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="previous_secret",
            field=models.CharField(blank=True, default="", max_length=512),
        ),
        migrations.RunPython(seal, unseal),
    ]
