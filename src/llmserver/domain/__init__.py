"""The pure domain core: policy and use cases, standard library only.

Everything here talks to the outside world through the Protocols in ``ports``.
"""
