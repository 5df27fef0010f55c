"""A data migration as applications write them: ORM reads and writes inside
the migration's transaction, after its DDL, plus raw SQL."""
from django.db import migrations


def backfill_tier(apps, schema_editor):
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.filter(annual_income__gte=100000).update(tier="gold")
    for c in Customer.objects.filter(email__isnull=True).only("id", "full_name"):
        c.email = f"customer{c.id}@example.com"
        c.save(update_fields=["email"])


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_contact_and_tier")]

    operations = [
        migrations.RunPython(backfill_tier, migrations.RunPython.noop),
        migrations.RunSQL(
            "CREATE VIEW shop_customer_summary AS "
            "SELECT c.id, c.full_name, c.tier, count(o.id) AS orders "
            "FROM shop_customer c LEFT JOIN shop_order o ON o.customer_id = c.id "
            "GROUP BY c.id",
            "DROP VIEW shop_customer_summary",
        ),
    ]
