from django.core.management.base import BaseCommand
from django.db import transaction
from simple_history.utils import bulk_create_with_history

from mappings.models import CarrierMapping, Channel, MarketMapping, ShippingMethodMapping, SkuMapping
from syncs.sandbox.fulfil import FulfilSimulator
from syncs.sandbox.world import MARKETS, generate


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
        # The marketplace's standard and express too; its pick-up points are left unmapped on purpose.
        for method, option in (("STANDARD", "standard"), ("EXPRESS", "express")):
            ShippingMethodMapping.objects.update_or_create(
                system="marketplace", source_method=method, defaults={"centra_shipping_option": option}
            )
        for system in ("virtualstock", "marketplace"):
            for carrier, service, code in (("DHL", "", "dhl"), ("UPS", "", "ups"), ("DPD", "", "dpd")):
                CarrierMapping.objects.update_or_create(
                    system=system, centra_carrier=carrier, centra_service=service, defaults={"target_code": code}
                )
        # The web store's markets sell through Fulfil's web channel from the main warehouse (the sandbox's own ids);
        # the wholesale store is left unmapped.
        fulfil = FulfilSimulator().state
        main = next(row["id"] for row in fulfil["records"]["stock.location"].values() if row.get("code") == "MAIN")
        channel = min(int(key) for key in fulfil["records"]["sale.channel"])
        for market in MARKETS:
            MarketMapping.objects.update_or_create(
                centra_store_id=1,
                centra_market_id=market["id"],
                defaults={
                    "label": f"Retail {market['name']}",
                    "currency": market["currency"],
                    "fulfil_channel_id": channel,
                    "fulfil_warehouse_id": main,
                },
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
        self.stdout.write(
            f"Demo set up: 3 channels, {len(new)} new SKU mappings, shipping, carrier and market mappings."
        )
