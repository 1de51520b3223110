from accounts.management.commands._base import OperatorCommand
from accounts.models import ServedModel


class Command(OperatorCommand):
    help = "List the served-model catalog, one model id per line in the first column."

    def handle(self, **options):
        for model in ServedModel.objects.prefetch_related("deployments", "fallback_links"):
            deployments = ",".join(d.base_url for d in model.deployments.all() if d.enabled) or "-"
            fallbacks = ",".join(link.fallback_id + (f"({link.on})" if link.on != "any" else "")
                                 for link in model.fallback_links.all())  # fmt: skip
            self.stdout.write(
                f"{model.id}\t{model.kind}\t{'enabled' if model.enabled else 'disabled'}\t"
                f"seq={model.max_sequence_length}\tout={model.max_output_length}\thidden={model.hidden_size}\t{deployments}"
                + (f"\tfallbacks={fallbacks}" if fallbacks else "")
            )
