"""Tenants as metric labels: any producer writes a tenant, so past MAX_TENANT_LABELS made-up
ones share one label, while the tenants the settings name keep their own."""

from __future__ import annotations

from workers.metrics import MAX_TENANT_LABELS, OTHER_TENANTS, WorkerMetrics
from workers.settings import FairnessSettings, TenantSettings, WorkerSettings


def _queued(metrics: WorkerMetrics, tenant: str) -> float | None:
    return metrics.registry.get_sample_value(
        "fleet_tenant_jobs_queued", {"kind": "generate", "lane": "interactive", "tenant": tenant}
    )


def test_made_up_tenants_past_the_cap_share_one_label_and_named_ones_keep_theirs() -> None:
    settings = WorkerSettings(
        tenants={"acme": TenantSettings(max_in_flight=2)},
        fairness=FairnessSettings(weights={"globex": 2.0}),
    )
    assert settings.named_tenants() == {"acme", "globex"}
    metrics = WorkerMetrics("generate", settings.named_tenants())
    for i in range(MAX_TENANT_LABELS + 10):
        metrics.tenant("interactive", f"made-up-{i}").queued.inc()
    metrics.tenant("interactive", "acme").queued.inc()
    metrics.tenant("interactive", "globex").queued.inc()
    metrics.tenant("interactive", "made-up-0").queued.inc()  # labelled before the cap

    assert _queued(metrics, OTHER_TENANTS) == 10
    assert _queued(metrics, f"made-up-{MAX_TENANT_LABELS}") is None
    assert _queued(metrics, "made-up-0") == 2
    assert (_queued(metrics, "acme"), _queued(metrics, "globex")) == (1, 1)
    labels = {
        sample.labels["tenant"]
        for family in metrics.registry.collect()
        if family.name == "fleet_tenant_jobs_queued"
        for sample in family.samples
    }
    assert len(labels) == MAX_TENANT_LABELS + 3  # the cap, the named two, the rest as one
