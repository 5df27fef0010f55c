"""Reads and writes through the Django ORM as an application would; prints one
JSON object with what the client received, for tests/orm.rs to check."""
import datetime
import decimal
import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orm_site.settings")
import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402
from django.db.models import Count, Sum  # noqa: E402

from shop.models import Branch, Customer, Order  # noqa: E402

out = {}
id_number = sys.argv[1]
mobile = sys.argv[2]
with transaction.atomic():
    branch, _ = Branch.objects.get_or_create(name="West Lake", defaults={"city": "Hangzhou"})
    c = Customer.objects.create(
        full_name="王小明",
        id_number=id_number,
        mobile=mobile,
        birth=datetime.date(1985, 10, 21),
        annual_income=decimal.Decimal("150000.00"),
        branch=branch,
    )
    Order.objects.create(customer=c, amount=decimal.Decimal("99.50"), status=Order.Status.PAID)
    Order.objects.create(customer=c, amount=decimal.Decimal("10.00"))
out["created_id"] = c.id

got = Customer.objects.select_related("branch").get(pk=c.id)
out["read"] = {
    "full_name": got.full_name,
    "id_number": got.id_number,
    "mobile": got.mobile,
    "birth": got.birth.isoformat() if got.birth else None,
    "branch": got.branch.city,
}
# Equality lookups on a protected column, as a login or search form does.
out["found_by_id_number"] = Customer.objects.filter(id_number=id_number).exists()
out["values_list"] = list(Customer.objects.filter(pk=c.id).values_list("id_number", flat=True))
out["orders"] = [
    {"amount": str(o.amount), "status": o.status, "customer_mobile": o.customer.mobile}
    for o in Order.objects.select_related("customer").filter(customer__id_number=id_number).order_by("id")
]
out["total"] = str(Order.objects.filter(customer=c).aggregate(s=Sum("amount"))["s"])
out["per_customer"] = [
    [row["id"], row["n"]] for row in Customer.objects.annotate(n=Count("orders")).values("id", "n").order_by("id")
]
# Partial update of an unprotected field, then of a protected one.
Customer.objects.filter(pk=c.id).update(tier="platinum")
got.email = "wang@example.com"
got.save(update_fields=["email"])
with transaction.atomic():
    streamed = [x.id for x in Customer.objects.all().order_by("id").iterator(chunk_size=2)]
out["streamed"] = len(streamed)
Order.objects.filter(customer=c, status=Order.Status.NEW).delete()
out["orders_left"] = Order.objects.filter(customer=c).count()
print(json.dumps(out, ensure_ascii=False))
