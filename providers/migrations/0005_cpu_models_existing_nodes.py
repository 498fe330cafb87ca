from django.db import migrations


def forwards(apps, schema_editor):
    from providers.reference import load_reference_data

    load_reference_data(apps.get_model("providers", "GpuModel"), apps.get_model("providers", "Region"))
    # Nodes from before agents existed are demo nodes: no agent heartbeats for them, and their
    # providers' stake was not tracked, so keep them listed as they were.
    apps.get_model("providers", "Node").objects.filter(registered_at__isnull=True).update(
        is_simulated=True, stake_covered=True
    )


class Migration(migrations.Migration):
    dependencies = [("providers", "0004_liveness_tokens_stake")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
