"""Wire-shape fixes for pulumiverse-talos 0.8.1 under Python.

Resource inputs are translated to the provider's camelCase names by the SDK, but nested output
objects passed into *invokes* (`Secrets.machine_secrets` into `machine.get_configuration`,
`Secrets.client_configuration` into `client.get_configuration` / `cluster.get_health`) are sent
with their Python snake_case keys, which the provider does not read (`k8s_aggregator` instead of
`k8sAggregator`): pulumiverse/pulumi-talos#93. Every nested object headed for a provider call goes
through `to_wire` first; the graph tests check what the mocks receive.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import pulumi


def camel(name: str) -> str:
    """`k8s_aggregator` -> `k8sAggregator`; names without underscores are unchanged."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_wire(value: Any) -> Any:
    """A plain copy of `value` with every mapping key in the provider's camelCase."""
    if isinstance(value, Mapping):
        return {camel(str(k)): to_wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    return value


def secret_wire(value: pulumi.Output[Any]) -> pulumi.Output[Any]:
    """`to_wire` under an Output, marked secret: these are credentials, and additionalSecretOutputs
    on their resource is enforced by the engine only, not by every runtime that evaluates us."""
    return pulumi.Output.secret(value.apply(to_wire))


def after(resource: pulumi.CustomResource, value: str) -> pulumi.Output[str]:
    """`value`, known from the spec, carried through `resource`: whatever reads it depends on the
    resource (a data edge, not a depends_on) and waits until it exists."""
    return resource.id.apply(functools.partial(_constant, value))


def _constant(value: str, _: object) -> str:
    return value
