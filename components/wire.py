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
import json
import re
from collections.abc import Mapping
from typing import Any

import pulumi
import yaml

from talos_fleet import desired


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


# ---------------------------------------------------------------------------------------------
# The desired state (talos_fleet.desired), wired to Pulumi


class Wiring:
    """Resolves the desired state's placeholders to Outputs and its options to ResourceOptions.

    Components register every resource they create here (and the outputs that others read), in
    the desired state's order, so a placeholder always names something already registered."""

    def __init__(self, secrets: Mapping[str, str], project_directory: str) -> None:
        self.resources: dict[str, pulumi.Resource] = {}
        self.outputs: dict[str, pulumi.Output[Any]] = {}
        """Secret outputs by `KIND:NAME.OUTPUT`."""
        self.factory: dict[str, pulumi.Output[Any]] = {}
        """Image Factory URLs (GetUrlsUrlsResult) by `CLUSTER/ARCH`."""
        self._secrets = secrets
        self._directory = project_directory
        self._resolved: dict[str, Any] = {}
        """Each text with placeholders resolved once: a node's patches reach both its apply and
        the config rollout, and one Output can feed both."""

    def add(self, resource: desired.Resource, created: pulumi.Resource) -> None:
        self.resources[resource.key] = created

    def inputs(self, resource: desired.Resource) -> dict[str, Any]:
        """The resource's inputs, each placeholder replaced by what it stands for."""
        return {k: self.value(v) for k, v in resource.inputs.items()}

    def value(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if not isinstance(value, str) or not desired.TOKEN.search(value):
            return value
        if value not in self._resolved:
            self._resolved[value] = self._text(value)
        return self._resolved[value]

    def _text(self, value: str) -> Any:
        whole = desired.TOKEN.fullmatch(value)
        if whole:
            return self._token(whole.group(1), whole.group(2))
        parts = desired.TOKEN.split(value)
        # split keeps the two groups of each match: text, kind, body, text, kind, body, ..., text
        pieces: list[Any] = []
        for i in range(0, len(parts), 3):
            pieces.append(parts[i])
            if i + 2 < len(parts):
                kind, body = parts[i + 1], parts[i + 2]
                resolved = self._token(kind, body)
                # A secret inside a YAML patch goes in as the YAML scalar its value is.
                pieces.append(pulumi.Output.from_input(resolved).apply(yaml_scalar) if kind == "secret" else resolved)
        return pulumi.Output.all(*pieces).apply(lambda got: "".join(str(p) for p in got))

    def _token(self, kind: str, body: str) -> Any:
        if kind == "local":
            return self._directory
        if kind == "id":
            return self._custom(body).id
        if kind == "via":
            name, value = body.split("|", 1)
            return after(self._custom(name), value)
        if kind == "factory":
            what, rest = body.split(":", 1)
            where = rest.split("@", 1)[0]
            urls = self.factory[where]
            if what == "initramfs-file":
                return urls.apply(lambda u: str(u.initramfs).rsplit("/", 1)[-1])
            return urls.apply(functools.partial(_attribute, what))
        if body in self.outputs:
            return self.outputs[body]
        return pulumi.Output.secret(self._secrets[body])

    def _custom(self, key: str) -> pulumi.CustomResource:
        resource = self.resources[key]
        if not isinstance(resource, pulumi.CustomResource):
            raise TypeError(f"{key} is a component: it has no id to read")
        return resource

    def options(self, resource: desired.Resource, parent: pulumi.Resource | None = None) -> pulumi.ResourceOptions:
        """The options the desired state sets; `parent` is the component itself while it is
        being built (it is registered here only once its constructor has run)."""
        provider = self.resources.get(resource.provider) if resource.provider else None
        component = resource.kind in desired.COMPONENTS
        return pulumi.ResourceOptions(
            parent=parent or (self.resources[resource.parent] if resource.parent else None),
            provider=None if component else provider,  # type: ignore[arg-type]
            providers=[provider] if component and provider is not None else None,  # type: ignore[list-item]
            protect=resource.protect or None,
            delete_before_replace=resource.delete_before_replace or None,
            ignore_changes=list(resource.ignore_changes) or None,
            depends_on=[self.resources[k] for k in resource.depends_on] or None,
            additional_secret_outputs=list(resource.additional_secret_outputs) or None,
            aliases=[_alias(a) for a in resource.aliases] or None,
        )


def yaml_scalar(value: Any) -> str:
    """`value` written as a YAML mapping value is (plain where it can be, quoted otherwise), on
    one line whatever it holds (a PEM key has line breaks): it replaces a placeholder inside an
    indented document. A JSON string is a YAML double-quoted scalar."""
    text: str = yaml.safe_dump({"v": value}, width=float("inf")).removeprefix("v: ").removesuffix("\n")
    return json.dumps(value) if "\n" in text else text


def _attribute(name: str, urls: Any) -> str:
    return str(getattr(urls, name))


def _alias(text: str) -> pulumi.Alias:
    """`parent:KIND:NAME`: the resource was a child of that component before."""
    kind, name = text.removeprefix("parent:").split(":", 1)
    return pulumi.Alias(parent=pulumi.create_urn(name, desired.KINDS[kind]))


def snake(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Wire (camelCase) names as the SDK's keyword arguments: `volumeId` -> `volume_id`."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in inputs.items()}
