"""``python manage.py serve``: migrate, set up the demo on first start, print how to call it, serve."""

from __future__ import annotations

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from hub.bootstrap import ADMIN_USERNAME, DEMO_TENANT, bootstrap
from hub.env import env_str

SNIPPET = """\
from openai import OpenAI
client = OpenAI(base_url="{base_url}", api_key="{key}")
for model in client.models.list().data:
    print(model.id, model.meta_data)
print(client.models.retrieve("smollm2-135m-instruct"))"""


class Command(BaseCommand):
    help = "Start the hub (embedded default: SQLite, in-process fallbacks) on HUB_HOST:HUB_PORT."

    def add_arguments(self, parser):
        parser.add_argument("--no-bootstrap", action="store_true", help="skip migrations and demo set-up")

    def handle(self, no_bootstrap, **options):
        base_url = settings.HUB_PUBLIC_URL.rstrip("/") + "/v1"
        first = None
        if not no_bootstrap:
            call_command("migrate", interactive=False, verbosity=0)
            inference_url = env_str("HUB_INFERENCE_URL", "http://127.0.0.1:8100/v1")
            first = bootstrap(inference_url)
        out = self.stdout.write
        out("")
        out(f"LLM Hub: {settings.HUB_PUBLIC_URL}")
        out(f"  base_url     {base_url}")
        if first:
            out(f"  api_key      {first.api_key}")
            out("               (shown once: only its hash is stored; save it now)")
            password = first.admin_password or "(from HUB_ADMIN_PASSWORD)"
            out(f"  admin        {settings.HUB_PUBLIC_URL}/admin/  user {ADMIN_USERNAME}  password {password}")
            key = first.api_key
        else:
            out("  api_key      the demo key was printed on first start; issue another with")
            out(f"               .venv/bin/python manage.py create_api_key {DEMO_TENANT}")
            out(f"  admin        {settings.HUB_PUBLIC_URL}/admin/")
            key = "YOUR_KEY"
        out("")
        out("Call it with the OpenAI SDK (pip install openai):")
        out("")
        out(SNIPPET.format(base_url=base_url, key=key))
        out("")
        self.stdout.flush()
        uvicorn.run(
            "hub.asgi:application",
            host=settings.HUB_HOST,
            port=settings.HUB_PORT,
            lifespan="off",
            log_level=settings.LOG_LEVEL.lower(),
            proxy_headers=True,
        )
