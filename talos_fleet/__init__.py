"""talos-fleet's pure core: stack spec, naming, patch rendering and planning.

Nothing here imports Pulumi, so every rule and rendering is testable (and usable by `make plan`)
without an engine, a provider or a network.
"""
