"""The completion lane: the raw-ASGI path of the completion routes.

The ``Request``-to-``Response`` machinery of a Litestar HTTP handler (signature model,
response negotiation, header containers) cost a fifth of a cached completion's CPU in the
gateway benchmark, and Litestar's router and exception middleware another ninth. So the
completion routes are raw ASGI handlers (``completion_reply`` builds their answer), and
``CompletionLane``, in front of Litestar, takes their POSTs straight to it (both in
``completion``). Everything raw-ASGI lives in this package: reading the body (``body``),
the access record (``record``), noticing a client that left (``disconnect``), the
answers as plain ASGI apps (``replies``) and what differs between the APIs served this way
(OpenAI's chat and text completions and Responses, Anthropic's Messages): a ``Surface``
per route (``surface``; ``app.routes.surfaces`` lists them).

Every other request, and these routes when CORS is on or under a ``root_path``, goes
through Litestar, where the same handlers are registered (``app.routes.openai.routes``);
the parity suite (``tests/integration/api/test_lane_parity.py``) pins that both paths
answer alike.
"""
