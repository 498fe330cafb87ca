"""Nodes registered before names came from token labels were named after the machine's hostname,
which renters see. Rename those (a name equal to the hostname, or the hostname with a "-N" suffix)
to their token's label, or "node-<id>" when no token is left. Names a provider set otherwise stay."""

import re

from django.db import migrations


def _unique(Node, provider_id, label, node_id):
    base = (" ".join(label.split()) or f"node-{node_id}")[:70]
    name, suffix = base, 2
    while Node.objects.filter(provider_id=provider_id, name=name).exclude(id=node_id).exists():
        name = f"{base}-{suffix}"
        suffix += 1
    return name


def names_from_token_labels(apps, schema_editor):
    Node = apps.get_model("providers", "Node")
    NodeToken = apps.get_model("providers", "NodeToken")
    nodes = Node.objects.exclude(hostname="").values_list("id", "provider_id", "name", "hostname")
    for node_id, provider_id, name, hostname in nodes.iterator():
        base = hostname[:70]
        if name != base and not re.fullmatch(re.escape(base) + r"-[0-9]+", name):
            continue
        label = (
            NodeToken.objects.filter(node_id=node_id)
            .order_by("-created_at", "-id")
            .values_list("label", flat=True)
            .first()
        )
        Node.objects.filter(id=node_id).update(name=_unique(Node, provider_id, label or "", node_id))


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0008_node_disabled"),
    ]

    operations = [
        migrations.RunPython(names_from_token_labels, migrations.RunPython.noop),
    ]
