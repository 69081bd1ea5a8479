"""The composition root: the only package that wires the layers together.

`app.server` builds the gRPC server (the Envoy adapters of `extproc/`, the `meritorder.v1.Router`
API, health) around the core's `Router`, its stores and the classifier, and owns the process
lifecycle; `app.cli` is the `meritorder` command. Nothing imports `app`: the layers below it
(`extproc` -> `meritorder` core -> `classifiers`) depend one way, as `make lint` checks.
"""
