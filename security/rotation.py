"""Re-sealing rows under their scope's newest data key, one locked batch at a time."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models, transaction
from django.db.models import Case, Value, When

from security.fields import EncryptedTextField, encrypted_fields, reseal


@dataclass(frozen=True)
class BatchResult:
    last_pk: int | None
    examined: int
    resealed: int


def models_with_encrypted_fields(candidates: list[type[models.Model]]) -> list[type[models.Model]]:
    return sorted(
        (model for model in candidates if encrypted_fields(model)),
        key=lambda model: model._meta.label,
    )


def reseal_batch(queryset: models.QuerySet, *, after_pk: int | None, batch_size: int) -> BatchResult:
    """Re-seal the next ``batch_size`` rows of ``queryset`` after ``after_pk``.

    The rows are locked while they are re-sealed (``SELECT … FOR UPDATE``), so
    a concurrent edit is neither lost nor overwritten with the old value.
    Only the encrypted columns are written: ``updated_at`` and blind indexes
    keep their values.
    """
    model = queryset.model
    fields = encrypted_fields(model)
    with transaction.atomic(using=queryset.db):
        batch = queryset.select_for_update()
        if after_pk is not None:
            batch = batch.filter(pk__gt=after_pk)
        rows = list(batch.order_by("pk")[:batch_size])
        changed = []
        for row in rows:
            resealed = [field for field in fields if reseal(row, field)]
            if resealed:
                changed.append(row)
        if changed:
            _write_sealed(model, changed, fields, using=queryset.db)
    return BatchResult(rows[-1].pk if rows else None, len(rows), len(changed))


def _write_sealed(
    model: type[models.Model], rows: list[models.Model], fields: list[EncryptedTextField], *, using: str
) -> None:
    """One UPDATE … CASE for the batch (what bulk_update does), from the sealed values on the rows.

    bulk_update itself reads attributes, which open sealed values; this reads
    the stored ciphertext from each instance instead.
    """
    changes = {
        field.attname: Case(
            *[When(pk=row.pk, then=Value(row.__dict__[field.attname], output_field=field)) for row in rows],
            output_field=field,
        )
        for field in fields
    }
    model._base_manager.using(using).filter(pk__in=[row.pk for row in rows]).update(**changes)
