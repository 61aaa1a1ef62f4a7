from django.core.management.base import BaseCommand
from django.db import transaction
from simple_history.utils import bulk_create_with_history

from mappings.models import CarrierMapping, Channel, ShippingMethodMapping, SkuMapping
from syncs.sandbox.world import generate


class Command(BaseCommand):
    help = (
        "Set Switchyard up for the sandbox's demo brand: channels, and most — deliberately not all — of the "
        "mappings, so the queue shows the exceptions a real brand meets. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=42, help="The sandbox's seed (the same demo brand).")
        parser.add_argument("--products", type=int, default=200)

    @transaction.atomic
    def handle(self, *args, seed: int, products: int, **options):
        world = generate(seed=seed, products=products)
        Channel.objects.update_or_create(
            code="john-lewis",
            defaults={"name": "John Lewis (Virtualstock)", "system": "virtualstock", "centra_market_id": 3},
        )
        Channel.objects.update_or_create(
            code="marketplace", defaults={"name": "Marketplace", "system": "marketplace", "centra_market_id": 2}
        )
        Channel.objects.update_or_create(code="centra", defaults={"name": "Centra web shop", "system": "centra"})
        # Retailers order standard and express; nominated-day delivery is left unmapped on purpose.
        for method, option in (("standard", "standard"), ("express", "express")):
            ShippingMethodMapping.objects.update_or_create(
                system="virtualstock", source_method=method, defaults={"centra_shipping_option": option}
            )
        for carrier, service, code in (("DHL", "", "dhl"), ("UPS", "", "ups"), ("DPD", "", "dpd")):
            CarrierMapping.objects.update_or_create(
                system="virtualstock", centra_carrier=carrier, centra_service=service, defaults={"target_code": code}
            )
        new = []
        for system in ("virtualstock", "marketplace"):
            known = set(SkuMapping.objects.filter(system=system).values_list("centra_sku", flat=True))
            new += [
                SkuMapping(system=system, centra_sku=size.sku, external_code=size.sku, ean=size.ean)
                for _, _, size in world.sizes()
                if size.sku not in known
            ]
        bulk_create_with_history(new, SkuMapping, batch_size=1000)
        self.stdout.write(f"Demo set up: 3 channels, {len(new)} new SKU mappings, shipping and carrier mappings.")
