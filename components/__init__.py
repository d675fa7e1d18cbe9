"""Pulumi components of talos-fleet: one ComponentResource per file, each with a typed `<Name>Args`."""
