"""Routing a model's requests over its deployments: the pure decisions.

``strategy`` orders the deployments a request may try, ``breaker`` is each deployment's
circuit breaker, ``retry`` says which failures are worth another attempt and how long to
wait first. The adapter that acts on them is ``adapters/inference/routed_backend``.
"""
