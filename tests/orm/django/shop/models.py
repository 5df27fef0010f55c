from django.db import models


class Branch(models.Model):
    name = models.CharField(max_length=100, unique=True)
    city = models.CharField(max_length=100)


class Customer(models.Model):
    full_name = models.CharField(max_length=100)
    id_number = models.CharField(max_length=18, unique=True)
    mobile = models.CharField(max_length=20, null=True, blank=True)
    email = models.EmailField(null=True, blank=True)
    birth = models.DateField(null=True)
    annual_income = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    branch = models.ForeignKey(Branch, null=True, on_delete=models.SET_NULL)
    tier = models.CharField(max_length=10, default="standard", db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["full_name", "birth"])]


class Order(models.Model):
    class Status(models.TextChoices):
        NEW = "new"
        PAID = "paid"
        SHIPPED = "shipped"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="order_amount_not_negative")
        ]
