"""The floor `make bench` compares the program with: the same desired state registered under the
same mocks as tests/harness.py's run_program, with every dependency edge left out.

Each record of talos_fleet.desired.desired_state(fleet) is registered with its own type, name,
inputs and options, but no parent, no depends_on, no provider reference and no Output read from
another resource: a placeholder stays its own text, and a value holding a secret placeholder is
wrapped secret (an Output of a constant, which carries no dependency). Components are bare
ComponentResources with no children; provider calls (`data` records) are invokes made the way the
components make them (invoke_output). What separates the program from its floor is then the
Pulumi SDK's cost per edge: each new dependency runs a walk of the target's ancestry
(pulumi/pulumi v3.259.0:sdk/python/lib/pulumi/runtime/resource_cycle_breaker.py, called from
rpc.py _add_dependency for every depends_on and every resource an input reads; the installed
3.272.0 is the same, docs/design/issue-13-rollouts-research.md D.1). A secret constant carries
no resource (Output.secret is Output.from_input of the value, marked secret: sdk/python/lib/
pulumi/output.py at the same tag), so it costs the secret wrapping and no walk.

The generic resources skip the provider SDKs' own argument classes and the secret outputs those
add (tests/test_bench.py allows exactly that difference): the floor is, if anything, a little
lower than a floor built with the SDK classes.

The floor loads the spec and computes the desired state inside the measured run, as the program
does: the pure core is the program's own work, not the graph's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from talos_fleet import desired
from talos_fleet.loader import load_pulumi_config
from tests.harness import Run, run_under_mocks

PROVIDER_PREFIX = "provider:"


def floor_value(value: Any) -> Any:
    """`value` with no edge: placeholders as plain text, secret ones marked secret."""
    if isinstance(value, Mapping):
        return {k: floor_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [floor_value(v) for v in value]
    if isinstance(value, str) and any(kind == "secret" for kind, _ in desired.tokens(value)):
        return pulumi.Output.secret(value)
    return value


def floor_options(resource: desired.Resource) -> pulumi.ResourceOptions:
    """The options of components/wire.py Wiring.options without parent, provider and depends_on."""
    return pulumi.ResourceOptions(
        protect=resource.protect or None,
        delete_before_replace=resource.delete_before_replace or None,
        ignore_changes=list(resource.ignore_changes) or None,
        additional_secret_outputs=list(resource.additional_secret_outputs) or None,
        # An alias names the component the resource was created under: a URN, not an edge.
        aliases=[_alias(a) for a in resource.aliases] or None,
    )


def _alias(text: str) -> pulumi.Alias:
    kind, name = text.removeprefix("parent:").split(":", 1)
    return pulumi.Alias(parent=pulumi.create_urn(name, desired.KINDS[kind]))


def register(state: desired.DesiredState) -> None:
    """Register every record of `state` with no dependency edge between any two of them."""
    for record in state.resources:
        if record.data:
            pulumi.runtime.invoke_output(record.type, floor_value(record.inputs))
        elif record.kind in desired.COMPONENTS:
            # The components register with no inputs (props None) and end with register_outputs.
            component = pulumi.ComponentResource(record.type, record.name, None, floor_options(record))
            component.register_outputs({})
        elif record.kind.startswith(PROVIDER_PREFIX):
            pulumi.ProviderResource(
                record.kind.removeprefix(PROVIDER_PREFIX),
                record.name,
                floor_value(record.inputs),
                floor_options(record),
            )
        else:
            pulumi.CustomResource(record.type, record.name, floor_value(record.inputs), floor_options(record))


def run_floor(config: Mapping[str, str], secret_keys: list[str] | None = None) -> Run:
    """The floor of run_program(config, secret_keys): load, compute the desired state, register it
    edge-free under fresh mocks of the same kind (tests/harness.py run_under_mocks, as the
    program runs); wait for everything."""

    def body() -> None:
        register(desired.desired_state(load_pulumi_config(config, secret_keys or [])))

    run, error = run_under_mocks(config, secret_keys, body)
    if error is not None:
        raise error
    return run
