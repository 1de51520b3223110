"""Webhook endpoints in the console: the tenant's endpoints with their last deliveries (every member reads), and for
its admins the forms to add one (its signing secret shown once), rotate its secret, send it a test event and
delete it. The same writes as ``/v1/webhook_endpoints`` (``accounts.webhooks``), the same checks of the URL."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts import webhooks
from accounts.models import WebhookEndpoint
from hub.console.scoping import TenantScopedView
from hub.webhooks import addresses, sender

_TYPES = [(kind, kind) for kind in webhooks.EVENT_TYPES]


class EndpointForm(forms.Form):
    name = forms.CharField(max_length=webhooks.MAX_NAME)
    url = forms.CharField(label="URL", max_length=webhooks.MAX_URL, help_text="http:// or https://")
    event_types = forms.MultipleChoiceField(label="Events", choices=_TYPES, widget=forms.CheckboxSelectMultiple)

    def clean_url(self) -> str:
        problem = addresses.url_problem(self.cleaned_data["url"])
        if problem is not None:
            raise forms.ValidationError(problem)
        return self.cleaned_data["url"]


class WebhooksView(TenantScopedView):
    """``/console/t/<tenant>/webhooks/``: the endpoints and their deliveries; POST adds one."""

    section = "webhooks"

    def get(self, request: HttpRequest, tenant: str) -> HttpResponse:
        return self.render_page(EndpointForm())

    def post(self, request: HttpRequest, tenant: str) -> HttpResponse:
        form = EndpointForm(request.POST)
        if not form.is_valid():
            return self.render_page(form)
        try:
            endpoint, secret = webhooks.create(self.tenant.id, **form.cleaned_data)
        except webhooks.TooManyEndpoints:
            form.add_error(None, f"A tenant may have at most {webhooks.MAX_ENDPOINTS} webhook endpoints.")
            return self.render_page(form)
        return render(request, "console/webhook_secret.html", self.get_context_data(endpoint=endpoint, secret=secret))

    def render_page(self, form: EndpointForm) -> HttpResponse:
        endpoints = list(WebhookEndpoint.objects.filter(tenant=self.tenant).order_by("-created_at", "-id"))
        recent = webhooks.recent([e.pk for e in endpoints])
        rows = [(e, webhooks.secret_hint(e), recent[e.pk]) for e in endpoints]
        context = self.get_context_data(form=form, rows=rows, types=_TYPES)
        return render(self.request, "console/webhooks.html", context)


class WebhookActionView(TenantScopedView):
    """POST ``/console/t/<tenant>/webhooks/<id>/<action>/``: ``rotate`` (the new secret shown once; ``keep_old``
    keeps the old one signing for 24 hours), ``test`` (a sample ``event_type`` sent now) or ``delete``."""

    http_method_names = ["post"]
    section = "webhooks"

    def post(self, request: HttpRequest, tenant: str, endpoint_id: str, action: str) -> HttpResponse:
        endpoint = webhooks.find(self.tenant.id, endpoint_id)
        if endpoint is None or action not in ("rotate", "test", "delete"):
            raise Http404("no such webhook endpoint")
        if action == "rotate":
            endpoint, secret = webhooks.rotate(self.tenant.id, endpoint.pk, keep_old=bool(request.POST.get("keep_old")))
            context = self.get_context_data(endpoint=endpoint, secret=secret, rotated=True)
            return render(request, "console/webhook_secret.html", context)
        if action == "delete":
            webhooks.delete(self.tenant.id, endpoint.pk)
            messages.success(request, f"Webhook endpoint {endpoint.name} deleted.")
        else:
            self._test(request, endpoint)
        return redirect("console:webhooks", tenant=self.tenant.slug)

    @staticmethod
    def _test(request: HttpRequest, endpoint: WebhookEndpoint) -> None:
        kind = request.POST.get("event_type")
        if kind not in webhooks.EVENT_TYPES:
            messages.error(request, "Choose an event type to send.")
            return
        try:
            status = sender.send_sample(endpoint, kind)
        except sender.Unreachable as failed:
            messages.error(request, f"A test {kind} could not reach {endpoint.name}: {failed}")
            return
        (messages.success if 200 <= status < 300 else messages.error)(
            request, f"A test {kind} was sent to {endpoint.name}: it answered HTTP {status}."
        )
